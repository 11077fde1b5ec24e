"""Delivery-event streams the CLI tests replay: JSON lines of tenant acme, from 08:00 UTC."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def event(n: int, campaign: str, kind: str, after_s: float, **extra: Any) -> str:
    """One delivery event of tenant acme as a JSON line (no newline)."""
    occurred = (T0 + timedelta(seconds=after_s)).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": f"{campaign}-{kind}-{n}",
            "tenant_id": "acme",
            "campaign_id": campaign,
            "recipient": {"contact_id": f"c{n}", "address": f"u{n}@example.com"},
            "type": kind,
            "occurred_at": occurred,
            "provider": "ses",
            **extra,
        }
    )


def campaign_lines(campaign: str, sends: int = 400, *, bad: bool = False) -> list[str]:
    """A campaign's sends and outcomes; a bad list hard-bounces every fifth send."""
    lines = []
    for n in range(sends):
        lines.append(event(n, campaign, "sent", n))
        if bad and n % 5 == 0:
            lines.append(event(n, campaign, "bounce", n + 2, bounce_class="hard"))
        else:
            lines.append(event(n, campaign, "delivered", n + 1))
    return lines


def two_campaigns(sends: int = 400) -> list[str]:
    """A healthy campaign and a bad list, interleaved."""
    good, bad = campaign_lines("good", sends), campaign_lines("bad", sends, bad=True)
    return [line for pair in zip(good, bad, strict=True) for line in pair]
