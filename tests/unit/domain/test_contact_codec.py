"""Unit tests of the contact state codec: round trips, compactness, earlier versions migrated."""

from __future__ import annotations

import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given

from processor.domain.contact_codec import decode_contact, encode_contact
from processor.domain.contact_state import MAX_COUNTED_SENDS, ContactState
from processor.domain.recipients import FilterRules, exclusion_reason
from schemas.audience import ConsentState
from tests.unit.domain.contact_support import (
    Op,
    apply,
    apply_all,
    at,
    ops,
    states,
    unengaged,
    update,
)

T0_SECONDS = int(at(0).timestamp())
HEAD = struct.Struct(">BBIII")


def test_no_stored_value_is_the_empty_state() -> None:
    """A contact without a stored value decodes to the empty state."""
    assert decode_contact(None) is ContactState.empty()


@given(states())
def test_codec_round_trips(state: ContactState) -> None:
    """Any state with stored-resolution times decodes to itself."""
    assert decode_contact(encode_contact(state)) == state


@given(ops)
def test_transitions_through_the_codec_match_pure_transitions(sequence: list[Op]) -> None:
    """Storing the state between every step gives the same state as keeping it in memory."""
    stored = encode_contact(ContactState.empty())
    for op in sequence:
        stored = encode_contact(apply(decode_contact(stored), op))
    assert decode_contact(stored) == apply_all(sequence)


@pytest.mark.parametrize(
    ("state", "size"),
    [
        (ContactState(), 14),
        (unengaged(1), 15),
        (unengaged(16), 15 + 15 * 1),
        (replace(unengaged(0), last_marketing_send_at=at(0)), 14),
    ],
)
def test_encoded_size(state: ContactState, size: int) -> None:
    """A 14-byte head, then one varint per recent send: small gaps take a byte each."""
    assert len(encode_contact(state)) == size


def test_sixteen_weekly_unengaged_sends_fit_a_compact_redis_hash_value() -> None:
    """Weekly sends take 3 bytes each: 16 of them stay within Redis's 64-byte listpack values."""
    weeks = tuple(at(0) - timedelta(weeks=n) for n in range(16))
    state = ContactState(last_marketing_send_at=weeks[0], recent_sends=weeks)
    assert len(encode_contact(state)) <= 64
    worst = tuple(
        datetime.fromtimestamp(2**32 - 1 - n * 2**26, UTC) for n in range(MAX_COUNTED_SENDS)
    )
    huge = ContactState(last_marketing_send_at=worst[0], recent_sends=worst)
    assert len(encode_contact(huge)) <= 14 + 4 * MAX_COUNTED_SENDS


def legacy(
    version: int, flags: int, sent: int, engaged: int, count: int, *, stated: int = 0
) -> bytes:
    """A version 1 or 2 value as stored before recent sends were kept."""
    if version == 1:
        return struct.pack(">BBIIH", 1, flags, sent, engaged, count)
    return struct.pack(">BBIIHI", 2, flags, sent, engaged, count, stated)


def test_version_1_states_are_still_read_without_a_statement_time() -> None:
    """12-byte version 1 states (stored before statement times were kept) read as before."""
    state = decode_contact(legacy(1, 0b0000_0101, T0_SECONDS, 0, 2))
    assert (state.consent, state.unsubscribed, state.unsubscribed_stated_at) == (
        ConsentState.GRANTED,
        True,
        None,
    )
    assert state.recent_sends == (at(0), at(-1))
    assert apply(state, update(unsubscribed=False)).unsubscribed is False


@pytest.mark.parametrize(
    ("sent", "engaged", "count", "recent"),
    [
        (0, 0, 0, ()),
        (T0_SECONDS, 0, 0, ()),
        (T0_SECONDS, 0, 3, (at(0), at(-1), at(-2))),
        (T0_SECONDS, 0, 65_535, tuple(at(-n) for n in range(MAX_COUNTED_SENDS))),
        # Only the sends that fit after the last engagement are kept (the old count could
        # include sends before an engagement that arrived after them).
        (T0_SECONDS, T0_SECONDS - 2, 11, (at(0), at(-1))),
        (T0_SECONDS, T0_SECONDS + 5, 4, ()),
        (3, 0, 11, tuple(datetime.fromtimestamp(s, UTC) for s in (3, 2, 1))),
    ],
)  # fmt: skip
def test_version_2_counts_become_the_latest_possible_send_times(
    sent: int, engaged: int, count: int, recent: tuple[datetime, ...]
) -> None:
    """A stored count of sends is migrated to that many seconds back from the last send."""
    state = decode_contact(legacy(2, 0, sent, engaged, count, stated=T0_SECONDS))
    assert state.recent_sends == recent
    assert state.unsubscribed_stated_at == at(0)


@pytest.mark.parametrize(("count", "engaged_before"), [(10, False), (11, False), (16, True)])
def test_a_migrated_state_keeps_its_verdict(*, count: int, engaged_before: bool) -> None:
    """A version 2 state is excluded as unengaged after migration exactly when it was before."""
    flags = 0b0100_0000 if engaged_before else 0
    engaged = T0_SECONDS - 86_400 if engaged_before else 0
    state = decode_contact(legacy(2, flags, T0_SECONDS, engaged, count))
    threshold = 16 if engaged_before else 11
    assert state.sends_since_engagement == count
    reason = exclusion_reason(state, FilterRules(), at(60))
    assert (reason is not None) == (count >= threshold)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "version None"),
        (bytes([4]) + bytes(15), "version 4"),
        (bytes([3]) + bytes(12), "v3 cannot be 13 bytes"),
        (bytes([2]) + bytes(11), "v2 cannot be 12 bytes"),
        (bytes([1]) + bytes(10), "v1 cannot be 11 bytes"),
        (bytes([1, 0b1000_0000]) + bytes(10), "invalid contact state flags"),
        (bytes([1, 0b0000_0011]) + bytes(10), "invalid contact state flags"),
        (HEAD.pack(3, 0b1000_0000, 0, 0, 0), "invalid contact state flags"),
        (HEAD.pack(3, 0, 100, 0, 0) + b"\x80", "ends inside a send time"),
        (HEAD.pack(3, 0, 100, 0, 0) + b"\x80" * 5 + b"\x01", "does not fit 32 bits"),
        (HEAD.pack(3, 0, 100, 0, 0) + b"\x64", "after 1970"),
        (HEAD.pack(3, 0, 100, 0, 0) + b"\x00\x00", "distinct"),
        (HEAD.pack(3, 0, 100, 99, 0) + b"\x00\x01", "later than last_engaged_at"),
        (HEAD.pack(3, 0, 100, 0, 0) + b"\x01" * (MAX_COUNTED_SENDS + 1), "at most"),
    ],
)
def test_decode_rejects_foreign_bytes(data: bytes, message: str) -> None:
    """Bytes of another version, length, impossible flags or send times are refused, not misread."""
    with pytest.raises(ValueError, match=message):
        decode_contact(data)


def test_codec_floors_sub_second_times() -> None:
    """Encoding keeps whole seconds only, as the transitions store them."""
    state = ContactState(last_engaged_at=at(0) + timedelta(microseconds=7), ever_engaged=True)
    assert decode_contact(encode_contact(state)) == replace(state, last_engaged_at=at(0))
