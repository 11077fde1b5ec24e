"""The resume filter: a tenant's exclusion rules and the streaming accumulator of a recipient set.

Pure: time is passed in. What the rules read of each contact is contact_state.py's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, NamedTuple

from processor.domain.contact_state import MAX_COUNTED_SENDS, ContactState, require_aware
from schemas.audience import ConsentState
from schemas.resume import ExclusionReason

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from schemas.events import Recipient


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
        thresholds = (self.unengaged_never_engaged_sends, self.unengaged_engaged_before_sends)
        if not all(1 <= sends <= MAX_COUNTED_SENDS for sends in thresholds):
            raise ValueError(
                f"the unengaged send thresholds must be 1..{MAX_COUNTED_SENDS} (the sends a "
                f"contact state counts), got {thresholds}"
            )


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
    require_aware(now, "now")
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
        require_aware(now, "now")
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
