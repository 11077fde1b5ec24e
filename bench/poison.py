"""Poison records for the benchmarks: a fixed mix of every kind of bad record the worker rejects.

`with_poison` mixes them into a stream of keyed events at a given share, deterministically.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

_EVENT: dict[str, Any] = {
    "event_id": "poison",
    "tenant_id": "poison-tenant",
    "campaign_id": "poison-campaign",
    "recipient": {"contact_id": "p", "address": "p@example.com"},
    "type": "sent",
    "occurred_at": "2026-03-02T08:00:00Z",
}


def _with(**changes: Any) -> bytes:
    return json.dumps({**_EVENT, **changes}).encode()


POISON_MIX: tuple[tuple[str, bytes], ...] = (
    ("invalid_utf8", _with(event_id="@").replace(b"@", b"\xff\xfe")),
    ("nested_too_deep", _with(note="@").replace(b'"@"', b"[" * 300 + b"]" * 300)),
    ("invalid_event", _with(occurred_at=12345)),
    ("invalid_event", _with(occurred_at="-1")),
    ("invalid_event", _with(recipient=5)),
    ("invalid_event", _with(event_id="x" * 300)),
    ("invalid_json", b'{"event_id": "poison", '),
    ("oversized_record", _with(note="x" * 70_000)),
)
"""(expected error type, value) of each kind; the mix cycles through them in this order."""
SMALL_POISON_MIX = tuple(p for p in POISON_MIX if p[0] != "oversized_record")
"""The mix without the 70 KB record: every poison record under 1 KB, like the events."""


def with_poison(
    records: Iterable[tuple[bytes, bytes]],
    share: float,
    mix: tuple[tuple[str, bytes], ...] = POISON_MIX,
) -> Iterator[tuple[bytes, bytes]]:
    """The records with poison from `mix` mixed in so that `share` of all records is poison.

    Each poison record takes the key of the event before it (spread over the partitions like
    the events); the events themselves are unchanged.
    """
    if not 0 < share < 1:
        yield from records
        return
    owed = 0.0
    kind = 0
    per_event = share / (1 - share)
    for key, value in records:
        yield key, value
        owed += per_event
        while owed >= 1:
            owed -= 1
            yield key, mix[kind % len(mix)][1]
            kind += 1
