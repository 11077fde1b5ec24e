"""Contact state, attempted sets, planned audiences and resume records in Redis.

Contact merges run as one Lua script per tenant per batch over the tenant's shards (one slot), so
concurrent workers never lose an update. Redis errors become StoreUnavailableError here.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from functools import partial
from itertools import compress, count
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from processor.adapters.redis_contact_merge import MERGE_CONTACTS, OP_HEAD
from processor.adapters.redis_contact_reads import (
    CODE_FIRST,
    CODE_FIRST_ATTEMPTED,
    CODE_MET,
    ContactReads,
    Lookup,
    pack_audience,
    unpack_audience,
)
from processor.adapters.redis_pipeline import ScriptPipeline
from processor.adapters.redis_values import get_text
from processor.domain.contact_state import ContactState
from processor.errors import StoreUnavailableError
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
    from processor.ports.records import EventView
    from schemas.audience import AudienceChunk, ContactUpdate
    from schemas.events import Recipient

log = logging.getLogger(__name__)

DEFAULT_CONTACT_SHARDS = 4096

# KEYS: a campaign's attempted set and its audience (one slot). ARGV: the 8-byte contact
# digests concatenated, the TTL. Lua's unpack() has a C-stack limit: SADD in slices.
_MARK_ATTEMPTED = """
local packed, members = ARGV[1], {}
for i = 1, #packed, 8 do
  members[#members + 1] = string.sub(packed, i, i + 7)
  if #members == 1000 or i + 8 > #packed then
    redis.call('SADD', KEYS[1], unpack(members))
    members = {}
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""


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
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be at least 1, got {shards}")
        self._client = client
        self._keys = keys
        self._campaign_ttl_ms = campaign_ttl_ms
        self._shards = shards
        self._merge = client.register_script(MERGE_CONTACTS)
        self._mark_attempted = client.register_script(_MARK_ATTEMPTED)
        self._reads = ContactReads(client, keys, shards)

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
        return partial(self._send, self._pipeline(ops, attempted), "merging delivery events")

    async def apply_events(self, events: Sequence[EventView]) -> None:
        """See `ContactStore.apply_events`."""
        await self.prepare_events(events)()

    async def apply_updates(self, updates: Sequence[ContactUpdate]) -> None:
        """See `ContactStore.apply_updates`."""
        ops = [(u.tenant_id, u.contact_id, op) for u in updates for op in update_ops(u)]
        await self._send(self._pipeline(ops, {}), "merging contact updates")

    async def states(self, tenant_id: str, contact_ids: Sequence[str]) -> list[ContactState]:
        """See `ContactStore.states`: packed HMGETs per shard, in one pipeline."""
        raw_ids = [contact_id.encode() for contact_id in contact_ids]
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                order = await self._reads.queue_states(pipe, tenant_id, raw_ids)
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"reading contact states failed: {exc}") from exc
        return self._reads.states(tenant_id, raw_ids, order, replies)

    async def mark_attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> None:
        """See `ContactStore.mark_attempted`."""
        pipeline = self._pipeline([], {(tenant_id, campaign_id): list(contact_ids)})
        await self._send(pipeline, "marking attempted")

    async def attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """See `ContactStore.attempted`."""
        if not contact_ids:
            return []
        key = self._keys.campaign_attempted(tenant_id, campaign_id)
        digests = [contact_digest(contact_id) for contact_id in contact_ids]
        try:
            flags = await self._client.smismember(key, digests)
        except RedisError as exc:
            raise StoreUnavailableError(f"reading attempted contacts failed: {exc}") from exc
        return [bool(flag) for flag in flags]

    async def store_audience_chunk(self, chunk: AudienceChunk) -> str:
        """See `ContactStore.store_audience_chunk`."""
        owner_key = self._keys.campaign_owner(chunk.campaign_id)
        audience_key = self._keys.campaign_audience(chunk.tenant_id, chunk.campaign_id)
        ttl = self._campaign_ttl_ms
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(owner_key, chunk.tenant_id, nx=True, px=ttl)
                pipe.get(owner_key)
                _, owner = await pipe.execute()
            owner_text = owner.decode() if isinstance(owner, bytes) else str(owner)
            if owner_text != chunk.tenant_id:
                return owner_text
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hset(audience_key, str(chunk.chunk_index), pack_audience(chunk.recipients))
                if chunk.total_chunks is not None:
                    pipe.hset(audience_key, _AUDIENCE_TOTAL, chunk.total_chunks)
                pipe.pexpire(audience_key, ttl)
                pipe.pexpire(owner_key, ttl)
                await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"storing an audience chunk failed: {exc}") from exc
        return owner_text

    async def audience_chunks(
        self, tenant_id: str, campaign_id: str
    ) -> AsyncIterator[list[Recipient]]:
        """See `ContactStore.audience_chunks`: the indices first (small), then chunk by chunk."""
        key = self._keys.campaign_audience(tenant_id, campaign_id)
        try:
            fields = await self._client.hkeys(key)
        except RedisError as exc:
            raise StoreUnavailableError(f"listing audience chunks failed: {exc}") from exc
        for index in sorted(int(field) for field in fields if field.isdigit()):
            try:
                value = await self._client.hget(key, str(index))
            except RedisError as exc:
                raise StoreUnavailableError(f"reading an audience chunk failed: {exc}") from exc
            if isinstance(value, bytes):  # None if the chunk expired meanwhile
                yield unpack_audience(value)

    async def audience_progress(self, tenant_id: str, campaign_id: str) -> tuple[int, int | None]:
        """See `ContactStore.audience_progress`."""
        key = self._keys.campaign_audience(tenant_id, campaign_id)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hlen(key)
                pipe.hget(key, _AUDIENCE_TOTAL)
                fields, total = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"reading audience progress failed: {exc}") from exc
        if total is None:
            return int(fields), None
        return int(fields) - 1, int(total)

    async def campaign_owner(self, campaign_id: str) -> str | None:
        """See `ContactStore.campaign_owner`."""
        key = self._keys.campaign_owner(campaign_id)
        return await get_text(self._client, key, "reading a campaign owner")

    async def claim_first(
        self, tenant_id: str, campaign_id: str, run_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """See `ContactStore.claim_first`: duplicates within the list are settled here."""
        if not contact_ids:
            return []
        lookup = Lookup.of(contact_ids)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                await self._reads.queue_claim(pipe, tenant_id, campaign_id, run_id, lookup)
                codes = self._reads.claim_codes(await pipe.execute())
        except RedisError as exc:
            raise StoreUnavailableError(f"claiming resume contacts failed: {exc}") from exc
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
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                await reads.queue_claim(pipe, tenant_id, campaign_id, run_id, lookup)
                codes = reads.claim_codes(await pipe.execute())
            judged = list(compress(count(), map(CODE_FIRST.__eq__, codes)))
            raw_ids = list(map(lookup.raw_ids.__getitem__, judged))
            async with self._client.pipeline(transaction=False) as pipe:
                order = await reads.queue_states(pipe, tenant_id, raw_ids)
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"reading resume candidates failed: {exc}") from exc
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
        try:
            # UNLINK: freeing a million-member set must not hold Redis up.
            await self._client.unlink(self._keys.resume_run(tenant_id, campaign_id, run_id))
        except RedisError as exc:
            raise StoreUnavailableError(f"ending a resume run failed: {exc}") from exc

    async def resume_record(self, tenant_id: str, campaign_id: str, request_id: str) -> str | None:
        """See `ContactStore.resume_record`."""
        key = self._keys.resume_outcome(tenant_id, campaign_id, request_id)
        return await get_text(self._client, key, "reading a resume record")

    async def save_resume_record(
        self, tenant_id: str, campaign_id: str, request_id: str, record: str
    ) -> str:
        """See `ContactStore.save_resume_record`."""
        key = self._keys.resume_outcome(tenant_id, campaign_id, request_id)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(key, record, nx=True, px=self._campaign_ttl_ms)
                pipe.get(key)
                _, value = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"saving a resume record failed: {exc}") from exc
        return value.decode() if isinstance(value, bytes) else str(value)

    def _pipeline(
        self, ops: list[tuple[str, str, ContactOp]], attempted: dict[tuple[str, str], list[str]]
    ) -> _MergePipeline | None:
        """One pipeline: a merge script per tenant, then each campaign's attempted set."""
        # Per tenant: its shard numbers in the order first met (an op names its shard by that
        # position among the script's KEYS) and the packed ops.
        by_tenant: dict[str, tuple[dict[int, int], list[bytes]]] = {}
        shards, head, crc32 = self._shards, OP_HEAD.pack, zlib.crc32
        for tenant_id, contact_id, op in ops:
            tenant = by_tenant.get(tenant_id)
            if tenant is None:
                tenant = by_tenant[tenant_id] = ({}, [])
            shard_index, packed = tenant
            raw_id = contact_id.encode()
            # The shard as `Keys.contacts` (and `contact_shards`) pick it.
            position = shard_index.setdefault(crc32(raw_id) % shards, len(shard_index) + 1)
            packed.append(head(position, op.code.encode(), op.at, len(raw_id)))
            packed.append(raw_id)
        if not by_tenant and not attempted:
            return None
        ttl = self._campaign_ttl_ms
        keys = self._keys
        pipe = ScriptPipeline()
        for tenant_id, (shard_index, packed) in by_tenant.items():
            prefix = keys.contact_shard_prefix(tenant_id)
            pipe.script(
                self._merge, [f"{prefix}{shard}" for shard in shard_index], [b"".join(packed)]
            )
        for (tenant_id, campaign_id), contact_ids in attempted.items():
            digests = b"".join({contact_digest(c) for c in contact_ids})
            # An active campaign keeps its audience and owner until it can be resumed.
            pipe.script(
                self._mark_attempted,
                [
                    keys.campaign_attempted(tenant_id, campaign_id),
                    keys.campaign_audience(tenant_id, campaign_id),
                ],
                [digests, ttl],
            )
            pipe.command("PEXPIRE", keys.campaign_owner(campaign_id), ttl)
        return _MergePipeline(pipe, len(by_tenant))

    async def _send(self, pipeline: _MergePipeline | None, doing: str) -> None:
        if pipeline is None:
            return
        try:
            replies = await pipeline.commands.execute(self._client)
        except RedisError as exc:
            raise StoreUnavailableError(f"{doing} failed: {exc}") from exc
        unread = sum(int(reply[1]) for reply in replies[: pipeline.merges])
        if unread:
            log.error("contact states of an unknown format left as they are", extra={"n": unread})


@dataclass(frozen=True, slots=True)
class _MergePipeline:
    commands: ScriptPipeline
    merges: int
    """How many of the commands, first, are merge scripts (their replies count unread states)."""
