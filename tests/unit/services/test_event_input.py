"""Delivery-event decoding (processor.services.event_input).

The fast decoder never strays from the pydantic contract, and a batch decodes exactly as its
records one by one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from processor.domain.contact_state import stored_seconds
from processor.errors import InvalidInputError
from processor.ports.contact_store import delivery_op
from processor.ports.records import RawRecord
from processor.services.event_input import (
    _DECODE_ONE,
    LeanEvent,
    _fast_ok,
    parse_batch,
    parse_with_time,
)
from schemas.events import DeliveryEvent, EventType

VALID: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "ev-1",
    "tenant_id": "acme",
    "campaign_id": "spring sale",
    "recipient": {"contact_id": "c-1", "address": "ann@example.com"},
    "type": "bounce",
    "bounce_class": "hard",
    "occurred_at": "2026-11-24T10:00:00.250Z",
    "provider": "ses",
    "provider_message_id": "m-1",
}
FIELDS = (
    "event_id",
    "tenant_id",
    "campaign_id",
    "type",
    "bounce_class",
    "bounce_category",
    "occurred_at",
    "provider",
    "provider_message_id",
    "provider_event_id",
)

# Strings near every rule of the contract: blanks around and inside, ':', control characters,
# Unicode spaces (some are whitespace to Python but not to pydantic-core), '@', lengths.
TRICKY_TEXT = st.one_of(
    st.text(
        alphabet=st.sampled_from(
            [
                "a",
                "Z",
                "0",
                " ",
                "\t",
                "\n",
                ":",
                "@",
                ".",
                "\x00",
                "\x1c",
                "\x1f",
                "\x7f",
                "\x85",
                "\xa0",
                "\u2028",
                "\u3000",
                "\ufeff",
                "é",
                "😀",
            ]
        ),
        max_size=12,
    ),
    st.integers(0, 600).map(lambda n: "x" * n),
    st.integers(0, 400).map(lambda n: "😀" * n),
)
TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-11-24T10:00:00Z",
            "2026-11-24T10:00:00z",
            "2026-11-24T10:00:00.123456Z",
            "2026-11-24T10:00:00.1234567Z",
            "2026-11-24T10:00:00+00:00",
            "2026-11-24T12:00:00+02:00",
            "2026-11-24T10:00:00-00:00",
            "2026-11-24T10:00:00",
            "2026-11-24 10:00:00Z",
            "2026-11-24",
            "2026-11-24T24:00:00Z",
            "2026-02-30T10:00:00Z",
            "1969-12-31T23:59:59Z",
            "",
        ]
    ),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
)
VALUES = st.one_of(
    TRICKY_TEXT,
    TIMES,
    st.none(),
    st.booleans(),
    st.sampled_from(
        [e.value for e in EventType]
        + ["hard", "soft", "block", "HARD", "Sent", "bad_mailbox", "spam_block", "Other"]
    ),
    st.builds(dict),
    st.builds(list),
)
KEYS = st.sampled_from(
    [*FIELDS, "schema_version", "recipient.contact_id", "recipient.address", "recipient", "extra"]
)


def _mutated(changes: list[tuple[str, Any]], drops: list[str]) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(json.dumps(VALID))
    for key, value in changes:
        if key.startswith("recipient."):
            if isinstance(document.get("recipient"), dict):
                document["recipient"][key.split(".", 1)[1]] = value
        else:
            document[key] = value
    for key in drops:
        if key.startswith("recipient."):
            if isinstance(document.get("recipient"), dict):
                document["recipient"].pop(key.split(".", 1)[1], None)
        else:
            document.pop(key, None)
    return document


def _fields(event: Any) -> dict[str, Any]:
    values = {name: getattr(event, name) for name in FIELDS}
    values["contact_id"] = event.recipient.contact_id
    values["address"] = event.recipient.address
    values["domain"] = event.recipient.domain
    return values


def _contract(value: bytes) -> DeliveryEvent | None:
    try:
        return DeliveryEvent.model_validate_json(value)
    except ValidationError:
        return None


def mutated_values(max_changes: int, *, ensure_ascii: bool) -> st.SearchStrategy[bytes]:
    """VALID as JSON bytes with up to `max_changes` fields set to tricky values, maybe one gone."""
    return st.builds(
        lambda changes, drops: json.dumps(
            _mutated(changes, drops), ensure_ascii=ensure_ascii
        ).encode(),
        st.lists(st.tuples(KEYS, VALUES), max_size=max_changes),
        st.lists(KEYS, max_size=1),
    )


@settings(max_examples=1500, deadline=None)
@given(value=mutated_values(3, ensure_ascii=False))
def test_the_fast_decoder_accepts_nothing_the_contract_rejects(value: bytes) -> None:
    """Whatever the fast path accepts, the contract accepts with the very same values."""
    try:
        fast = _DECODE_ONE(value)
    except msgspec.DecodeError:
        return
    if not _fast_ok(fast):
        return
    contract = _contract(value)
    assert contract is not None, value
    assert _fields(fast) == _fields(contract)


@settings(max_examples=300, deadline=None)
@given(value=mutated_values(2, ensure_ascii=True))
def test_parsing_agrees_with_the_contract_on_every_value(value: bytes) -> None:
    """Accepted exactly when the contract accepts, with its values (fallback included)."""
    contract = _contract(value)
    record = RawRecord("events", 0, 7, None, value, None)
    if contract is None:
        with pytest.raises(InvalidInputError):
            parse_with_time(record, -1)
        return
    event, at_ms = parse_with_time(record, -1)
    assert _fields(event) == _fields(contract)
    assert at_ms == int(contract.occurred_at.timestamp() * 1000)


def test_common_events_take_the_fast_path() -> None:
    """A plain event in UTC is read by msgspec, not by the contract's fallback."""
    event, at_ms = parse_with_time(
        RawRecord("events", 0, 1, None, json.dumps(VALID).encode(), None), -1
    )
    assert isinstance(event, LeanEvent)
    assert at_ms == int(datetime(2026, 11, 24, 10, 0, 0, 250_000, tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tenant_id": "  acme "}, {"tenant_id": "acme"}),
        ({"event_id": " ev-1\n"}, {"event_id": "ev-1"}),
        (
            {"occurred_at": "2026-11-24T12:00:00+02:00"},
            {"occurred_at": datetime(2026, 11, 24, 10, 0, tzinfo=UTC)},
        ),
    ],
)
def test_what_the_fast_path_declines_the_contract_normalizes(
    change: dict[str, Any], expected: dict[str, Any]
) -> None:
    """Padded strings and other offsets are left to the contract, which normalizes them."""
    value = json.dumps({**VALID, **change}).encode()
    event, _ = parse_with_time(RawRecord("events", 0, 1, None, value, None), -1)
    assert isinstance(event, DeliveryEvent)
    for name, wanted in expected.items():
        assert getattr(event, name) == wanted
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at.tzinfo is UTC


def _record(offset: int, value: bytes | None, timestamp_ms: int | None = None) -> RawRecord:
    return RawRecord("events", 0, offset, None, value, timestamp_ms)


def _outcome(parsed: Any) -> Any:
    if isinstance(parsed, InvalidInputError):
        return ("rejected", parsed.error_type, parsed.reason)
    event, at_ms = parsed
    return ("parsed", _fields(event), at_ms)


VALID_BYTES = json.dumps(VALID).encode()
BATCH_VALUES = st.sampled_from(
    [
        VALID_BYTES,
        json.dumps({**VALID, "event_id": "ev-2", "type": "sent", "bounce_class": None}).encode(),
        json.dumps({**VALID, "tenant_id": " padded "}).encode(),
        json.dumps({**VALID, "type": "sent"}).encode(),  # a bounce class without a bounce
        VALID_BYTES + b"," + VALID_BYTES,  # two events in one record
        b"[" + VALID_BYTES + b"]",
        b"not json",
        b"",
        None,
        b"{}",
        b" " + VALID_BYTES + b"\n",
    ]
)


@settings(max_examples=300, deadline=None)
@given(values=st.lists(BATCH_VALUES, max_size=8), skew=st.sampled_from([-1, 0, 60_000]))
def test_a_batch_parses_exactly_as_its_records_one_by_one(
    values: list[bytes | None], skew: int
) -> None:
    """Including values that would shift a joined array (`{..},{..}`) and future events."""
    sent_ms = int(datetime(2026, 11, 24, 10, 0, tzinfo=UTC).timestamp() * 1000)
    records = [_record(i, v, sent_ms) for i, v in enumerate(values)]
    one_by_one = []
    for record in records:
        try:
            one_by_one.append(_outcome(parse_with_time(record, skew)))
        except InvalidInputError as exc:
            one_by_one.append(_outcome(exc))
    assert [_outcome(p) for p in parse_batch(records, skew)] == one_by_one


def test_rejections_name_the_field_and_kind() -> None:
    """A batch's rejections carry the contract's kinds and name the offending field."""
    outcomes = parse_batch(
        [
            _record(0, b"{"),
            _record(1, json.dumps({**VALID, "tenant_id": "a:b"}).encode()),
            _record(2, None),
            _record(3, json.dumps({**VALID, "bounce_class": None}).encode()),
        ],
        -1,
    )
    kinds = [(o.error_type, o.reason.split(":")[0]) for o in outcomes if isinstance(o, Exception)]
    assert kinds == [
        ("invalid_json", "(message)"),
        ("invalid_event", "tenant_id"),
        ("empty_value", "record has no value"),
        ("invalid_event", "(message)"),
    ]


NAIVE_BOUNDS = (datetime(1969, 1, 1), datetime(2107, 1, 1))  # noqa: DTZ001 - hypothesis wants naive bounds with `timezones`


@settings(max_examples=500, deadline=None)
@given(moment=st.datetimes(*NAIVE_BOUNDS, timezones=st.just(UTC)))
def test_contact_seconds_from_at_ms_equal_the_stored_instant(moment: datetime) -> None:
    """Contact merges take seconds from `at_ms`; the in-memory store from `occurred_at`."""
    text = moment.isoformat().replace("+00:00", "Z")
    sent = {k: v for k, v in VALID.items() if k != "bounce_class"} | {
        "type": "sent",
        "occurred_at": text,
    }
    event, _ = parse_with_time(RawRecord("events", 0, 1, None, json.dumps(sent).encode(), None), -1)
    op = delivery_op(event)
    assert op is not None
    assert op.at == stored_seconds(moment)
