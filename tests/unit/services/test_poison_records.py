"""Poison records: each kind is rejected while parsing, with its reason and without a traceback.

A batch holding poison is still applied as one batch: the valid events are counted and each bad
record is dead-lettered once, by `apply` itself, never by the catch-all.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.errors import InvalidInputError
from processor.ports.detection_store import InMemoryStore
from processor.ports.records import RawRecord
from processor.services.detection import DetectionService
from processor.services.event_input import (
    MAX_EVENT_BYTES,
    MAX_JSON_DEPTH,
    _nested_deeper_than,
    parse_batch,
    parse_with_time,
)
from schemas.topics import TopicRole
from tests.unit.services.resume_world import BOOK, ListPublisher

if TYPE_CHECKING:
    from collections.abc import Callable

VALID: dict[str, Any] = {
    "event_id": "ev-1",
    "tenant_id": "acme",
    "campaign_id": "spring",
    "recipient": {"contact_id": "c-1", "address": "ann@example.com"},
    "type": "sent",
    "occurred_at": "2026-11-24T10:00:00Z",
}


def _with(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


POISON: list[tuple[str, bytes | None, str, str]] = [
    ("no value", None, "empty_value", "record has no value"),
    ("empty value", b"", "empty_value", "record has no value"),
    ("not JSON", b"{not json", "invalid_json", "Invalid JSON"),
    ("invalid UTF-8 in a field", _with(event_id="@").replace(b"@", b"\xff"), "invalid_utf8",
     "not UTF-8"),
    ("invalid UTF-8 in an unknown field", _with(note="@").replace(b"@", b"\xc0\xaf"),
     "invalid_utf8", "not UTF-8"),
    ("a UTF-16 surrogate", _with(event_id="@").replace(b"@", b"\xed\xa0\x80"), "invalid_utf8",
     "not UTF-8"),
    ("nesting in an unknown field", _with(note="@").replace(b'"@"', _nested(40).encode()),
     "nested_too_deep", f"deeper than {MAX_JSON_DEPTH} levels"),
    ("nesting as deep as msgspec recurses", _with(note="@").replace(
        b'"@"', _nested(5000).encode()), "nested_too_deep", "nested deeper"),
    ("nested top level", _nested(20_000).encode(), "nested_too_deep", "nested deeper"),
    ("1 MB record", _with(note="x" * 1_000_000), "oversized_record",
     f"at most {MAX_EVENT_BYTES} bytes"),
    ("oversized field", _with(event_id="x" * 257), "invalid_event",
     "event_id: String should have at most 256 characters"),
    ("oversized address", _with(recipient={"contact_id": "c", "address": "a@" + "b" * 400}),
     "invalid_event", "recipient.address"),
    ("recipient of the wrong type", _with(recipient=5), "invalid_event", "recipient:"),
    ("type of the wrong type", _with(type=7), "invalid_event", "type:"),
    ("a list, not an object", b"[1, 2]", "invalid_event", "(message)"),
    ("epoch seconds", _with(occurred_at=12345), "invalid_event", "occurred_at: Value error"),
    ("epoch as text", _with(occurred_at="-1"), "invalid_event", "RFC 3339"),
    ("epoch float", _with(occurred_at=1764000000.5), "invalid_event", "RFC 3339"),
    ("no zone", _with(occurred_at="2026-11-24T10:00:00"), "invalid_event", "RFC 3339"),
    ("date only", _with(occurred_at="2026-11-24"), "invalid_event", "RFC 3339"),
    ("space separator", _with(occurred_at="2026-11-24 10:00:00Z"), "invalid_event", "RFC 3339"),
    ("impossible date", _with(occurred_at="2026-02-30T10:00:00Z"), "invalid_event",
     "occurred_at"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "error_type", "reason_part"),
    [pytest.param(v, t, r, id=name) for name, v, t, r in POISON],
)
def test_each_poison_kind_is_rejected_with_its_reason_and_no_log(
    value: bytes | None, error_type: str, reason_part: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Alone or in a batch, a bad record gets its kind and a reason, and nothing is logged."""
    caplog.set_level(logging.DEBUG)
    record = RawRecord("events", 0, 3, None, value, None)
    with pytest.raises(InvalidInputError) as alone:
        parse_with_time(record, -1)
    good = RawRecord("events", 0, 4, None, _with(), None)
    in_batch = parse_batch([good, record, good], -1)
    assert not isinstance(in_batch[0], InvalidInputError)
    assert not isinstance(in_batch[2], InvalidInputError)
    assert isinstance(in_batch[1], InvalidInputError)
    for rejection in (alone.value, in_batch[1]):
        assert (rejection.error_type, reason_part in rejection.reason) == (error_type, True)
        assert len(rejection.reason) < 300
    assert caplog.records == []


@pytest.mark.parametrize(
    "occurred_at",
    ["2026-11-24T10:00:00Z", "2026-11-24t10:00:00z", "2026-11-24T12:00:00.5+02:00",
     "2026-11-24T05:00:00-05:00"],
)  # fmt: skip
def test_rfc3339_timestamps_with_a_zone_are_read(occurred_at: str) -> None:
    """The one time rule accepts RFC 3339 with `Z` or an offset, whichever path reads it."""
    _, at_ms = parse_with_time(
        RawRecord("events", 0, 0, None, _with(occurred_at=occurred_at), None), -1
    )
    assert at_ms // 1000 == 1_795_514_400


def test_the_depth_limit_is_exact() -> None:
    """An unknown field nested exactly to the limit is read; one level more is rejected."""
    # The event object itself is the first level.
    at_limit = _with(note="@").replace(b'"@"', _nested(MAX_JSON_DEPTH - 1).encode())
    parse_with_time(RawRecord("events", 0, 0, None, at_limit, None), -1)
    too_deep = _with(note="@").replace(b'"@"', _nested(MAX_JSON_DEPTH).encode())
    with pytest.raises(InvalidInputError, match="nested deeper"):
        parse_with_time(RawRecord("events", 0, 0, None, too_deep, None), -1)


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(alphabet='[]{}"\\ab\n', max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=40,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(value=JSON_VALUES)
def test_the_depth_scan_agrees_with_a_json_parser(value: object) -> None:
    """Brackets and escaped quotes inside strings never count as nesting."""
    text = json.dumps(value).encode()
    depth = _depth(value)
    assert not _nested_deeper_than(depth, text)
    assert depth == 0 or _nested_deeper_than(depth - 1, text)


def _valid(offset: int) -> bytes:
    recipient = {"contact_id": f"c{offset}", "address": f"u{offset}@example.com"}
    return _with(event_id=f"ev-{offset}", recipient=recipient)


def _poison(index: int) -> bytes | None:
    return POISON[index % len(POISON)][1]


async def test_a_batch_with_poison_is_applied_as_one_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`apply` (not the catch-all) counts every valid event and dead-letters each bad record."""
    caplog.set_level(logging.INFO)
    records = []
    for offset in range(200):
        value = _poison(offset // 10) if offset % 10 == 3 else _valid(offset)
        records.append(RawRecord("delivery-events", 0, offset, b"acme:spring", value, None))
    publisher = ListPublisher()
    service = DetectionService(InMemoryStore(), publisher, lambda: BOOK)
    report = await service.apply(records)
    assert (report.applied, report.dead_lettered) == (180, 20)
    letters = publisher.on(TopicRole.DEAD_LETTER)
    assert sorted(letter["source_offset"] for letter in letters) == list(range(3, 200, 10))
    assert all(letter["error"] and letter["error_type"] != "processing_error" for letter in letters)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


SHARES: list[Callable[[int], bool]] = [lambda i: i % 20 == 0, lambda i: i % 2 == 0, lambda _i: True]


@pytest.mark.parametrize("poisoned", SHARES, ids=["5%", "50%", "all"])
def test_a_batch_parses_as_its_records_one_by_one_whatever_the_poison(
    poisoned: Callable[[int], bool],
) -> None:
    """The joined decode splits around bad records without shifting or losing any event."""
    records = [
        RawRecord("e", 0, i, None, _poison(i) if poisoned(i) else _valid(i), None)
        for i in range(120)
    ]

    def alone(record: RawRecord) -> tuple[str, str, int] | tuple[str, str]:
        try:
            event, at_ms = parse_with_time(record, -1)
        except InvalidInputError as exc:
            return (exc.error_type, exc.reason)
        return ("event", event.event_id, at_ms)

    def outcome(parsed: Any) -> tuple[str, str, int] | tuple[str, str]:
        if isinstance(parsed, InvalidInputError):
            return (parsed.error_type, parsed.reason)
        return ("event", parsed[0].event_id, parsed[1])

    assert [outcome(p) for p in parse_batch(records, -1)] == [alone(r) for r in records]
