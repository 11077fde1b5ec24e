"""The contact store seam: what the resume agent keeps about contacts, audiences and requests.

`RedisContactStore` (adapters/redis_contacts.py) and `InMemoryContactStore` implement the same
protocol and pass the same contract tests; the in-memory one applies contact_state.py directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, NamedTuple, Protocol

from processor.domain.contact_state import (
    MAX_STORED_SECONDS,
    ContactState,
    apply_contact_update,
    apply_delivery_event,
    stored_seconds,
)
from schemas.audience import ConsentState
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

    from processor.ports.records import EventView
    from schemas.audience import AudienceChunk, ContactUpdate
    from schemas.events import Recipient

ATTEMPTED_EVENT_TYPES = frozenset(EventType)
"""Event types that show a campaign already attempted a contact: every type. Besides sent,
delivered, deferred, bounce and dropped-suppressed, a complaint, unsubscribe, open or click of
the campaign proves it reached the contact even when its send event was lost."""

UNREADABLE_STATE = ContactState(consent=ConsentState.REVOKED)
"""How a stored state this version cannot read (e.g. a newer codec's) is reported: as revoked
consent, so the resume filter never mails a contact it cannot judge."""


def contact_digest(contact_id: str) -> bytes:
    """8-byte digest of a contact id: what the attempted and per-run sets hold."""
    return hashlib.blake2b(contact_id.encode(), digest_size=8).digest()


def contact_digests(raw_contact_ids: Iterable[bytes]) -> list[bytes]:
    """`contact_digest` of each contact id, given as UTF-8."""
    blake2b = hashlib.blake2b
    return [blake2b(raw, digest_size=8).digest() for raw in raw_contact_ids]


@dataclass(frozen=True, slots=True)
class Candidates:
    """The recipients of an audience chunk a resume run met first, with what the filter reads.

    Iterates as (recipient, state, attempted) in audience order, like `Candidate`s.
    """

    recipients: list[Recipient]
    states: list[ContactState]
    """The state of each one not yet attempted. For one already attempted it is not read (the
    filter counts it without judging it): `ContactState.empty()` stands in."""
    attempted: list[bool]
    """Whether the paused campaign already attempted each."""

    def __iter__(self) -> Iterator[tuple[Recipient, ContactState, bool]]:
        return zip(self.recipients, self.states, self.attempted, strict=True)

    def __len__(self) -> int:
        return len(self.recipients)

    def slices(self, size: int) -> Iterator[Iterator[tuple[Recipient, ContactState, bool]]]:
        """The candidates in consecutive runs of at most `size`, each iterating as the whole."""
        recipients, states, attempted = self.recipients, self.states, self.attempted
        for start in range(0, len(recipients), size):
            end = start + size
            yield zip(recipients[start:end], states[start:end], attempted[start:end], strict=True)


class ContactOp(NamedTuple):
    """One merge step of a contact's state, as the Redis Lua script applies it.

    A NamedTuple: delivery events make one each on the hot path.

    `code`: h hard bounce, c complaint, u unsubscribed at `at`, U re-subscribed at `at`,
    d deleted, g consent granted, r consent revoked, s sent at `at`, e engaged (open or click)
    at `at`.
    `at` is epoch seconds as `stored_instant` keeps them (0 when unused).
    """

    code: str
    at: int = 0


def _seconds(event: EventView) -> int:
    # Floored epoch seconds, as `stored_seconds(event.occurred_at)` gives them.
    return min(max(event.at_ms // 1000, 1), MAX_STORED_SECONDS)


_TIMED_OPS: dict[EventType, str] = {
    EventType.UNSUBSCRIBE: "u",
    EventType.SENT: "s",
    EventType.OPEN: "e",
    EventType.CLICK: "e",
}
_COMPLAINED = ContactOp("c")
_HARD_BOUNCED = ContactOp("h")


def delivery_op(event: EventView) -> ContactOp | None:
    """The merge step of a delivery event (mirrors `apply_delivery_event`), or None."""
    # A table rather than `match`: one per delivery event, and the match's chain of enum
    # comparisons showed in profiles of the worker.
    kind = event.type
    code = _TIMED_OPS.get(kind)
    if code is not None:
        return ContactOp(code, _seconds(event))
    if kind is EventType.COMPLAINT:
        return _COMPLAINED
    if kind is EventType.BOUNCE and event.bounce_class is BounceClass.HARD:
        return _HARD_BOUNCED
    return None


def update_ops(update: ContactUpdate) -> list[ContactOp]:
    """The merge steps of a contact update (mirrors `apply_contact_update`)."""
    ops = []
    if update.consent is not None:
        ops.append(ContactOp("g" if update.consent is ConsentState.GRANTED else "r"))
    if update.unsubscribed is not None:
        at = stored_seconds(update.occurred_at)
        ops.append(ContactOp("u" if update.unsubscribed else "U", at))
    if update.deleted:
        ops.append(ContactOp("d"))
    return ops


ContactWrite = Callable[[], Awaitable[None]]
"""A write prepared in full (its CPU spent); awaiting a call of it sends it."""


class ContactStore(Protocol):
    """Durable contact state, attempted sets, planned audiences and resume outcomes.

    Every write is an idempotent merge, so replayed input changes nothing. It satisfies
    detection's `ContactSink` (`prepare_events`).
    """

    def prepare_events(self, events: Sequence[EventView]) -> ContactWrite:
        """`apply_events` prepared now and written when the returned call is awaited."""
        ...

    async def apply_events(self, events: Sequence[EventView]) -> None:
        """Merge delivery events into contact state and mark their campaigns' attempted sets."""
        ...

    async def apply_updates(self, updates: Sequence[ContactUpdate]) -> None:
        """Merge contact updates from other systems into contact state, in order.

        A `deleted` contact is erased (the right to erasure): only the deleted mark is left of
        its state, and it leaves every attempted set and planned audience of its tenant.
        """
        ...

    async def states(self, tenant_id: str, contact_ids: Sequence[str]) -> list[ContactState]:
        """The state of each contact, in order (the empty state for an unknown contact)."""
        ...

    async def mark_attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> None:
        """Record that the campaign attempted these contacts."""
        ...

    async def attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """For each contact, in order: did the campaign already attempt it?"""
        ...

    async def store_audience_chunk(self, chunk: AudienceChunk) -> None:
        """Keep a chunk of a planned audience (a redelivered index replaces itself).

        Campaign ids are the tenant's own: another tenant's campaign of the same id is another
        campaign.
        """
        ...

    def audience_chunks(self, tenant_id: str, campaign_id: str) -> AsyncIterator[list[Recipient]]:
        """The stored chunks of a planned audience, one at a time, by ascending chunk index."""
        ...

    async def audience_progress(self, tenant_id: str, campaign_id: str) -> tuple[int, int | None]:
        """Chunks of a planned audience stored, and the chunk count its producer last stated."""
        ...

    async def claim_first(
        self, tenant_id: str, campaign_id: str, run_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """For each contact, in order: is this its first occurrence in the resume run?"""
        ...

    async def candidates(
        self, tenant_id: str, campaign_id: str, run_id: str, recipients: Sequence[Recipient]
    ) -> Candidates:
        """Claim the recipients for the run; those met first, in order, with what the filter reads.

        The same as `claim_first` of their contact ids, then `attempted` of those met first and
        `states` of those of them not attempted, in one go: the resume agent's read of each
        audience chunk.
        """
        ...

    async def end_run(self, tenant_id: str, campaign_id: str, run_id: str) -> None:
        """Forget what a resume run claimed."""
        ...

    async def resume_record(self, tenant_id: str, campaign_id: str, request_id: str) -> str | None:
        """The record saved for a resume request, if any."""
        ...

    async def save_resume_record(
        self, tenant_id: str, campaign_id: str, request_id: str, record: str
    ) -> str:
        """Save a request's record unless one exists; returns the record in force."""
        ...


class InMemoryContactStore:
    """The embedded contact store for replay and tests: dictionaries, same semantics as Redis."""

    def __init__(self) -> None:
        self.contacts: dict[tuple[str, str], ContactState] = {}
        self.attempted_sets: dict[tuple[str, str], set[str]] = {}
        self.audiences: dict[tuple[str, str], dict[int, tuple[Recipient, ...]]] = {}
        self.audience_totals: dict[tuple[str, str], int] = {}
        self.runs: dict[tuple[str, str, str], set[str]] = {}
        self.records: dict[tuple[str, str, str], str] = {}

    def prepare_events(self, events: Sequence[EventView]) -> ContactWrite:
        """See `ContactStore.prepare_events` (here the write does the work)."""
        return partial(self.apply_events, list(events))

    async def apply_events(self, events: Sequence[EventView]) -> None:
        """See `ContactStore.apply_events`."""
        for event in events:
            key = (event.tenant_id, event.recipient.contact_id)
            state = self.contacts.get(key, ContactState.empty())
            new = apply_delivery_event(state, event.type, event.bounce_class, event.occurred_at)
            if new is not state:
                self.contacts[key] = new
            if event.type in ATTEMPTED_EVENT_TYPES:
                ref = (event.tenant_id, event.campaign_id)
                self.attempted_sets.setdefault(ref, set()).add(event.recipient.contact_id)

    async def apply_updates(self, updates: Sequence[ContactUpdate]) -> None:
        """See `ContactStore.apply_updates`."""
        for update in updates:
            key = (update.tenant_id, update.contact_id)
            new = apply_contact_update(self.contacts.get(key, ContactState.empty()), update)
            self.contacts[key] = new
            if update.deleted:
                self._erase(update.tenant_id, update.contact_id)

    def _erase(self, tenant_id: str, contact_id: str) -> None:
        for (tenant, _campaign), contact_ids in self.attempted_sets.items():
            if tenant == tenant_id:
                contact_ids.discard(contact_id)
        for (tenant, _campaign), chunks in self.audiences.items():
            if tenant == tenant_id:
                for index, planned in chunks.items():
                    chunks[index] = tuple(r for r in planned if r.contact_id != contact_id)

    async def states(self, tenant_id: str, contact_ids: Sequence[str]) -> list[ContactState]:
        """See `ContactStore.states`."""
        empty = ContactState.empty()
        return [self.contacts.get((tenant_id, contact_id), empty) for contact_id in contact_ids]

    async def mark_attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> None:
        """See `ContactStore.mark_attempted`."""
        self.attempted_sets.setdefault((tenant_id, campaign_id), set()).update(contact_ids)

    async def attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """See `ContactStore.attempted`."""
        done = self.attempted_sets.get((tenant_id, campaign_id), set())
        return [contact_id in done for contact_id in contact_ids]

    async def store_audience_chunk(self, chunk: AudienceChunk) -> None:
        """See `ContactStore.store_audience_chunk`."""
        audience = self.audiences.setdefault((chunk.tenant_id, chunk.campaign_id), {})
        audience[chunk.chunk_index] = tuple(chunk.recipients)
        if chunk.total_chunks is not None:
            self.audience_totals[chunk.tenant_id, chunk.campaign_id] = chunk.total_chunks

    async def audience_progress(self, tenant_id: str, campaign_id: str) -> tuple[int, int | None]:
        """See `ContactStore.audience_progress`."""
        key = (tenant_id, campaign_id)
        return len(self.audiences.get(key, {})), self.audience_totals.get(key)

    async def audience_chunks(
        self, tenant_id: str, campaign_id: str
    ) -> AsyncIterator[list[Recipient]]:
        """See `ContactStore.audience_chunks`."""
        audience = self.audiences.get((tenant_id, campaign_id), {})
        for index in sorted(audience):
            yield list(audience[index])

    async def claim_first(
        self, tenant_id: str, campaign_id: str, run_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """See `ContactStore.claim_first`."""
        met = self.runs.setdefault((tenant_id, campaign_id, run_id), set())
        first = []
        for contact_id in contact_ids:
            first.append(contact_id not in met)
            met.add(contact_id)
        return first

    async def candidates(
        self, tenant_id: str, campaign_id: str, run_id: str, recipients: Sequence[Recipient]
    ) -> Candidates:
        """See `ContactStore.candidates`."""
        ids = [r.contact_id for r in recipients]
        first = await self.claim_first(tenant_id, campaign_id, run_id, ids)
        kept = [r for r, is_first in zip(recipients, first, strict=True) if is_first]
        ids = [r.contact_id for r in kept]
        attempted = await self.attempted(tenant_id, campaign_id, ids)
        to_read = [c for c, done in zip(ids, attempted, strict=True) if not done]
        read = iter(await self.states(tenant_id, to_read))
        empty = ContactState.empty()
        states = [empty if done else next(read) for done in attempted]
        return Candidates(kept, states, attempted)

    async def end_run(self, tenant_id: str, campaign_id: str, run_id: str) -> None:
        """See `ContactStore.end_run`."""
        self.runs.pop((tenant_id, campaign_id, run_id), None)

    async def resume_record(self, tenant_id: str, campaign_id: str, request_id: str) -> str | None:
        """See `ContactStore.resume_record`."""
        return self.records.get((tenant_id, campaign_id, request_id))

    async def save_resume_record(
        self, tenant_id: str, campaign_id: str, request_id: str, record: str
    ) -> str:
        """See `ContactStore.save_resume_record`."""
        return self.records.setdefault((tenant_id, campaign_id, request_id), record)
