"""Unit tests of contact state and its transitions: replay-safe and free of arrival order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.domain.contact_state import (
    ERASED,
    MAX_COUNTED_SENDS,
    ContactState,
    apply_contact_update,
    apply_delivery_event,
    stored_instant,
    stored_seconds,
)
from processor.domain.recipients import FilterRules, exclusion_reason
from schemas.audience import ConsentState, ContactUpdate
from schemas.events import BounceClass, EventType
from tests.unit.domain.contact_support import (
    T0,
    Op,
    apply_all,
    at,
    events,
    ops,
    update,
    updates,
)

if TYPE_CHECKING:
    import random

S = ContactState
E = EventType
GRANTED, REVOKED = ConsentState.GRANTED, ConsentState.REVOKED
NAIVE = datetime(2025, 1, 1)  # noqa: DTZ001  # naive on purpose, to be refused


def test_empty_state_is_the_default_state() -> None:
    """The empty state is a contact with no consent known, no flags, no sends, no engagement."""
    assert ContactState.empty() == ContactState()
    assert ContactState.empty().sends_since_engagement == 0


SENT_ONCE = S(last_marketing_send_at=at(0), recent_sends=(at(0),))
SENT_TWICE = S(last_marketing_send_at=at(1), recent_sends=(at(1), at(0)))
UNSUBSCRIBED_AT_0 = S(unsubscribed=True, unsubscribed_stated_at=at(0))
RESUBSCRIBED_AT_1 = S(unsubscribed=False, unsubscribed_stated_at=at(1))


def vars_of(state: ContactState) -> dict[str, Any]:
    """The unsubscribe fields of `state`."""
    return {
        "unsubscribed": state.unsubscribed,
        "unsubscribed_stated_at": state.unsubscribed_stated_at,
    }


ENGAGED = S(
    last_engaged_at=at(0),
    ever_engaged=True,
    last_marketing_send_at=at(3),
    recent_sends=(at(3), at(2), at(1)),
)
JUST_AFTER = at(0) + timedelta(microseconds=999_999)
LATE_SEND = S(last_marketing_send_at=at(0), recent_sends=(at(0), at(-1)))
OPENED_AFTER = S(last_engaged_at=at(5), ever_engaged=True, last_marketing_send_at=at(1))
OPENED_BETWEEN = replace(OPENED_AFTER, last_engaged_at=at(0), recent_sends=(at(1),))
CLICKED_LATER = replace(ENGAGED, last_engaged_at=at(2), recent_sends=(at(3),))
OPENED_AT_5 = S(last_engaged_at=at(5), ever_engaged=True)


@pytest.mark.parametrize(
    ("before", "event_type", "bounce_class", "occurred_at", "after"),
    [
        (S(), E.BOUNCE, BounceClass.HARD, at(0), S(hard_bounced=True)),
        (S(), E.BOUNCE, BounceClass.SOFT, at(0), S()),
        (S(), E.BOUNCE, BounceClass.BLOCK, at(0), S()),
        (S(), E.COMPLAINT, None, at(0), S(complained=True)),
        (S(), E.UNSUBSCRIBE, None, at(0), S(unsubscribed=True, unsubscribed_stated_at=at(0))),
        (S(), E.SENT, None, at(0), SENT_ONCE),
        (SENT_ONCE, E.SENT, None, at(1), SENT_TWICE),
        (SENT_ONCE, E.SENT, None, at(0), SENT_ONCE),
        (SENT_ONCE, E.SENT, None, JUST_AFTER, SENT_ONCE),
        # A send older than the last one seen still counts (it arrived late).
        (SENT_ONCE, E.SENT, None, at(-1), LATE_SEND),
        (SENT_TWICE, E.OPEN, None, at(0), OPENED_BETWEEN),
        (SENT_TWICE, E.OPEN, None, at(5), OPENED_AFTER),
        (ENGAGED, E.CLICK, None, at(2), CLICKED_LATER),
        (ENGAGED, E.OPEN, None, at(0), ENGAGED),
        (ENGAGED, E.OPEN, None, at(-1), ENGAGED),
        # A send not after the last engagement is no send since it, but may be the last send.
        (ENGAGED, E.SENT, None, at(0), ENGAGED),
        (OPENED_AT_5, E.SENT, None, at(1), replace(OPENED_AT_5, last_marketing_send_at=at(1))),
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
    assert apply_delivery_event(SENT_TWICE, EventType.SENT, None, at(0)) is SENT_TWICE


def test_only_the_latest_sends_are_kept() -> None:
    """Past `MAX_COUNTED_SENDS` the oldest sends drop out: the count stops, the latest stay."""
    sends: list[Op] = [(E.SENT, None, at(n)) for n in range(MAX_COUNTED_SENDS + 5)]
    state = apply_all(sends)
    assert state.sends_since_engagement == MAX_COUNTED_SENDS
    assert state.recent_sends[0] == at(MAX_COUNTED_SENDS + 4)
    assert state.recent_sends[-1] == at(5)
    assert apply_delivery_event(state, E.SENT, None, at(0)) is state


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


# --- arrival order ----------------------------------------------------------------------------

# Sends and engagements spread over a wide range, so that more than MAX_COUNTED_SENDS can pile
# up; times repeat (within a second too) to exercise ties.
wide_instants = st.builds(
    lambda seconds, micros: at(seconds) + timedelta(microseconds=micros),
    st.integers(min_value=-40, max_value=40),
    st.sampled_from([0, 500_000]),
)
timed_events = st.tuples(
    st.sampled_from([E.SENT, E.SENT, E.SENT, E.OPEN, E.CLICK, E.UNSUBSCRIBE]),
    st.none(),
    wide_instants,
)
order_free_ops = st.lists(
    st.one_of(
        timed_events,
        events,
        # Consent has no time: the last update stating it wins, so it is left out here.
        updates.map(lambda u: u.model_copy(update={"consent": None})),
    ),
    max_size=60,
)
RULES = [FilterRules(), FilterRules(unengaged_never_engaged_sends=3)]
NOW = at(0) + timedelta(days=1)


@given(order_free_ops, st.randoms(use_true_random=False), st.data())
def test_events_in_any_order_and_replayed_fold_to_the_same_state(
    sequence: list[Op], rng: random.Random, data: st.DataObject
) -> None:
    """Shuffling a contact's events and replaying some changes neither state nor verdict."""
    arrived = list(sequence)
    arrived += data.draw(st.lists(st.sampled_from(sequence), max_size=10)) if sequence else []
    rng.shuffle(arrived)
    in_order, shuffled = apply_all(sequence), apply_all(arrived)
    assert shuffled == in_order
    for rules in RULES:
        assert exclusion_reason(shuffled, rules, NOW) == exclusion_reason(in_order, rules, NOW)


@given(order_free_ops)
def test_recent_sends_are_the_latest_sends_after_the_latest_engagement(sequence: list[Op]) -> None:
    """The state holds what a recount of all events gives, whatever the order they came in.

    Unless the contact was deleted: then nothing is kept.
    """
    state = apply_all(sequence)
    if any(isinstance(op, ContactUpdate) and op.deleted for op in sequence):
        assert state == ERASED
        return
    timed = [(op[0], stored_seconds(op[2])) for op in sequence if isinstance(op, tuple)]
    sends = {seconds for kind, seconds in timed if kind is E.SENT}
    engagements = [seconds for kind, seconds in timed if kind in {E.OPEN, E.CLICK}]
    engaged = max(engagements, default=0)
    expected = sorted((s for s in sends if s > engaged), reverse=True)[:MAX_COUNTED_SENDS]
    assert [stored_seconds(t) for t in state.recent_sends] == expected
    assert state.last_marketing_send_at == (
        datetime.fromtimestamp(max(sends), UTC) if sends else None
    )
    assert state.ever_engaged == bool(engagements)


def test_an_earlier_send_arriving_late_still_counts() -> None:
    """The issue's case: 11 unengaged sends, the first arriving last, exclude the contact."""
    sends: list[Op] = [(E.SENT, None, T0 + timedelta(days=7 * n)) for n in range(11)]
    late_first = sends[1:] + sends[:1]
    state = apply_all(late_first)
    assert state.sends_since_engagement == 11
    assert exclusion_reason(state, FilterRules(), NOW + timedelta(days=70)) is not None


def test_a_late_engagement_clears_only_the_sends_before_it() -> None:
    """An open arriving after later sends resets the count to the sends that followed it."""
    sends: list[Op] = [(E.SENT, None, at(60 * n)) for n in range(1, 13)]
    state = apply_all([*sends, (E.OPEN, None, at(60 * 4 + 30))])
    assert state.sends_since_engagement == 8
    assert state.recent_sends[-1] == at(60 * 5)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"last_marketing_send_at": NAIVE}, "must be timezone-aware"),
        ({"last_engaged_at": NAIVE}, "must be timezone-aware"),
        ({"recent_sends": (at(0),)}, "cannot be later than last_marketing_send_at"),
        ({"last_marketing_send_at": at(0), "recent_sends": (at(1),)}, "cannot be later"),
        ({"last_marketing_send_at": at(1), "recent_sends": (at(0), at(1))}, "newest first"),
        ({"last_marketing_send_at": at(1), "recent_sends": (at(1), at(1))}, "distinct"),
        (
            {"last_marketing_send_at": at(1), "last_engaged_at": at(1), "recent_sends": (at(1),)},
            "later than last_engaged_at",
        ),
        (
            {
                "last_marketing_send_at": at(100),
                "recent_sends": tuple(at(100 - n) for n in range(MAX_COUNTED_SENDS + 1)),
            },
            f"at most {MAX_COUNTED_SENDS}",
        ),
    ],
)
def test_impossible_states_are_refused(fields: dict[str, Any], message: str) -> None:
    """Naive times and recent sends out of order, out of range or too many are refused."""
    with pytest.raises(ValueError, match=message):
        ContactState(**fields)


def test_a_naive_event_time_is_refused() -> None:
    """A transition needs an aware time."""
    with pytest.raises(ValueError, match="must be timezone-aware"):
        apply_delivery_event(S(), E.SENT, None, NAIVE)
