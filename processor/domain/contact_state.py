"""What sendguard knows about each contact, and its replay-safe, order-free transitions.

Owns the contact state, the stored resolution of its times and the transitions by delivery
events and contact updates. Pure: time is passed in.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from schemas.audience import ConsentState, ContactUpdate

MAX_COUNTED_SENDS = 20
"""How many of the latest sends since the last engagement a contact state keeps: the highest
unengaged-send threshold `FilterRules` accepts (HubSpot's are 11 and 16)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
MAX_STORED_SECONDS = 0xFFFF_FFFF
"""The latest instant a contact state can hold (2106), in epoch seconds."""


def require_aware(moment: datetime, name: str) -> None:
    """Refuse a naive `moment` (named `name` in the error)."""
    if moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


def _epoch_seconds(moment: datetime) -> int:
    return (moment - _EPOCH) // _ONE_SECOND


def stored_instant(moment: datetime) -> datetime:
    """`moment` as the codec keeps it: UTC, floored to the second, clamped to 1970..2106.

    The transitions store only such instants, so a state survives the codec unchanged and a
    replayed event compares equal to what its first delivery stored.
    """
    return _EPOCH + timedelta(seconds=stored_seconds(moment))


def stored_seconds(moment: datetime) -> int:
    """The epoch seconds of `stored_instant(moment)`."""
    require_aware(moment, "timestamp")
    return min(max(_epoch_seconds(moment), 1), MAX_STORED_SECONDS)


@dataclass(frozen=True, slots=True)
class ContactState:
    """Everything the resume filter needs to know about one contact of one tenant.

    The defaults describe a contact sendguard has never heard of (see `empty`).
    """

    consent: ConsentState | None = None
    unsubscribed: bool = False
    deleted: bool = False
    hard_bounced: bool = False
    complained: bool = False
    last_marketing_send_at: datetime | None = None
    last_engaged_at: datetime | None = None
    recent_sends: tuple[datetime, ...] = ()
    """The times of the latest sends after `last_engaged_at` (of all sends if never engaged),
    newest first, distinct, at most `MAX_COUNTED_SENDS`: enough to tell whether a threshold is
    reached, and to fold sends and engagements arriving in any order to the same state."""
    ever_engaged: bool = False
    unsubscribed_stated_at: datetime | None = None
    """When the latest statement about `unsubscribed` was made (an unsubscribe event or a
    contact update; as `stored_instant` keeps it), None if unknown. An older statement arriving
    later changes nothing."""

    def __post_init__(self) -> None:
        if self.last_marketing_send_at is not None:
            require_aware(self.last_marketing_send_at, "last_marketing_send_at")
        if self.last_engaged_at is not None:
            require_aware(self.last_engaged_at, "last_engaged_at")
        if self.unsubscribed_stated_at is not None:
            require_aware(self.unsubscribed_stated_at, "unsubscribed_stated_at")
        if self.recent_sends:
            self._check_recent_sends()

    def _check_recent_sends(self) -> None:
        sends = self.recent_sends
        if len(sends) > MAX_COUNTED_SENDS:
            raise ValueError(f"at most {MAX_COUNTED_SENDS} recent sends, got {len(sends)}")
        for sent_at in sends:
            require_aware(sent_at, "recent_sends")
        if any(newer <= older for newer, older in itertools.pairwise(sends)):
            raise ValueError("recent_sends must be distinct, newest first")
        last_send = self.last_marketing_send_at
        if last_send is None or sends[0] > last_send:
            raise ValueError("recent_sends cannot be later than last_marketing_send_at")
        if self.last_engaged_at is not None and sends[-1] <= self.last_engaged_at:
            raise ValueError("recent_sends must all be later than last_engaged_at")

    @property
    def sends_since_engagement(self) -> int:
        """Sends since the last engagement, counted up to `MAX_COUNTED_SENDS`."""
        return len(self.recent_sends)

    @staticmethod
    def empty() -> ContactState:
        """The state of a contact sendguard knows nothing about."""
        return _EMPTY


_EMPTY = ContactState()


def apply_delivery_event(
    state: ContactState,
    event_type: EventType,
    bounce_class: BounceClass | None,
    occurred_at: datetime,
) -> ContactState:
    """The state after one delivery event; applying the same event again changes nothing.

    Hard bounces, complaints and unsubscribes set their flag. A send advances the last send
    time to the latest seen and, if later than the last engagement seen, joins `recent_sends`;
    an open or click marks the contact engaged, advances the last engagement to the latest seen
    and drops the recent sends not later than it. Times are compared as stored (whole UTC
    seconds): sends within one second count once, and a send in the second of an engagement
    does not count after it.

    Events fold to the same state in any order, replayed or not: each field is a maximum, a
    union or a flag, and `recent_sends` holds the latest sends after the latest engagement
    whichever came first.

    A deleted (erased) contact keeps nothing: its state stays `ERASED`.

    Returns `state` itself when nothing changes, so a caller can skip the write.
    """
    require_aware(occurred_at, "occurred_at")
    if state.deleted:
        return state
    match event_type:
        case EventType.BOUNCE if bounce_class is BounceClass.HARD:
            new = replace(state, hard_bounced=True)
        case EventType.COMPLAINT:
            new = replace(state, complained=True)
        case EventType.UNSUBSCRIBE:
            new = _state_unsubscribed(state, stored_instant(occurred_at), unsubscribed=True)
        case EventType.SENT:
            new = _record_send(state, stored_instant(occurred_at))
        case EventType.OPEN | EventType.CLICK:
            new = _record_engagement(state, stored_instant(occurred_at))
        case _:
            new = state
    return state if new == state else new


def _state_unsubscribed(state: ContactState, at: datetime, *, unsubscribed: bool) -> ContactState:
    """The latest statement about `unsubscribed` wins; at the same second, an unsubscribe does.

    So a CRM sync exported before a recipient unsubscribed, arriving after, cannot re-subscribe
    them; replays and reorderings end in the same state. A state stored before statement times
    were kept (None) takes any statement.
    """
    last = state.unsubscribed_stated_at
    if last is not None and (at < last or (at == last and not unsubscribed)):
        return state
    return replace(state, unsubscribed=unsubscribed, unsubscribed_stated_at=at)


def _record_send(state: ContactState, sent_at: datetime) -> ContactState:
    last = state.last_marketing_send_at
    latest = sent_at if last is None or sent_at > last else last
    sends = state.recent_sends
    engaged = state.last_engaged_at
    if (engaged is None or sent_at > engaged) and sent_at not in sends:
        sends = tuple(sorted((*sends, sent_at), reverse=True)[:MAX_COUNTED_SENDS])
    return replace(state, last_marketing_send_at=latest, recent_sends=sends)


def _record_engagement(state: ContactState, engaged_at: datetime) -> ContactState:
    last = state.last_engaged_at
    if last is not None and engaged_at <= last:
        return replace(state, ever_engaged=True)
    later = tuple(sent_at for sent_at in state.recent_sends if sent_at > engaged_at)
    return replace(state, ever_engaged=True, last_engaged_at=engaged_at, recent_sends=later)


ERASED = ContactState(deleted=True)
"""What is left of a deleted contact: the mark that it was deleted, nothing of its history."""


def apply_contact_update(state: ContactState, update: ContactUpdate) -> ContactState:
    """The state after a contact update from another system; applying it again changes nothing.

    Consent, when stated (not None), replaces what sendguard knew. `unsubscribed`, when stated,
    counts as of the update's `occurred_at`: an explicit `unsubscribed=False` re-subscribes a
    contact only if no unsubscribe (event or update) was stated later. `deleted` erases what
    was known (the right to erasure) and leaves only the mark itself, so the contact is never
    mailed again; nothing is kept of it afterwards either, so erasure folds to the same state
    whatever the order. Returns `state` itself when nothing changes.
    """
    if update.deleted or state.deleted:
        return state if state == ERASED else ERASED
    new = replace(
        state,
        consent=state.consent if update.consent is None else update.consent,
        deleted=state.deleted or update.deleted,
    )
    if update.unsubscribed is not None:
        at = stored_instant(update.occurred_at)
        new = _state_unsubscribed(new, at, unsubscribed=update.unsubscribed)
    return state if new == state else new
