"""Contact state, attempted sets, planned audiences and resume records in Redis.

Contact merges run as one Lua script per tenant per batch over the tenant's shards (one slot), so
concurrent workers never lose an update. Redis errors become StoreUnavailableError here.
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from processor.contacts import (
    ATTEMPTED_EVENT_TYPES,
    UNREADABLE_STATE,
    ContactOp,
    contact_digest,
    delivery_op,
    update_ops,
)
from processor.domain.recipients import ContactState, decode_contact
from processor.errors import StoreUnavailableError
from processor.logs import address_hash
from schemas.events import Recipient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis.asyncio import Redis

    from processor.adapters.keys import Keys
    from schemas.audience import AudienceChunk, ContactUpdate
    from schemas.events import DeliveryEvent

log = logging.getLogger(__name__)

DEFAULT_CONTACT_SHARDS = 4096
RUN_TTL_MS = 3_600_000
"""A resume run's scratch set outlives any run; a crashed run's set then expires."""
_AUDIENCE_FORMAT = b"\x01"
"""Audience chunk values: this byte, then zlib of JSON [[contact_id, address], ...]."""

# Mirrors apply_delivery_event / apply_contact_update on the 12-byte codec of recipients.py:
#   >BBI4I4H  version 1 | flags | last send (s, 0 = none) | last engaged (same) | sends since
#   flags: bits 0-1 consent (0 unknown, 1 granted, 2 revoked), 2 unsubscribed, 3 deleted,
#          4 hard bounced, 5 complained, 6 ever engaged, 7 reserved.
# KEYS: the tenant's contact shards. ARGV: (shard index into KEYS, contact id, op, at) per op.
# A value it cannot read is left as it is (a newer version may have written it).
# Returns {contacts changed, values left unread}.
_MERGE_CONTACTS = """
local band, bor, bnot = bit.band, bit.bor, bit.bnot
local cache, unread = {}, 0
for i = 1, #ARGV, 4 do
  local k, id, op = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  local shard = cache[k]
  if shard == nil then shard = {}; cache[k] = shard end
  local s = shard[id]
  if s == nil then
    local raw = redis.call('HGET', KEYS[k], id)
    if not raw then
      s = {f = 0, sent = 0, eng = 0, n = 0}
    elseif #raw ~= 12 then
      s = false
    else
      local v, f, sent, eng, n = struct.unpack('>BBI4I4H', raw)
      if v ~= 1 or band(f, 3) == 3 or band(f, 128) ~= 0 then s = false
      else s = {f = f, sent = sent, eng = eng, n = n, raw = raw} end
    end
    if not s then unread = unread + 1 end
    shard[id] = s
  end
  if s then
    if op == 'h' then s.f = bor(s.f, 16)
    elseif op == 'c' then s.f = bor(s.f, 32)
    elseif op == 'u' then s.f = bor(s.f, 4)
    elseif op == 'U' then s.f = band(s.f, bnot(4))
    elseif op == 'd' then s.f = bor(s.f, 8)
    elseif op == 'g' then s.f = bor(band(s.f, bnot(3)), 1)
    elseif op == 'r' then s.f = bor(band(s.f, bnot(3)), 2)
    elseif op == 's' then
      local at = tonumber(ARGV[i + 3])
      if s.sent == 0 or at > s.sent then s.sent = at; s.n = math.min(s.n + 1, 65535) end
    elseif op == 'e' then
      local at = tonumber(ARGV[i + 3])
      s.f = bor(s.f, 64)
      if s.eng == 0 or at > s.eng then s.eng = at; s.n = 0 end
    else
      return redis.error_reply('unknown contact op ' .. op)
    end
  end
end
local changed = 0
for k, shard in pairs(cache) do
  for id, s in pairs(shard) do
    if s then
      local packed = struct.pack('>BBI4I4H', 1, s.f, s.sent, s.eng, s.n)
      if packed ~= s.raw then
        redis.call('HSET', KEYS[k], id, packed)
        changed = changed + 1
      end
    end
  end
end
return {changed, unread}
"""


def pack_audience(recipients: Sequence[Recipient]) -> bytes:
    """A chunk of planned recipients as stored: compact and order-preserving."""
    pairs = [[r.contact_id, r.address] for r in recipients]
    return _AUDIENCE_FORMAT + zlib.compress(json.dumps(pairs, separators=(",", ":")).encode())


def unpack_audience(value: bytes) -> list[Recipient]:
    """The recipients `pack_audience` stored (validated when they came in, so not again)."""
    if value[:1] != _AUDIENCE_FORMAT:
        raise ValueError(f"unknown audience chunk format {value[:1]!r}")
    pairs = json.loads(zlib.decompress(value[1:]))
    return [Recipient.model_construct(contact_id=cid, address=address) for cid, address in pairs]


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
        self._merge = client.register_script(_MERGE_CONTACTS)

    async def apply_events(self, events: Sequence[DeliveryEvent]) -> None:
        """See `ContactStore.apply_events`: one pipeline, one merge script per tenant."""
        ops: list[tuple[str, str, ContactOp]] = []
        attempted: dict[tuple[str, str], list[str]] = {}
        for event in events:
            op = delivery_op(event)
            if op is not None:
                ops.append((event.tenant_id, event.recipient.contact_id, op))
            if event.type in ATTEMPTED_EVENT_TYPES:
                ref = (event.tenant_id, event.campaign_id)
                attempted.setdefault(ref, []).append(event.recipient.contact_id)
        await self._write(ops, attempted, "merging delivery events")

    async def apply_updates(self, updates: Sequence[ContactUpdate]) -> None:
        """See `ContactStore.apply_updates`."""
        ops = [(u.tenant_id, u.contact_id, op) for u in updates for op in update_ops(u)]
        await self._write(ops, {}, "merging contact updates")

    async def states(self, tenant_id: str, contact_ids: Sequence[str]) -> list[ContactState]:
        """See `ContactStore.states`: one HMGET per shard, in one pipeline."""
        by_shard: dict[str, list[int]] = {}
        for position, contact_id in enumerate(contact_ids):
            key = self._keys.contacts(tenant_id, contact_id, self._shards)
            by_shard.setdefault(key, []).append(position)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, positions in by_shard.items():
                    pipe.hmget(key, [contact_ids[p] for p in positions])
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"reading contact states failed: {exc}") from exc
        found: list[ContactState] = [ContactState.empty()] * len(contact_ids)
        for positions, values in zip(by_shard.values(), replies, strict=True):
            for position, value in zip(positions, values, strict=True):
                if value is not None:
                    found[position] = _decode(tenant_id, contact_ids[position], value)
        return found

    async def mark_attempted(
        self, tenant_id: str, campaign_id: str, contact_ids: Sequence[str]
    ) -> None:
        """See `ContactStore.mark_attempted`."""
        await self._write([], {(tenant_id, campaign_id): list(contact_ids)}, "marking attempted")

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
        for index in sorted(int(field) for field in fields):
            try:
                value = await self._client.hget(key, str(index))
            except RedisError as exc:
                raise StoreUnavailableError(f"reading an audience chunk failed: {exc}") from exc
            if isinstance(value, bytes):  # None if the chunk expired meanwhile
                yield unpack_audience(value)

    async def campaign_owner(self, campaign_id: str) -> str | None:
        """See `ContactStore.campaign_owner`."""
        try:
            owner = await self._client.get(self._keys.campaign_owner(campaign_id))
        except RedisError as exc:
            raise StoreUnavailableError(f"reading a campaign owner failed: {exc}") from exc
        if owner is None:
            return None
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    async def claim_first(
        self, tenant_id: str, campaign_id: str, run_id: str, contact_ids: Sequence[str]
    ) -> list[bool]:
        """See `ContactStore.claim_first`: duplicates within the list are settled here."""
        first_in_list: dict[bytes, int] = {}
        for position, contact_id in enumerate(contact_ids):
            first_in_list.setdefault(contact_digest(contact_id), position)
        if not first_in_list:
            return []
        digests = list(first_in_list)
        key = self._keys.resume_run(tenant_id, campaign_id, run_id)
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.smismember(key, digests)
                pipe.sadd(key, *digests)
                pipe.pexpire(key, RUN_TTL_MS)
                met, _, _ = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"claiming resume contacts failed: {exc}") from exc
        new = {first_in_list[d] for d, flag in zip(digests, met, strict=True) if not flag}
        return [position in new for position in range(len(contact_ids))]

    async def end_run(self, tenant_id: str, campaign_id: str, run_id: str) -> None:
        """See `ContactStore.end_run`."""
        try:
            await self._client.delete(self._keys.resume_run(tenant_id, campaign_id, run_id))
        except RedisError as exc:
            raise StoreUnavailableError(f"ending a resume run failed: {exc}") from exc

    async def resume_record(self, tenant_id: str, campaign_id: str, request_id: str) -> str | None:
        """See `ContactStore.resume_record`."""
        key = self._keys.resume_outcome(tenant_id, campaign_id, request_id)
        try:
            value = await self._client.get(key)
        except RedisError as exc:
            raise StoreUnavailableError(f"reading a resume record failed: {exc}") from exc
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

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

    async def _write(
        self,
        ops: list[tuple[str, str, ContactOp]],
        attempted: dict[tuple[str, str], list[str]],
        doing: str,
    ) -> None:
        """One pipeline: a merge script per tenant, then each campaign's attempted set."""
        by_tenant: dict[str, tuple[dict[str, int], list[Any]]] = {}
        for tenant_id, contact_id, op in ops:
            shard_index, args = by_tenant.setdefault(tenant_id, ({}, []))
            key = self._keys.contacts(tenant_id, contact_id, self._shards)
            position = shard_index.setdefault(key, len(shard_index) + 1)
            args.extend((position, contact_id, op.code, op.at))
        if not by_tenant and not attempted:
            return
        ttl = self._campaign_ttl_ms
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for shard_index, args in by_tenant.values():
                    await self._merge(keys=list(shard_index), args=args, client=pipe)
                for (tenant_id, campaign_id), contact_ids in attempted.items():
                    attempted_key = self._keys.campaign_attempted(tenant_id, campaign_id)
                    pipe.sadd(attempted_key, *{contact_digest(c) for c in contact_ids})
                    pipe.pexpire(attempted_key, ttl)
                    # An active campaign keeps its audience and owner until it can be resumed.
                    pipe.pexpire(self._keys.campaign_audience(tenant_id, campaign_id), ttl)
                    pipe.pexpire(self._keys.campaign_owner(campaign_id), ttl)
                replies = await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailableError(f"{doing} failed: {exc}") from exc
        unread = sum(int(reply[1]) for reply in replies[: len(by_tenant)])
        if unread:
            log.error("contact states of an unknown format left as they are", extra={"n": unread})


def _decode(tenant_id: str, contact_id: str, value: bytes) -> ContactState:
    try:
        return decode_contact(value)
    except ValueError:
        log.exception(
            "unreadable contact state, treated as revoked consent",
            extra={"tenant_id": tenant_id, "contact": address_hash(contact_id)},
        )
        return UNREADABLE_STATE
