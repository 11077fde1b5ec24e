"""Unit tests of contact state, its codec, the resume filter rules and the recipient-set stream."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from processor.domain.recipients import (
    ENCODED_CONTACT_SIZE,
    MAX_SENDS_SINCE_ENGAGEMENT,
    Candidate,
    ContactState,
    FilterRules,
    RecipientSetAccumulator,
    apply_contact_update,
    apply_delivery_event,
    decode_contact,
    encode_contact,
    exclusion_reason,
    stored_instant,
)
from schemas.audience import ConsentState, ContactUpdate
from schemas.events import BounceClass, EventType, Recipient
from schemas.resume import ExclusionReason

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator

S = ContactState
E = EventType
X = ExclusionReason
GRANTED, REVOKED = ConsentState.GRANTED, ConsentState.REVOKED
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NAIVE = datetime(2025, 1, 1)  # noqa: DTZ001  # naive on purpose, to be refused
T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
DEFAULT = FilterRules()
EXPLICIT = FilterRules(require_explicit_consent=True)

Op = tuple[EventType, BounceClass | None, datetime] | ContactUpdate


def at(seconds: int) -> datetime:
    """T0 plus `seconds`."""
    return T0 + timedelta(seconds=seconds)


def apply(state: ContactState, op: Op) -> ContactState:
    """Apply one delivery event or contact update."""
    if isinstance(op, ContactUpdate):
        return apply_contact_update(state, op)
    return apply_delivery_event(state, *op)


def apply_all(ops: list[Op], state: ContactState | None = None) -> ContactState:
    """Apply `ops` in order to `state` (default: the empty state)."""
    state = ContactState.empty() if state is None else state
    for op in ops:
        state = apply(state, op)
    return state


def update(**fields: Any) -> ContactUpdate:
    """A contact update of contact c1 with `fields` (occurred at T0 unless stated)."""
    fields.setdefault("occurred_at", T0)
    return ContactUpdate(tenant_id="t1", contact_id="c1", **fields)


# --- strategies -------------------------------------------------------------------------------

instants = st.builds(
    lambda seconds, micros: at(seconds) + timedelta(microseconds=micros),
    st.integers(min_value=-5, max_value=5),
    st.sampled_from([0, 1, 999_999]),
)
events = st.one_of(
    st.tuples(st.sampled_from([t for t in EventType if t is not EventType.BOUNCE]), st.none()),
    st.tuples(st.just(EventType.BOUNCE), st.sampled_from(BounceClass)),
).flatmap(lambda kind: st.tuples(st.just(kind[0]), st.just(kind[1]), instants))
updates = st.builds(
    update,
    consent=st.none() | st.sampled_from(ConsentState),
    unsubscribed=st.none() | st.booleans(),
    deleted=st.booleans(),
    occurred_at=instants,
)
ops = st.lists(st.one_of(events, updates), max_size=25)
stored_times = st.none() | st.integers(min_value=1, max_value=2**32 - 1).map(
    lambda seconds: datetime.fromtimestamp(seconds, UTC)
)
FLAGS = ("unsubscribed", "deleted", "hard_bounced", "complained", "ever_engaged")
states = st.builds(
    ContactState,
    consent=st.none() | st.sampled_from(ConsentState),
    last_marketing_send_at=stored_times,
    last_engaged_at=stored_times,
    sends_since_engagement=st.integers(min_value=0, max_value=MAX_SENDS_SINCE_ENGAGEMENT),
    unsubscribed_stated_at=stored_times,
    **{flag: st.booleans() for flag in FLAGS},
)


# --- contact state and transitions ------------------------------------------------------------


def test_empty_state_is_the_default_state() -> None:
    """The empty state is a contact with no consent known, no flags, no sends, no engagement."""
    assert ContactState.empty() == ContactState()
    assert decode_contact(None) is ContactState.empty()


SENT_ONCE = S(last_marketing_send_at=at(0), sends_since_engagement=1)
UNSUBSCRIBED_AT_0 = S(unsubscribed=True, unsubscribed_stated_at=at(0))
RESUBSCRIBED_AT_1 = S(unsubscribed=False, unsubscribed_stated_at=at(1))


def vars_of(state: ContactState) -> dict[str, Any]:
    """The unsubscribe fields of `state`."""
    return {
        "unsubscribed": state.unsubscribed,
        "unsubscribed_stated_at": state.unsubscribed_stated_at,
    }


ENGAGED = S(last_engaged_at=at(0), ever_engaged=True, sends_since_engagement=3)
ENGAGED_LATER = replace(ENGAGED, last_engaged_at=at(1), sends_since_engagement=0)
JUST_AFTER = at(0) + timedelta(microseconds=999_999)


@pytest.mark.parametrize(
    ("before", "event_type", "bounce_class", "occurred_at", "after"),
    [
        (S(), E.BOUNCE, BounceClass.HARD, at(0), S(hard_bounced=True)),
        (S(), E.BOUNCE, BounceClass.SOFT, at(0), S()),
        (S(), E.BOUNCE, BounceClass.BLOCK, at(0), S()),
        (S(), E.COMPLAINT, None, at(0), S(complained=True)),
        (S(), E.UNSUBSCRIBE, None, at(0), S(unsubscribed=True, unsubscribed_stated_at=at(0))),
        (S(), E.SENT, None, at(0), SENT_ONCE),
        (SENT_ONCE, E.SENT, None, at(1), S(last_marketing_send_at=at(1), sends_since_engagement=2)),
        (SENT_ONCE, E.SENT, None, at(0), SENT_ONCE),
        (SENT_ONCE, E.SENT, None, JUST_AFTER, SENT_ONCE),
        (SENT_ONCE, E.SENT, None, at(-1), SENT_ONCE),
        (
            S(sends_since_engagement=7),
            E.OPEN,
            None,
            at(0),
            S(last_engaged_at=at(0), ever_engaged=True),
        ),
        (ENGAGED, E.CLICK, None, at(1), ENGAGED_LATER),
        (ENGAGED, E.OPEN, None, at(0), ENGAGED),
        (ENGAGED, E.OPEN, None, at(-1), ENGAGED),
        (S(), E.DELIVERED, None, at(0), S()),
        (S(), E.DEFERRED, None, at(0), S()),
        (S(), E.DROPPED_SUPPRESSED, None, at(0), S()),
    ],
)
def test_delivery_event_transitions(
    before: ContactState,
    event_type: EventType,
    bounce_class: BounceClass | None,
    occurred_at: datetime,
    after: ContactState,
) -> None:
    """Each delivery event changes exactly the fields its rule names, and replays change nothing."""
    assert apply_delivery_event(before, event_type, bounce_class, occurred_at) == after


def test_unchanged_state_is_returned_as_is() -> None:
    """A transition that changes nothing returns the very same object, so writes can be skipped."""
    state = ContactState(unsubscribed=True, unsubscribed_stated_at=at(0))
    assert apply_delivery_event(state, EventType.UNSUBSCRIBE, None, at(0)) is state
    assert apply_contact_update(state, update()) is state


def test_send_count_saturates() -> None:
    """The count of sends since engagement stops at the uint16 maximum instead of overflowing."""
    state = ContactState(last_marketing_send_at=at(0), sends_since_engagement=65_535)
    assert apply_delivery_event(state, EventType.SENT, None, at(1)).sends_since_engagement == 65_535


@pytest.mark.parametrize(
    ("moment", "stored"),
    [
        (at(0) + timedelta(microseconds=500), at(0)),
        (datetime(2025, 5, 1, 11, tzinfo=timezone(timedelta(hours=2))), at(0)),
        (datetime(1960, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)),
        (datetime(2200, 1, 1, tzinfo=UTC), datetime.fromtimestamp(2**32 - 1, UTC)),
    ],
)
def test_stored_instant_floors_and_clamps(moment: datetime, stored: datetime) -> None:
    """Stored times are whole UTC seconds within what a uint32 of epoch seconds can hold."""
    assert stored_instant(moment) == stored


@pytest.mark.parametrize(
    ("before", "change", "after"),
    [
        (S(), update(consent=GRANTED), S(consent=GRANTED)),
        (S(consent=GRANTED), update(consent=REVOKED), S(consent=REVOKED)),
        (S(consent=REVOKED), update(), S(consent=REVOKED)),
        (S(), update(unsubscribed=True), UNSUBSCRIBED_AT_0),
        (S(unsubscribed=True), update(unsubscribed=False), S(unsubscribed_stated_at=at(0))),
        (S(unsubscribed=True), update(unsubscribed=None), S(unsubscribed=True)),
        (S(), update(deleted=True), S(deleted=True)),
        (S(deleted=True), update(deleted=False), S(deleted=True)),
        (SENT_ONCE, update(unsubscribed=True), replace(SENT_ONCE, **vars_of(UNSUBSCRIBED_AT_0))),
        # A CRM export older than the recipient's unsubscribe cannot re-subscribe them; at the
        # same second the unsubscribe wins; a later re-subscription does count.
        (UNSUBSCRIBED_AT_0, update(unsubscribed=False, occurred_at=at(-1)), UNSUBSCRIBED_AT_0),
        (UNSUBSCRIBED_AT_0, update(unsubscribed=False), UNSUBSCRIBED_AT_0),
        (UNSUBSCRIBED_AT_0, update(unsubscribed=False, occurred_at=at(1)), RESUBSCRIBED_AT_1),
        (RESUBSCRIBED_AT_1, update(unsubscribed=True), RESUBSCRIBED_AT_1),
    ],
)
def test_contact_update_transitions(
    before: ContactState, change: ContactUpdate, after: ContactState
) -> None:
    """Stated fields override, unstated ones are kept, and a deletion is never undone.

    `unsubscribed` is the latest statement by time (an unsubscribe winning a tie).
    """
    assert apply_contact_update(before, change) == after


@given(st.lists(st.one_of(events, updates), max_size=12), st.randoms(use_true_random=False))
def test_unsubscribe_statements_in_any_order_end_the_same(
    sequence: list[Op], rng: random.Random
) -> None:
    """Whatever order unsubscribes and re-subscriptions arrive in, the latest statement wins."""
    shuffled = list(sequence)
    rng.shuffle(shuffled)
    assert vars_of(apply_all(shuffled)) == vars_of(apply_all(sequence))


@given(ops)
def test_each_op_replayed_in_place_changes_nothing(sequence: list[Op]) -> None:
    """Applying every event or update twice in a row gives the state of applying each once."""
    assert apply_all([op for op in sequence for _ in range(2)]) == apply_all(sequence)


@given(ops)
def test_whole_sequence_replayed_changes_nothing(sequence: list[Op]) -> None:
    """Replaying a whole sequence after it was applied leaves the state as it was."""
    once = apply_all(sequence)
    assert apply_all(sequence, once) == once


@given(ops)
def test_transitions_through_the_codec_match_pure_transitions(sequence: list[Op]) -> None:
    """Storing the state between every step gives the same state as keeping it in memory."""
    stored = encode_contact(ContactState.empty())
    for op in sequence:
        stored = encode_contact(apply(decode_contact(stored), op))
    assert decode_contact(stored) == apply_all(sequence)


# --- codec ------------------------------------------------------------------------------------


@given(states)
def test_codec_round_trips(state: ContactState) -> None:
    """Any state with stored-resolution times decodes to itself from 16 bytes."""
    data = encode_contact(state)
    assert len(data) == ENCODED_CONTACT_SIZE == 16
    assert decode_contact(data) == state


def test_version_1_states_are_still_read_without_a_statement_time() -> None:
    """12-byte version 1 states (stored before statement times were kept) read as before."""
    v1 = bytes([1, 0b0000_0101]) + (1_746_090_000).to_bytes(4, "big") + bytes(4) + bytes([0, 2])
    state = decode_contact(v1)
    assert (state.consent, state.unsubscribed, state.unsubscribed_stated_at) == (
        GRANTED,
        True,
        None,
    )
    assert state.sends_since_engagement == 2
    assert apply_contact_update(state, update(unsubscribed=False)).unsubscribed is False


def test_codec_floors_sub_second_times() -> None:
    """Encoding keeps whole seconds only, as the transitions store them."""
    state = ContactState(last_engaged_at=at(0) + timedelta(microseconds=7), ever_engaged=True)
    assert decode_contact(encode_contact(state)) == replace(state, last_engaged_at=at(0))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "version None"),
        (bytes([3]) + bytes(15), "version 3"),
        (bytes([2]) + bytes(11), "16 bytes, got 12"),
        (bytes([1]) + bytes(10), "12 bytes, got 11"),
        (bytes([1, 0b1000_0000]) + bytes(10), "invalid contact state flags"),
        (bytes([1, 0b0000_0011]) + bytes(10), "invalid contact state flags"),
    ],
)
def test_decode_rejects_foreign_bytes(data: bytes, message: str) -> None:
    """Bytes of another version, length or with impossible flags are refused, not misread."""
    with pytest.raises(ValueError, match=message):
        decode_contact(data)


# --- filter rules -----------------------------------------------------------------------------


SIX_MONTHS = timedelta(weeks=26)
STALE = NOW - SIX_MONTHS - timedelta(seconds=1)
WEEKLY = FilterRules(stale_after=timedelta(weeks=1))
THREE_SENDS = FilterRules(unengaged_never_engaged_sends=3)


@pytest.mark.parametrize(
    ("state", "rules", "expected"),
    [
        (S(), DEFAULT, None),
        (S(), EXPLICIT, X.NO_CONSENT),
        (S(consent=GRANTED), EXPLICIT, None),
        (S(consent=REVOKED), DEFAULT, X.NO_CONSENT),
        (S(consent=REVOKED), EXPLICIT, X.NO_CONSENT),
        (S(consent=GRANTED, deleted=True), DEFAULT, X.NO_CONSENT),
        (S(unsubscribed=True), DEFAULT, X.UNSUBSCRIBED),
        (S(hard_bounced=True), DEFAULT, X.HARD_BOUNCED),
        (S(complained=True), DEFAULT, X.COMPLAINED),
        (S(last_marketing_send_at=NOW - SIX_MONTHS), DEFAULT, None),
        (S(last_marketing_send_at=STALE), DEFAULT, X.NOT_EMAILED_RECENTLY),
        (
            S(last_marketing_send_at=NOW - timedelta(days=8)),
            WEEKLY,
            X.NOT_EMAILED_RECENTLY,
        ),
        (S(sends_since_engagement=10), DEFAULT, None),
        (S(sends_since_engagement=11), DEFAULT, X.UNENGAGED),
        (S(sends_since_engagement=11, ever_engaged=True), DEFAULT, None),
        (S(sends_since_engagement=15, ever_engaged=True), DEFAULT, None),
        (S(sends_since_engagement=16, ever_engaged=True), DEFAULT, X.UNENGAGED),
        (S(sends_since_engagement=3), THREE_SENDS, X.UNENGAGED),
    ],
)
def test_exclusion_rules(state: ContactState, rules: FilterRules, expected: X | None) -> None:
    """Each rule excludes exactly past its documented boundary, in either consent mode."""
    assert exclusion_reason(state, rules, NOW) == expected


@pytest.mark.parametrize(
    ("engaged_first", "sends", "expected"),
    [
        (False, 10, None),
        (False, 11, X.UNENGAGED),
        (True, 15, None),
        (True, 16, X.UNENGAGED),
    ],
)
def test_unengaged_boundary_counted_from_sends(
    *, engaged_first: bool, sends: int, expected: X | None
) -> None:
    """The 11th unengaged send (16th after an engagement) excludes; the one before does not."""
    opens: list[Op] = [(EventType.OPEN, None, at(0))] if engaged_first else []
    sent: list[Op] = [(EventType.SENT, None, at(60 * (n + 1))) for n in range(sends)]
    assert exclusion_reason(apply_all(opens + sent), DEFAULT, NOW) == expected


TRIGGERS: dict[ExclusionReason, dict[str, Any]] = {
    X.NO_CONSENT: {"consent": ConsentState.REVOKED},
    X.UNSUBSCRIBED: {"unsubscribed": True},
    X.HARD_BOUNCED: {"hard_bounced": True},
    X.COMPLAINED: {"complained": True},
    X.NOT_EMAILED_RECENTLY: {"last_marketing_send_at": NOW - timedelta(weeks=27)},
    X.UNENGAGED: {"sends_since_engagement": 11},
}


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(ExclusionReason, 2)))
def test_precedence_follows_the_enum_order(first: ExclusionReason, second: ExclusionReason) -> None:
    """When two reasons apply, the one listed earlier in ExclusionReason is reported."""
    state = ContactState(**TRIGGERS[first], **TRIGGERS[second])
    assert exclusion_reason(state, DEFAULT, NOW) is first


# --- recipient-set accumulator ----------------------------------------------------------------


def recipient(n: int) -> Recipient:
    """Recipient number `n`."""
    return Recipient(contact_id=f"c{n}", address=f"c{n}@example.com")


candidate_states = st.sampled_from([S(), *(S(**fields) for fields in TRIGGERS.values())])
candidate_lists = st.lists(st.tuples(candidate_states, st.booleans()), max_size=40).map(
    lambda rows: [
        Candidate(recipient(n), state, attempted) for n, (state, attempted) in enumerate(rows)
    ]
)


def expected_kept(candidates: list[Candidate]) -> list[Recipient]:
    """The kept recipients, recomputed one by one from the rules."""
    return [
        c.recipient
        for c in candidates
        if not c.attempted and exclusion_reason(c.state, DEFAULT, NOW) is None
    ]


@given(candidate_lists, st.integers(min_value=1, max_value=7))
def test_chunks_concatenate_to_the_kept_recipients(candidates: list[Candidate], size: int) -> None:
    """Chunks are full but the last, indexed in order, and together list the kept in order."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=size)
    chunks = list(accumulator.process(candidates))
    assert [r for chunk in chunks for r in chunk.recipients] == expected_kept(candidates)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert all(len(chunk.recipients) == size for chunk in chunks[:-1])
    assert all(1 <= len(chunk.recipients) <= size for chunk in chunks)
    assert accumulator.summary().chunk_count == len(chunks)


@given(candidate_lists)
@example([])
def test_summary_counts_and_checksum(candidates: list[Candidate]) -> None:
    """The checksum is sha256 over the kept ids plus newlines; each recipient is counted once."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=3)
    list(accumulator.process(candidates))
    summary = accumulator.summary()
    kept = expected_kept(candidates)
    assert (
        summary.checksum
        == hashlib.sha256("".join(f"{r.contact_id}\n" for r in kept).encode()).hexdigest()
    )
    assert summary.total_recipients == len(kept)
    assert summary.already_attempted == sum(c.attempted for c in candidates)
    assert summary.audience_size == len(candidates)
    assert summary.total_recipients + summary.already_attempted + sum(
        summary.excluded.values()
    ) == len(candidates)
    assert all(summary.excluded.values())


def test_summary_of_a_small_set() -> None:
    """A worked example: attempted, excluded and kept recipients land in the right totals."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=2)
    candidates = [
        Candidate(recipient(1), S(), attempted=False),
        Candidate(recipient(2), S(unsubscribed=True, hard_bounced=True), attempted=False),
        Candidate(recipient(3), S(unsubscribed=True), attempted=True),
        Candidate(recipient(4), S(hard_bounced=True), attempted=False),
        Candidate(recipient(5), S(), attempted=False),
        Candidate(recipient(6), S(), attempted=False),
    ]
    chunks = list(accumulator.process(candidates))
    assert [[r.contact_id for r in chunk.recipients] for chunk in chunks] == [["c1", "c5"], ["c6"]]
    summary = accumulator.summary()
    assert summary.excluded == {ExclusionReason.UNSUBSCRIBED: 1, ExclusionReason.HARD_BOUNCED: 1}
    assert (summary.total_recipients, summary.already_attempted, summary.chunk_count) == (3, 1, 2)
    assert summary.checksum == hashlib.sha256(b"c1\nc5\nc6\n").hexdigest()


def test_chunks_stream_before_the_audience_ends() -> None:
    """A full chunk is handed over before the next recipient is read, so memory stays bounded."""
    read: list[int] = []
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=10)

    def audience() -> Iterator[Candidate]:
        for n in range(1_005):
            assert len(accumulator._pending) < 10
            read.append(n)
            yield Candidate(recipient(n), S(), attempted=False)

    for chunk in accumulator.process(audience()):
        assert len(read) == chunk.index * 10 + len(chunk.recipients)
    assert accumulator.summary().chunk_count == 101


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda a: a.summary(), "not finished"),
        (lambda a: (a.finish(), a.finish()), "already finished"),
        (
            lambda a: (a.finish(), a.add(recipient(1), S(), attempted=False)),
            "already finished",
        ),
    ],
)
def test_accumulator_enforces_its_lifecycle(
    action: Callable[[RecipientSetAccumulator], object], error: str
) -> None:
    """A summary needs a finished set, and a finished set takes no more recipients."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=1)
    with pytest.raises(RuntimeError, match=error):
        action(accumulator)


@pytest.mark.parametrize(
    "call",
    [
        lambda: S(sends_since_engagement=-1),
        lambda: S(sends_since_engagement=MAX_SENDS_SINCE_ENGAGEMENT + 1),
        lambda: S(last_marketing_send_at=NAIVE),
        lambda: S(last_engaged_at=NAIVE),
        lambda: FilterRules(stale_after=timedelta(0)),
        lambda: FilterRules(unengaged_never_engaged_sends=0),
        lambda: FilterRules(unengaged_engaged_before_sends=0),
        lambda: apply_delivery_event(S(), E.SENT, None, NAIVE),
        lambda: exclusion_reason(S(), DEFAULT, NAIVE),
        lambda: RecipientSetAccumulator(rules=DEFAULT, now=NAIVE, chunk_size=1),
        lambda: RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=0),
    ],
)
def test_bad_arguments_are_refused(call: Callable[[], object]) -> None:
    """Naive times, out-of-range counts and nonsensical rules or sizes are refused up front."""
    with pytest.raises(ValueError, match=r"must be"):
        call()
