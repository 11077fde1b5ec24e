"""Dead letters (processor.ports.dead_letters): bounded whatever they reject, with an id.

A dead letter always fits the producers' request limit, says what it rejected (excerpt, length,
sha256, source coordinates) and carries the same id every time the same record is rejected.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.adapters.kafka import PRODUCER_MAX_REQUEST_BYTES
from processor.ports.dead_letters import dead_letter
from processor.ports.records import RawRecord
from schemas.dead_letter import (
    KEY_EXCERPT_BYTES,
    MAX_DEAD_LETTER_BYTES,
    ORIGINAL_EXCERPT_BYTES,
    REASON_MAX_CHARS,
    DeadLetter,
)
from schemas.topics import TopicRole
from tests.unit.services.test_poison_records import POISON

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def _letter(record: RawRecord, reason: str = "bad") -> tuple[str, dict[str, object]]:
    message = dead_letter(record, "invalid_json", reason, NOW)
    assert message.role == TopicRole.DEAD_LETTER.value
    return message.value, json.loads(message.value)


@pytest.mark.parametrize("size", [0, 10, ORIGINAL_EXCERPT_BYTES, 1_000_000, 5_000_000])
def test_a_dead_letter_holds_an_excerpt_the_length_and_the_digest(size: int) -> None:
    """The first 16 KiB, the whole length and the whole sha256, whatever the record's size."""
    value = bytes(i % 251 for i in range(size))
    text, letter = _letter(RawRecord("delivery-events", 2, 41, b"acme:spring", value, None))
    excerpt = base64.b64decode(str(letter["original"]))
    assert excerpt == value[:ORIGINAL_EXCERPT_BYTES]
    assert letter["original_size"] == size
    assert letter["original_sha256"] == hashlib.sha256(value).hexdigest()
    assert letter["original_truncated"] is (size > ORIGINAL_EXCERPT_BYTES)
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        "delivery-events",
        2,
        41,
    )
    assert len(text.encode()) <= MAX_DEAD_LETTER_BYTES
    assert DeadLetter.model_validate_json(text).model_dump_json() == text


def test_the_worst_dead_letter_still_fits_the_request_limit() -> None:
    """A huge key, a long reason of characters JSON escapes 6:1 and a long topic stay bounded."""
    record = RawRecord("t" * 249, 0, 2**62, b"k" * 1_000_000, b"\x00" * 10_000_000, None)
    message = dead_letter(record, "x" * 500, "\x01" * 100_000, NOW)
    size = len(message.value.encode()) + len(message.key.encode())
    assert size <= MAX_DEAD_LETTER_BYTES < PRODUCER_MAX_REQUEST_BYTES
    letter = json.loads(message.value)
    assert len(base64.b64decode(letter["source_key"])) == KEY_EXCERPT_BYTES
    assert len(letter["error"]) == REASON_MAX_CHARS
    assert "characters cut) ... " in letter["error"]


@settings(max_examples=200, deadline=None)
@given(
    partition=st.integers(0, 1000),
    offset=st.integers(0, 2**40),
    other=st.integers(0, 2**40),
    reasons=st.tuples(st.text(max_size=20), st.text(max_size=20)),
)
def test_the_id_comes_from_the_source_coordinates_only(
    partition: int, offset: int, other: int, reasons: tuple[str, str]
) -> None:
    """The same record rejected twice (any reason, any time) has one id; another offset, another."""
    first = RawRecord("delivery-events", partition, offset, None, b"{", None)
    again = dead_letter(first, "invalid_json", reasons[0], NOW)
    later = dead_letter(first, "processing_error", reasons[1], datetime.now(tz=UTC))
    assert json.loads(again.value)["dead_letter_id"] == json.loads(later.value)["dead_letter_id"]
    elsewhere = dead_letter(first._replace(offset=other), "invalid_json", reasons[0], NOW)
    same_offset = other == offset
    assert (
        json.loads(elsewhere.value)["dead_letter_id"] == json.loads(again.value)["dead_letter_id"]
    ) is same_offset


@pytest.mark.parametrize(
    ("value", "kind"), [pytest.param(value, kind, id=name) for name, value, kind, _ in POISON]
)
def test_every_poison_kind_makes_a_letter_the_contract_reads_back(
    value: bytes | None, kind: str
) -> None:
    """Built without validation, a dead letter still reads back through the model unchanged."""
    message = dead_letter(RawRecord("events", 3, 9, b"acme:c1", value, None), kind, "why", NOW)
    letter = DeadLetter.model_validate_json(message.value)
    assert letter.model_dump_json() == message.value
    original = value or b""
    assert (letter.original, letter.error_type) == (original[:ORIGINAL_EXCERPT_BYTES], kind)


def test_a_letter_of_the_previous_shape_is_still_readable_by_its_old_fields() -> None:
    """The fields consumers read before keep their names and meaning for a small record."""
    _, letter = _letter(RawRecord("delivery-events", 0, 7, b"k", b"{not json", None), "why")
    assert base64.b64decode(str(letter["original"])) == b"{not json"
    assert base64.b64decode(str(letter["source_key"])) == b"k"
    assert (letter["schema_version"], letter["error_type"], letter["error"]) == (
        1,
        "invalid_json",
        "why",
    )


@pytest.mark.parametrize("length", [REASON_MAX_CHARS + 1, 5_000, 10_000_000])
def test_a_long_reason_is_cut_in_the_middle_and_says_how_much(length: int) -> None:
    """The start names the kind of problem, the end what a summary left out: both are kept."""
    reason = "START" + "x" * (length - 10) + "-END-"
    _, letter = _letter(RawRecord("events", 0, 1, None, b"{", None), reason)
    error = str(letter["error"])
    assert len(error) == REASON_MAX_CHARS
    assert (error[:5], error[-5:]) == ("START", "-END-")
    kept = len(error) - len(error.split(" ... ")[1]) - 2 * len(" ... ")
    assert f"({length - kept} characters cut)" in error
