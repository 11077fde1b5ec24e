"""What sendguard knows about each contact, and the resume filter built on it.

Owns the contact state, its replay-safe transitions, its compact binary codec, the exclusion
rules and the streaming accumulator of a filtered recipient set. Pure: time is passed in.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from schemas.audience import ConsentState
from schemas.events import BounceClass, EventType
from schemas.resume import ExclusionReason

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from schemas.audience import ContactUpdate
    from schemas.events import Recipient

MAX_SENDS_SINCE_ENGAGEMENT = 0xFFFF
"""`sends_since_engagement` saturates here (it is stored as a uint16)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
MAX_STORED_SECONDS = 0xFFFF_FFFF
"""The latest instant a contact state can hold (2106), in epoch seconds."""


def _require_aware(moment: datetime, name: str) -> None:
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
    _require_aware(moment, "timestamp")
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
    sends_since_engagement: int = 0
    ever_engaged: bool = False
    unsubscribed_stated_at: datetime | None = None
    """When the latest statement about `unsubscribed` was made (an unsubscribe event or a
    contact update; as `stored_instant` keeps it), None if unknown. An older statement arriving
    later changes nothing."""

    def __post_init__(self) -> None:
        if not 0 <= self.sends_since_engagement <= MAX_SENDS_SINCE_ENGAGEMENT:
            raise ValueError(
                f"sends_since_engagement must be 0..{MAX_SENDS_SINCE_ENGAGEMENT}, "
                f"got {self.sends_since_engagement}"
            )
        if self.last_marketing_send_at is not None:
            _require_aware(self.last_marketing_send_at, "last_marketing_send_at")
        if self.last_engaged_at is not None:
            _require_aware(self.last_engaged_at, "last_engaged_at")
        if self.unsubscribed_stated_at is not None:
            _require_aware(self.unsubscribed_stated_at, "unsubscribed_stated_at")

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

    Hard bounces, complaints and unsubscribes set their flag. A send counts (advancing the last
    send time and `sends_since_engagement`) only if strictly later than the last send seen; an
    open or click marks the contact engaged and, if later than the last engagement seen, resets
    `sends_since_engagement`. Times are compared as stored (whole UTC seconds).

    Approximation: counts follow arrival order. A send older than the last one seen is not
    counted, several sends within one second count once, and a late-arriving engagement resets
    the count even if sends followed it. Exact when a contact's events arrive in time order.

    Returns `state` itself when nothing changes, so a caller can skip the write.
    """
    _require_aware(occurred_at, "occurred_at")
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
    if last is not None and sent_at <= last:
        return state
    sends = min(state.sends_since_engagement + 1, MAX_SENDS_SINCE_ENGAGEMENT)
    return replace(state, last_marketing_send_at=sent_at, sends_since_engagement=sends)


def _record_engagement(state: ContactState, engaged_at: datetime) -> ContactState:
    last = state.last_engaged_at
    if last is not None and engaged_at <= last:
        return replace(state, ever_engaged=True)
    return replace(state, ever_engaged=True, last_engaged_at=engaged_at, sends_since_engagement=0)


def apply_contact_update(state: ContactState, update: ContactUpdate) -> ContactState:
    """The state after a contact update from another system; applying it again changes nothing.

    Consent, when stated (not None), replaces what sendguard knew. `unsubscribed`, when stated,
    counts as of the update's `occurred_at`: an explicit `unsubscribed=False` re-subscribes a
    contact only if no unsubscribe (event or update) was stated later. `deleted` only ever
    turns on: a deleted contact stays deleted. Returns `state` itself when nothing changes.
    """
    new = replace(
        state,
        consent=state.consent if update.consent is None else update.consent,
        deleted=state.deleted or update.deleted,
    )
    if update.unsubscribed is not None:
        at = stored_instant(update.occurred_at)
        new = _state_unsubscribed(new, at, unsubscribed=update.unsubscribed)
    return state if new == state else new


# Codec, version 2: 16 bytes, big-endian.
#   B version | B flags | I last send (epoch s, 0 = None) | I last engaged (same) | H sends since
#   | I unsubscribed stated at (same)
# flags: bits 0-1 consent (0 unknown, 1 granted, 2 revoked), 2 unsubscribed, 3 deleted,
#        4 hard bounced, 5 complained, 6 ever engaged, 7 reserved (0).
# Version 1 (12 bytes, without the last field) is still read: its statement time is unknown.
_CODEC_VERSION = 2
_LAYOUT = struct.Struct(">BBIIHI")
_LAYOUT_V1 = struct.Struct(">BBIIH")
ENCODED_CONTACT_SIZE = _LAYOUT.size
"""Bytes per encoded contact state."""

_CONSENT_CODE: dict[ConsentState | None, int] = {
    None: 0,
    ConsentState.GRANTED: 1,
    ConsentState.REVOKED: 2,
}
_CONSENT_BY_CODE = {code: consent for consent, code in _CONSENT_CODE.items()}
_CONSENT_MASK = 0b11
_UNSUBSCRIBED = 1 << 2
_DELETED = 1 << 3
_HARD_BOUNCED = 1 << 4
_COMPLAINED = 1 << 5
_EVER_ENGAGED = 1 << 6
_RESERVED = 1 << 7


def _encode_instant(moment: datetime | None) -> int:
    return 0 if moment is None else _epoch_seconds(stored_instant(moment))


def _decode_instant(seconds: int) -> datetime | None:
    return None if seconds == 0 else _EPOCH + timedelta(seconds=seconds)


def encode_contact(state: ContactState) -> bytes:
    """`state` as `ENCODED_CONTACT_SIZE` bytes; times are stored as by `stored_instant`."""
    flags = _CONSENT_CODE[state.consent]
    for bit, on in (
        (_UNSUBSCRIBED, state.unsubscribed),
        (_DELETED, state.deleted),
        (_HARD_BOUNCED, state.hard_bounced),
        (_COMPLAINED, state.complained),
        (_EVER_ENGAGED, state.ever_engaged),
    ):
        if on:
            flags |= bit
    return _LAYOUT.pack(
        _CODEC_VERSION,
        flags,
        _encode_instant(state.last_marketing_send_at),
        _encode_instant(state.last_engaged_at),
        state.sends_since_engagement,
        _encode_instant(state.unsubscribed_stated_at),
    )


def decode_contact(data: bytes | None) -> ContactState:
    """The state `encode_contact` wrote; None (no stored state) is the empty state.

    Raises:
        ValueError: `data` is not a contact state this version can read.
    """
    if data is None:
        return _EMPTY
    version = data[0] if data else None
    layout = {1: _LAYOUT_V1, _CODEC_VERSION: _LAYOUT}.get(version or 0)
    if layout is None:
        raise ValueError(f"unsupported contact state version {version} (expected 1 or 2)")
    if len(data) != layout.size:
        raise ValueError(f"contact state v{version} must be {layout.size} bytes, got {len(data)}")
    _, flags, sent, engaged, sends, *rest = layout.unpack(data)
    stated = rest[0] if rest else 0
    consent_code = flags & _CONSENT_MASK
    if consent_code not in _CONSENT_BY_CODE or flags & _RESERVED:
        raise ValueError(f"invalid contact state flags {flags:#010b}")
    return ContactState(
        consent=_CONSENT_BY_CODE[consent_code],
        unsubscribed=bool(flags & _UNSUBSCRIBED),
        deleted=bool(flags & _DELETED),
        hard_bounced=bool(flags & _HARD_BOUNCED),
        complained=bool(flags & _COMPLAINED),
        last_marketing_send_at=_decode_instant(sent),
        last_engaged_at=_decode_instant(engaged),
        sends_since_engagement=sends,
        unsubscribed_stated_at=_decode_instant(stated),
        ever_engaged=bool(flags & _EVER_ENGAGED),
    )


@dataclass(frozen=True, slots=True)
class FilterRules:
    """A tenant's resume-filter settings; the defaults follow HubSpot's.

    Attributes:
        require_explicit_consent: Exclude contacts whose consent is unknown, not only revoked.
        stale_after: Exclude contacts last emailed longer ago than this (six months).
        unengaged_never_engaged_sends: Exclude never-engaged contacts sent this many emails.
        unengaged_engaged_before_sends: Exclude once-engaged contacts not engaged in this many.
    """

    require_explicit_consent: bool = False
    stale_after: timedelta = timedelta(weeks=26)
    unengaged_never_engaged_sends: int = 11
    unengaged_engaged_before_sends: int = 16

    def __post_init__(self) -> None:
        if self.stale_after <= timedelta(0):
            raise ValueError(f"stale_after must be positive, got {self.stale_after}")
        if min(self.unengaged_never_engaged_sends, self.unengaged_engaged_before_sends) < 1:
            raise ValueError("the unengaged send thresholds must be at least 1")


def exclusion_reason(
    state: ContactState, rules: FilterRules, now: datetime
) -> ExclusionReason | None:
    """Why the contact must not be sent to, or None: the first reason that applies.

    In `ExclusionReason` order:
    1. NO_CONSENT: the contact was deleted (a deleted contact has no consent), its consent
       was revoked, or its consent is unknown and the rules require explicit consent.
    2. UNSUBSCRIBED: by an unsubscribe event or by another system (updates, imports).
    3. HARD_BOUNCED: any hard bounce of the tenant's mail to the contact.
    4. COMPLAINED: any spam complaint.
    5. NOT_EMAILED_RECENTLY: last marketing send more than `stale_after` before `now`
       (exactly `stale_after` ago still passes; a contact never emailed passes).
    6. UNENGAGED: never engaged and at least `unengaged_never_engaged_sends` sends, or
       engaged before but not in the last `unengaged_engaged_before_sends` sends.
    """
    _require_aware(now, "now")
    lacks_consent = (
        state.deleted
        or state.consent is ConsentState.REVOKED
        or (rules.require_explicit_consent and state.consent is None)
    )
    last_send = state.last_marketing_send_at
    stale = last_send is not None and now - last_send > rules.stale_after
    unengaged_after = (
        rules.unengaged_engaged_before_sends
        if state.ever_engaged
        else rules.unengaged_never_engaged_sends
    )
    checks = (
        (ExclusionReason.NO_CONSENT, lacks_consent),
        (ExclusionReason.UNSUBSCRIBED, state.unsubscribed),
        (ExclusionReason.HARD_BOUNCED, state.hard_bounced),
        (ExclusionReason.COMPLAINED, state.complained),
        (ExclusionReason.NOT_EMAILED_RECENTLY, stale),
        (ExclusionReason.UNENGAGED, state.sends_since_engagement >= unengaged_after),
    )
    return next((reason for reason, applies in checks if applies), None)


class Candidate(NamedTuple):
    """One planned recipient, as the resume filter sees it."""

    recipient: Recipient
    state: ContactState
    attempted: bool
    """The paused campaign already attempted it: not part of the remainder."""


@dataclass(frozen=True, slots=True)
class KeptChunk:
    """A chunk of the filtered recipient set, ready to publish as a `RecipientChunk`."""

    index: int
    recipients: tuple[Recipient, ...]


@dataclass(frozen=True, slots=True)
class RecipientSetSummary:
    """The totals of a filtered recipient set, as its `RecipientSetManifest` states them."""

    audience_size: int
    total_recipients: int
    already_attempted: int
    excluded: dict[ExclusionReason, int]
    """Only reasons that excluded someone, in precedence order."""
    chunk_count: int
    chunk_size: int
    checksum: str
    """sha256 hex over the kept contact ids in order, each followed by a newline."""


class RecipientSetAccumulator:
    """Filters a campaign's planned recipients, in audience order, into chunks of kept ones.

    Streaming: it holds at most one unfinished chunk, handing each over as soon as it fills,
    so memory does not grow with the audience. It does not de-duplicate contacts.
    """

    def __init__(self, *, rules: FilterRules, now: datetime, chunk_size: int) -> None:
        _require_aware(now, "now")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self._rules = rules
        self._now = now
        self._chunk_size = chunk_size
        self._pending: list[Recipient] = []
        self._digest = hashlib.sha256()
        self._excluded = dict.fromkeys(ExclusionReason, 0)
        self._audience_size = 0
        self._already_attempted = 0
        self._kept = 0
        self._chunk_count = 0
        self._finished = False

    def add(
        self, recipient: Recipient, state: ContactState, *, attempted: bool
    ) -> KeptChunk | None:
        """Consider the next recipient; returns the chunk it completes, if it completes one."""
        if self._finished:
            raise RuntimeError("the recipient set is already finished")
        self._audience_size += 1
        if attempted:
            self._already_attempted += 1
            return None
        reason = exclusion_reason(state, self._rules, self._now)
        if reason is not None:
            self._excluded[reason] += 1
            return None
        self._kept += 1
        self._digest.update(recipient.contact_id.encode())
        self._digest.update(b"\n")
        self._pending.append(recipient)
        return self._take_chunk() if len(self._pending) >= self._chunk_size else None

    def finish(self) -> KeptChunk | None:
        """End the set; returns its last, partial chunk if any recipients are pending."""
        if self._finished:
            raise RuntimeError("the recipient set is already finished")
        self._finished = True
        return self._take_chunk() if self._pending else None

    def process(self, candidates: Iterable[Candidate]) -> Iterator[KeptChunk]:
        """Add every candidate and finish, yielding each chunk as it completes."""
        for recipient, state, attempted in candidates:
            chunk = self.add(recipient, state, attempted=attempted)
            if chunk is not None:
                yield chunk
        last = self.finish()
        if last is not None:
            yield last

    def summary(self) -> RecipientSetSummary:
        """The totals of the finished set."""
        if not self._finished:
            raise RuntimeError("the recipient set is not finished yet")
        return RecipientSetSummary(
            audience_size=self._audience_size,
            total_recipients=self._kept,
            already_attempted=self._already_attempted,
            excluded={reason: n for reason, n in self._excluded.items() if n},
            chunk_count=self._chunk_count,
            chunk_size=self._chunk_size,
            checksum=self._digest.hexdigest(),
        )

    def _take_chunk(self) -> KeptChunk:
        chunk = KeptChunk(index=self._chunk_count, recipients=tuple(self._pending))
        self._pending.clear()
        self._chunk_count += 1
        return chunk
