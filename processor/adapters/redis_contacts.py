"""`ContactStore` on Redis: contact state, attempted sets, planned audiences, resume records.

The merge scripts that write contact state live in `redis_contact_writes`, the resume agent's
packed reads in `redis_contact_reads`. Redis errors become StoreUnavailableError (`redis_errors`).
"""

from __future__ import annotations

from functools import partial
from itertools import compress, count
from typing import TYPE_CHECKING

from processor.adapters.redis_contact_erasure import ContactErasure
from processor.adapters.redis_contact_reads import (
    CODE_FIRST,
    CODE_FIRST_ATTEMPTED,
    CODE_MET,
    ContactReads,
    Lookup,
    pack_audience,
    unpack_audience,
)
from processor.adapters.redis_contact_writes import ContactWrites
from processor.adapters.redis_errors import translate_redis_errors
from processor.adapters.redis_values import get_text
from processor.domain.contact_state import ContactState
from processor.ports.contact_store import (
    ATTEMPTED_EVENT_TYPES,
    Candidates,
    ContactOp,
    ContactWrite,
    contact_digest,
    delivery_op,
    update_ops,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis.asyncio import Redis

    from processor.adapters.keys import Keys
    from processor.adapters.redis_errors import RedisCalls
    from processor.ports.records import EventView
    from schemas.audience import AudienceChunk, ContactUpdate
    from schemas.events import Recipient

DEFAULT_CONTACT_SHARDS = 4096

_AUDIENCE_TOTAL = "total"
"""The audience hash's field holding the chunk count last stated (the others are indices)."""


class RedisContactStore:
    """`ContactStore` on Redis (standalone, or Cluster thanks to per-tenant hash tags)."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        *,
        campaign_ttl_ms: int,
        shards: int = DEFAULT_CONTACT_SHARDS,
        calls: RedisCalls | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self._client = client
        self._calls = calls
        self._keys = keys
        self._campaign_ttl_ms = campaign_ttl_ms
        self._shards = shards
        self._writes = ContactWrites(
            client, keys, shards=shards, campaign_ttl_ms=campaign_ttl_ms, calls=calls
        )
        self._reads = ContactReads(client, keys, shards)
        self._erasure = ContactErasure(client, keys, calls)

    def prepare_events(self, events: Sequence[EventView]) -> ContactWrite:
        """See `ContactStore.prepare_events`: one pipeline, one merge script per tenant."""
        ops: list[tuple[str, str, ContactOp]] = []
        attempted: dict[tuple[str, str], list[str]] = {}
        for event in events:
            contact_id = event.recipient.contact_id
            op = delivery_op(event)
            if op is not None:
                ops.append((event.tenant_id, contact_id, op))
            if event.type in ATTEMPTED_EVENT_TYPES:
                ref = (event.tenant_id, event.campaign_id)
                contact_ids = attempted.get(ref)
                if contact_ids is None:
                    attempted[ref] = [contact_id]
                else:
                    contact_ids.append(contact_id)
        writes = self._writes
        return partial(writes.send, writes.pipeline(ops, attempted), "merging delivery events")

    async def apply_events(self, events: Sequence[EventView]) -> None:
        """See `ContactStore.apply_events`."""
        await self.prepare_events(events)()

    async def apply_updates(self, updates: Sequence[ContactUpdate]) -> None:
        """See `ContactStore.apply_updates`."""
        ops = [(u.tenant_id, u.contact_id, op) for u in updates for op in update_ops(u)]
        writes = self._writes
        await writes.send(writes.pipeline(ops, {}), "merging contact updates")
        # After the merge erased their states: a crash in between leaves them erased (never
        # mailed), and the update, read again, erases the rest.
        deleted: dict[str, set[str]] = {}
        for update in updates:
            if update.deleted:
                deleted.setdefault(update.tenant_id, set()).add(update.contact_id)
        for tenant_id, contact_ids in deleted.items():
            await self._erasure.erase(tenant_id, contact_ids)

    async def states(self, tenant_id: str, contact_ids: Sequence[str]) -> list[ContactState]:
        """See `ContactStore.states`: packed HMGETs per shard, in one pipeline."""
        raw_ids = [contact_id.encode() for contact_id in contact_ids]
        with translate_redis_errors("reading contact states", self._calls):
            async with self._client.pipeline(transaction=False) as pipe:
                order = await self._reads.queue_states(pipe, tenant_id, raw_ids)
                replies = await pipe.execute()
        return self._reads.states(tenant_id, raw_ids, order, replies)

    async def mark_attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> None:
        """See `ContactStore.mark_attempted`."""
        writes = self._writes
        pipeline = writes.pipeline([], {(tenant_id, campaign_id): list(contact_ids)})
        await writes.send(pipeline, "marking attempted")

    async def attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """See `ContactStore.attempted`."""
        if not contact_ids:
            return []
        key = self._keys.campaign_attempted(tenant_id, campaign_id)
        digests = [contact_digest(contact_id) for contact_id in contact_ids]
        with translate_redis_errors("reading attempted contacts", self._calls):
            flags = await self._client.smismember(key, digests)
        return [bool(flag) for flag in flags]

    async def store_audience_chunk(self, chunk: AudienceChunk) -> None:
        """See `ContactStore.store_audience_chunk`."""
        audience_key = self._keys.campaign_audience(chunk.tenant_id, chunk.campaign_id)
        with translate_redis_errors("storing an audience chunk", self._calls):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(audience_key, str(chunk.chunk_index), pack_audience(chunk.recipients))
                if chunk.total_chunks is not None:
                    pipe.hset(audience_key, _AUDIENCE_TOTAL, chunk.total_chunks)
                pipe.pexpire(audience_key, self._campaign_ttl_ms)
                await pipe.execute()

    async def audience_chunks(
        self, tenant_id: str, campaign_id: str
    ) -> AsyncIterator[list[Recipient]]:
        """See `ContactStore.audience_chunks`: the indices first (small), then chunk by chunk."""
        key = self._keys.campaign_audience(tenant_id, campaign_id)
        with translate_redis_errors("listing audience chunks", self._calls):
            fields = await self._client.hkeys(key)
        for index in sorted(int(field) for field in fields if field.isdigit()):
            with translate_redis_errors("reading an audience chunk", self._calls):
                value = await self._client.hget(key, str(index))
            if isinstance(value, bytes):  # None if the chunk expired meanwhile
                yield unpack_audience(value)

    async def audience_progress(self, tenant_id: str, campaign_id: str) -> tuple[int, int | None]:
        """See `ContactStore.audience_progress`."""
        key = self._keys.campaign_audience(tenant_id, campaign_id)
        with translate_redis_errors("reading audience progress", self._calls):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hlen(key)
                pipe.hget(key, _AUDIENCE_TOTAL)
                fields, total = await pipe.execute()
        if total is None:
            return int(fields), None
        return int(fields) - 1, int(total)

    async def claim_first(
        self, tenant_id: str, campaign_id: str, run_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """See `ContactStore.claim_first`: duplicates within the list are settled here."""
        if not contact_ids:
            return []
        lookup = Lookup.of(contact_ids)
        with translate_redis_errors("claiming resume contacts", self._calls):
            async with self._client.pipeline(transaction=False) as pipe:
                await self._reads.queue_claim(pipe, tenant_id, campaign_id, run_id, lookup)
                codes = self._reads.claim_codes(await pipe.execute())
        if lookup.positions is None:
            return [code != CODE_MET for code in codes]
        first = [False] * len(contact_ids)
        for position, code in zip(lookup.positions, codes, strict=True):
            first[position] = code != CODE_MET
        return first

    async def candidates(
        self, tenant_id: str, campaign_id: str, run_id: str, recipients: Sequence[Recipient]
    ) -> Candidates:
        """See `ContactStore.candidates`: a round trip for the claim, one for the states.

        The states wait for the claim so that only those of the contacts to judge are read: a
        campaign paused late has attempted most of its audience.
        """
        if not recipients:
            return Candidates([], [], [])
        lookup = Lookup.of([r.contact_id for r in recipients])
        reads = self._reads
        with translate_redis_errors("reading resume candidates", self._calls):
            async with self._client.pipeline(transaction=False) as pipe:
                await reads.queue_claim(pipe, tenant_id, campaign_id, run_id, lookup)
                codes = reads.claim_codes(await pipe.execute())
            judged = list(compress(count(), map(CODE_FIRST.__eq__, codes)))
            raw_ids = list(map(lookup.raw_ids.__getitem__, judged))
            async with self._client.pipeline(transaction=False) as pipe:
                order = await reads.queue_states(pipe, tenant_id, raw_ids)
                replies = await pipe.execute()
        states = [ContactState.empty()] * len(codes)
        reads.states(tenant_id, raw_ids, order, replies, into=states, at=judged)
        kept = list(recipients)
        if lookup.positions is not None:
            kept = list(map(kept.__getitem__, lookup.positions))
        if CODE_MET in codes:  # some were met in an earlier chunk of the run
            first = list(compress(count(), map(CODE_MET.__ne__, codes)))
            kept, states = list(map(kept.__getitem__, first)), list(map(states.__getitem__, first))
            codes = bytes(map(codes.__getitem__, first))
        attempted = list(map(CODE_FIRST_ATTEMPTED.__eq__, codes))
        return Candidates(kept, states, attempted)

    async def end_run(self, tenant_id: str, campaign_id: str, run_id: str) -> None:
        """See `ContactStore.end_run`."""
        with translate_redis_errors("ending a resume run", self._calls):
            # UNLINK: freeing a million-member set must not hold Redis up.
            await self._client.unlink(self._keys.resume_run(tenant_id, campaign_id, run_id))

    async def resume_record(self, tenant_id: str, campaign_id: str, request_id: str) -> str | None:
        """See `ContactStore.resume_record`."""
        key = self._keys.resume_outcome(tenant_id, campaign_id, request_id)
        return await get_text(self._client, key, "reading a resume record", self._calls)

    async def save_resume_record(
        self, tenant_id: str, campaign_id: str, request_id: str, record: str
    ) -> str:
        """See `ContactStore.save_resume_record`."""
        key = self._keys.resume_outcome(tenant_id, campaign_id, request_id)
        with translate_redis_errors("saving a resume record", self._calls):
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(key, record, nx=True, px=self._campaign_ttl_ms)
                pipe.get(key)
                _, value = await pipe.execute()
        return value.decode() if isinstance(value, bytes) else str(value)
