"""Shared helpers of the contact state tests: times, ops, states with recent sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from processor.domain.contact_state import (
    MAX_COUNTED_SENDS,
    ContactState,
    apply_contact_update,
    apply_delivery_event,
)
from schemas.audience import ConsentState, ContactUpdate
from schemas.events import BounceClass, EventType

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
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


def unengaged(sends: int, *, engaged_before: bool = False, **fields: Any) -> ContactState:
    """A contact sent `sends` mails a minute apart (after an engagement at T0, if any)."""
    times = tuple(at(60 * n) for n in range(sends, 0, -1))
    return ContactState(
        last_marketing_send_at=times[0] if times else None,
        last_engaged_at=T0 if engaged_before else None,
        ever_engaged=engaged_before,
        recent_sends=times,
        **fields,
    )


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
MAX_SECONDS = 2**32 - 1
FLAGS = ("unsubscribed", "deleted", "hard_bounced", "complained", "ever_engaged")


def _moment(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@st.composite
def states(draw: st.DrawFn) -> ContactState:
    """Any valid contact state with times at the stored resolution."""
    seconds = st.none() | st.integers(min_value=1, max_value=MAX_SECONDS)
    last_send, engaged = draw(seconds), draw(seconds)
    recent: list[int] = []
    low = 1 if engaged is None else engaged + 1
    if last_send is not None and low <= last_send:
        spread = draw(st.sampled_from([60, 86_400 * 7, MAX_SECONDS]))
        times = st.integers(min_value=max(low, last_send - spread), max_value=last_send)
        recent = draw(st.lists(times, unique=True, max_size=MAX_COUNTED_SENDS))
    return ContactState(
        consent=draw(st.none() | st.sampled_from(ConsentState)),
        last_marketing_send_at=_moment(last_send),
        last_engaged_at=_moment(engaged),
        recent_sends=tuple(datetime.fromtimestamp(s, UTC) for s in sorted(recent, reverse=True)),
        unsubscribed_stated_at=_moment(draw(seconds)),
        **{flag: draw(st.booleans()) for flag in FLAGS},
    )
