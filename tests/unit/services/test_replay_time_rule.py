"""Replay applies the worker's time rules (processor.services.replay).

Lines carry no Kafka timestamp: an event far ahead of the events around it is rejected as
`future_event` and reported, instead of making every later event of its campaign late; a real
jump in event time (a quiet night) is vouched for by the events after it.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from processor.ports.detection_store import InMemoryStore
from processor.services.replay import records_from_lines, replay, with_event_clock
from tests.unit.services.resume_world import BOOK

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SKEW_MS = 15 * 60_000


def _line(n: int, at: datetime, **changes: Any) -> str:
    event = {
        "event_id": f"ev-{n}",
        "tenant_id": "acme",
        "campaign_id": "spring",
        "recipient": {"contact_id": f"c{n}", "address": f"u{n}@example.com"},
        "type": "sent",
        "occurred_at": at.isoformat().replace("+00:00", "Z"),
    }
    return json.dumps({**event, **changes})


def _minutes(*offsets: float) -> list[str]:
    return [_line(n, START + timedelta(minutes=m)) for n, m in enumerate(offsets)]


async def _replay(lines: list[str]) -> tuple[Any, str]:
    errors = io.StringIO()
    result = await replay(
        records_from_lines(lines),
        store=InMemoryStore(),
        policy_book=lambda: BOOK,
        out=io.StringIO(),
        errors=errors,
        max_future_skew_ms=SKEW_MS,
    )
    return result, errors.getvalue()


async def test_an_event_far_ahead_of_the_others_is_reported_and_the_others_are_not_late() -> None:
    """One event a year ahead is rejected with its line; the 40 after it are counted, not late."""
    lines = _minutes(*range(20))
    lines.append(_line(99, START + timedelta(days=365)))
    lines += [_line(100 + n, START + timedelta(minutes=20 + n)) for n in range(40)]
    result, errors = await _replay(lines)
    assert (result.applied, result.late, result.rejected) == (60, 0, 1)
    assert errors.startswith("rejected line 21: occurred_at is 3153")
    assert "allowed clock skew" in errors


async def test_the_first_event_far_ahead_is_caught_by_the_events_after_it() -> None:
    """With nothing before it, the events that follow are its clock."""
    lines = [_line(0, START + timedelta(days=30)), *_minutes(1, 2, 3, 4, 5)]
    result, errors = await _replay(lines)
    assert (result.applied, result.late, result.rejected) == (5, 0, 1)
    assert errors.startswith("rejected line 1: ")


async def test_a_quiet_night_is_a_jump_the_next_events_vouch_for() -> None:
    """Events after an eight-hour gap are all counted: the events following each vouch for it."""
    lines = _minutes(0, 1, 2, 480, 481, 482, 483, 484, 485, 486, 487, 488, 489)
    result, errors = await _replay(lines)
    assert (result.applied, result.rejected, errors) == (13, 0, "")


async def test_a_sparse_file_and_a_single_event_are_read_whole() -> None:
    """Two events hours apart, and one alone: no event is ahead of a clock the file implies."""
    for lines in (_minutes(0, 300), _minutes(0)):
        result, errors = await _replay(lines)
        assert (result.applied, result.rejected, errors) == (len(lines), 0, "")


@pytest.mark.parametrize("occurred_at", [12345, "-1", "2026-03-02T08:00:00"])
async def test_replay_applies_the_worker_time_rule(occurred_at: object) -> None:
    """Epoch numbers and zone-less times are rejected in a replay as in the worker."""
    lines = [*_minutes(0, 1), _line(7, START, occurred_at=occurred_at)]
    result, errors = await _replay(lines)
    assert (result.applied, result.rejected) == (2, 1)
    assert "rejected line 3: occurred_at: Value error, must be an RFC 3339 timestamp" in errors


def test_records_with_a_timestamp_keep_it() -> None:
    """A record read from Kafka (it has a timestamp) is judged by that timestamp, as live."""
    (record,) = records_from_lines([_line(0, START)])
    stamped = record._replace(timestamp_ms=123)
    assert list(with_event_clock([stamped], SKEW_MS)) == [stamped]
