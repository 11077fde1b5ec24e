"""Delivery-event streams the CLI tests replay: JSON lines, from 08:00 UTC (tenant acme)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def event(
    n: int, campaign: str, kind: str, after_s: float, tenant: str = "acme", **extra: Any
) -> str:
    """One delivery event as a JSON line (no newline)."""
    occurred = (T0 + timedelta(seconds=after_s)).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "schema_version": 1,
            "event_id": f"{campaign}-{kind}-{n}",
            "tenant_id": tenant,
            "campaign_id": campaign,
            "recipient": {"contact_id": f"c{n}", "address": f"u{n}@example.com"},
            "type": kind,
            "occurred_at": occurred,
            "provider": "ses",
            **extra,
        }
    )


def campaign_lines(
    campaign: str, sends: int = 400, *, bad: bool = False, tenant: str = "acme"
) -> list[str]:
    """A campaign's sends and outcomes; a bad list hard-bounces every fifth send."""
    lines = []
    for n in range(sends):
        lines.append(event(n, campaign, "sent", n, tenant))
        if bad and n % 5 == 0:
            lines.append(event(n, campaign, "bounce", n + 2, tenant, bounce_class="hard"))
        else:
            lines.append(event(n, campaign, "delivered", n + 1, tenant))
    return lines


def two_campaigns(sends: int = 400) -> list[str]:
    """A healthy campaign and a bad list, interleaved."""
    good, bad = campaign_lines("good", sends), campaign_lines("bad", sends, bad=True)
    return [line for pair in zip(good, bad, strict=True) for line in pair]
