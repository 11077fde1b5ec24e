"""Detection state in Redis: compare-and-set campaign writes, dedup sets, tenant escalation.

Each campaign write is one Lua script over the campaign's own slot (state hash and its seen
sets), sent for the whole batch in one pipeline. Redis errors become StoreUnavailableError
(`redis_errors`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processor.adapters.redis_errors import translate_redis_errors
from processor.adapters.redis_pipeline import ScriptPipeline
from processor.adapters.redis_values import get_text
from processor.errors import StateLostError
from processor.ports.detection_store import (
    CampaignAsk,
    CampaignRef,
    CampaignWrite,
    StoredCampaign,
    TenantEscalation,
    decode_outbox,
    encode_outbox,
)
from schemas.base import campaign_key

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from processor.adapters.keys import Keys
    from processor.adapters.redis_errors import RedisCalls

# Digests travel as one packed argument per day (8 bytes each, concatenated), not one argument
# each: building thousands of arguments per campaign cost the worker more CPU than the scripts.
# Lua's unpack() has a C-stack limit of a few thousand values, so sets are queried and added to
# in slices of _SLICE.
_SLICE = 1000
_DIGEST_SIZE = 8

# Lua: the packed digests of `packed` as a list of slices of at most SLICE members.
_SLICES = """
local function slices(packed)
  local out, members = {}, {}
  for i = 1, #packed, DIGEST_SIZE do
    members[#members + 1] = string.sub(packed, i, i + DIGEST_SIZE - 1)
    if #members == SLICE then out[#out + 1] = members; members = {} end
  end
  if #members > 0 then out[#out + 1] = members end
  return out
end
"""

# KEYS: the campaign's state hash, then one seen set per asked day. ARGV: each day's digests.
# Returns {v, s, o, ov, e, flags per day}: a day's flags hold one byte per digest, 1 if applied.
_LOAD_CAMPAIGN = """
local reply = redis.call('HMGET', KEYS[1], 'v', 's', 'o', 'ov', 'e')
for d = 1, #ARGV do
  local flags = {}
  for _, members in ipairs(slices(ARGV[d])) do
    for _, member in ipairs(redis.call('SMISMEMBER', KEYS[1 + d], unpack(members))) do
      flags[#flags + 1] = member == 1 and '\\1' or '\\0'
    end
  end
  reply[5 + d] = table.concat(flags)
end
return reply
"""

# KEYS: the state hash, then one seen set per day. ARGV: expected version, state blob, state
# TTL, seen TTL, outbox ('' for none), number of days, each day's packed new digests, then the
# writer's state epoch. Returns the new version, 0 if refused, -1 if the hash belongs to a
# newer epoch (the writer's state was lost: services/state_guard.py). A hash of an older
# epoch was written into a Redis that had lost its state: it is taken as absent, overwritten.
_CHECK_VERSION = """
local epoch = ARGV[#ARGV]
local e = redis.call('HGET', KEYS[1], 'e') or ''
if e > epoch then return -1 end
local v = 0
if e == epoch then v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0') end
if v ~= tonumber(ARGV[1]) then return 0 end
"""

# A speculative write (folded from the worker's cached state, see CampaignWrite) is refused if
# the fold could have been wrong: an outbox to deliver first, or a digest already applied.
_CHECK_UNSEEN = """
if redis.call('HEXISTS', KEYS[1], 'o') == 1 then return 0 end
for d = 1, tonumber(ARGV[6]) do
  for _, members in ipairs(slices(ARGV[6 + d])) do
    for _, member in ipairs(redis.call('SMISMEMBER', KEYS[1 + d], unpack(members))) do
      if member == 1 then return 0 end
    end
  end
end
"""

_WRITE_CAMPAIGN = """
local nv = v + 1
if e ~= epoch then redis.call('HDEL', KEYS[1], 'o', 'ov') end
redis.call('HSET', KEYS[1], 'v', nv, 's', ARGV[2], 'e', epoch)
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'o', ARGV[5], 'ov', nv) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
for d = 1, tonumber(ARGV[6]) do
  local packed = ARGV[6 + d]
  for _, members in ipairs(slices(packed)) do
    redis.call('SADD', KEYS[1 + d], unpack(members))
  end
  if #packed > 0 then redis.call('PEXPIRE', KEYS[1 + d], ARGV[4]) end
end
return nv
"""


def _with_slices(script: str) -> str:
    """`script` preceded by the `slices` helper, with its constants filled in."""
    helper = _SLICES.replace("DIGEST_SIZE", str(_DIGEST_SIZE)).replace("SLICE", str(_SLICE))
    return helper + script


_LOAD_CAMPAIGN = _with_slices(_LOAD_CAMPAIGN)
_COMMIT_CAMPAIGN = _with_slices(_CHECK_VERSION + _WRITE_CAMPAIGN)
_COMMIT_SPECULATIVE = _with_slices(_CHECK_VERSION + _CHECK_UNSEEN + _WRITE_CAMPAIGN)

_CLEAR_OUTBOX = """
if redis.call('HGET', KEYS[1], 'ov') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'o', 'ov')
  return 1
end
if redis.call('HEXISTS', KEYS[1], 'o') == 0 then return 1 end
return 0
"""

# KEYS: the outbox index. ARGV: the campaigns whose outbox is being written.
_INDEX_OUTBOXES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
return #ARGV
"""

# KEYS: the outbox index. ARGV: minimum age in ms. One key, so it runs on Redis Cluster too.
_AGED_OUTBOXES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
"""

_SAVE_RESUME = """
if (redis.call('HGET', KEYS[1], 'e') or '') ~= ARGV[4] then return 0 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_RECORD_PAUSE = """
local at = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], at, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (at - tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if redis.call('HGET', KEYS[1], 'st') == 'paused' then
  local pending = redis.call('HGET', KEYS[1], 'pending')
  if not pending then return false end
  return {tonumber(pending), redis.call('HGET', KEYS[1], 'members')}
end
local members = redis.call('ZRANGE', KEYS[2], 0, -1)
if #members < tonumber(ARGV[3]) then return false end
local episode = redis.call('HINCRBY', KEYS[1], 'ep', 1)
local joined = table.concat(members, '\\n')
redis.call('HSET', KEYS[1], 'st', 'paused', 'pending', episode, 'members', joined)
-- The PEXPIRE above found no key on a tenant's first escalation: the hash exists only now.
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {episode, joined}
"""

_CONFIRM_TENANT = """
if redis.call('HGET', KEYS[1], 'pending') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'pending')
end
return 1
"""


class RedisStore:
    """`DetectionStore` on Redis (standalone, or Cluster thanks to per-campaign hash tags)."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        *,
        state_ttl_ms: int,
        paused_state_ttl_ms: int,
        seen_ttl_ms: int,
        calls: RedisCalls | None = None,
    ) -> None:
        self._client = client
        self._calls = calls
        self._keys = keys
        self._state_ttl_ms = state_ttl_ms
        self._paused_state_ttl_ms = paused_state_ttl_ms
        self._seen_ttl_ms = seen_ttl_ms
        self._load = client.register_script(_LOAD_CAMPAIGN)
        self._commit = client.register_script(_COMMIT_CAMPAIGN)
        self._commit_speculative = client.register_script(_COMMIT_SPECULATIVE)
        self._clear = client.register_script(_CLEAR_OUTBOX)
        self._index_outboxes = client.register_script(_INDEX_OUTBOXES)
        self._aged_outboxes = client.register_script(_AGED_OUTBOXES)
        self._save_resume = client.register_script(_SAVE_RESUME)
        self._record_pause = client.register_script(_RECORD_PAUSE)
        self._confirm_tenant = client.register_script(_CONFIRM_TENANT)
        self._epoch: str | None = None

    def use_epoch(self, epoch: str) -> None:
        """Stamp states with `epoch` and check the marker with every write (StateGuard calls it).

        Until then states are stamped with the legacy epoch "" and the marker is not read.
        """
        self._epoch = epoch

    @property
    def _stamp(self) -> str:
        return self._epoch or ""

    async def load_campaigns(self, asks: list[CampaignAsk]) -> list[StoredCampaign]:
        """See `DetectionStore.load_campaigns`: one pipeline for the whole batch."""
        keys = self._keys
        pipe = ScriptPipeline()
        for ask in asks:
            ref = ask.ref
            script_keys = [keys.campaign_state(ref.tenant_id, ref.campaign_id)]
            script_keys.extend(
                keys.campaign_seen(ref.tenant_id, ref.campaign_id, day, self._stamp)
                for day in ask.digests_by_day
            )
            args = [b"".join(digests) for digests in ask.digests_by_day.values()]
            pipe.script(self._load, script_keys, args)
        with translate_redis_errors("loading campaign state", self._calls):
            replies = await pipe.execute(self._client)
        loaded = []
        for ask, reply in zip(asks, replies, strict=True):
            version, blob, outbox, outbox_version, epoch = reply[:5]
            if not self._stamped_now(epoch, ask.ref):
                # Written into a Redis that had lost its state, before that was noticed.
                loaded.append(StoredCampaign(None, 0, [], 0, set()))
                continue
            seen: set[bytes] = set()
            for digests, flags in zip(ask.digests_by_day.values(), reply[5:], strict=True):
                if b"\x01" in flags:
                    seen.update(d for d, flag in zip(digests, flags, strict=True) if flag)
            loaded.append(
                StoredCampaign(
                    blob=blob,
                    version=int(version or 0),
                    outbox=decode_outbox(outbox),
                    outbox_version=int(outbox_version or 0),
                    seen=seen,
                )
            )
        return loaded

    async def commit_campaigns(self, writes: list[CampaignWrite]) -> list[bool]:
        """See `DetectionStore.commit_campaigns`: one compare-and-set script per campaign."""
        keys = self._keys
        pipe = ScriptPipeline()
        stamp = self._stamp
        if self._epoch is not None:
            # Read with the writes: a marker gone or replaced means Redis lost the state.
            pipe.command("HGET", keys.state_epoch(), "id")
        if any(w.outbox for w in writes):
            # Indexed before the write, so a crash right after it cannot hide the outbox.
            members = sorted({_ref_member(w.ref) for w in writes if w.outbox})
            pipe.script(self._index_outboxes, [keys.outbox_index()], members)
        for write in writes:
            ref = write.ref
            script_keys = [keys.campaign_state(ref.tenant_id, ref.campaign_id)]
            args: list[Any] = [
                write.expected_version,
                write.blob,
                self._paused_state_ttl_ms if write.paused else self._state_ttl_ms,
                self._seen_ttl_ms,
                encode_outbox(write.outbox) if write.outbox else "",
                len(write.new_digests_by_day),
            ]
            for day, digests in write.new_digests_by_day.items():
                script_keys.append(keys.campaign_seen(ref.tenant_id, ref.campaign_id, day, stamp))
                args.append(b"".join(digests))
            args.append(stamp)
            script = self._commit_speculative if write.speculative else self._commit
            pipe.script(script, script_keys, args)
        with translate_redis_errors("writing campaign state", self._calls):
            replies = await pipe.execute(self._client)
        if self._epoch is not None:
            self._check_marker(replies[0])
            replies = replies[1:]
        results = replies[1:] if any(w.outbox for w in writes) else replies
        if any(r == -1 for r in results):
            raise StateLostError(f"a newer state epoch than {stamp!r} is in Redis")
        return [bool(r) for r in results]

    def _check_marker(self, stored: bytes | None) -> None:
        marker = stored.decode() if stored is not None else None
        if marker != self._epoch:
            raise StateLostError(
                f"state epoch marker is {marker!r}, this worker writes in {self._epoch!r}"
            )

    def _stamped_now(self, epoch: bytes | None, ref: CampaignRef) -> bool:
        """Whether a loaded state is of this epoch (older: taken as absent; newer: raises)."""
        stamp = epoch.decode() if epoch is not None else ""
        if stamp > self._stamp:
            raise StateLostError(
                f"{ref.tenant_id}:{ref.campaign_id} is of state epoch {stamp!r},"
                f" newer than {self._stamp!r}"
            )
        return stamp == self._stamp

    async def clear_outbox(self, ref: CampaignRef, version: int) -> None:
        """See `DetectionStore.clear_outbox`."""
        state_key = self._keys.campaign_state(ref.tenant_id, ref.campaign_id)
        with translate_redis_errors("clearing an outbox", self._calls):
            # A newer outbox than the one cleared keeps the campaign in the recovery index.
            if await self._clear(keys=[state_key], args=[version]):
                member = _ref_member(ref)
                async with self._client.pipeline(transaction=False) as pipe:
                    pipe.zrem(self._keys.outbox_index(), member)
                    pipe.srem(self._keys.legacy_outbox_index(), member)
                    await pipe.execute()

    async def campaigns_with_outbox(self, unpublished_for_ms: int = 0) -> list[CampaignRef]:
        """See `DetectionStore.campaigns_with_outbox` (ages by Redis's clock: no skew)."""
        pipe = ScriptPipeline()
        pipe.script(self._aged_outboxes, [self._keys.outbox_index()], [unpublished_for_ms])
        pipe.command("SMEMBERS", self._keys.legacy_outbox_index())  # no times: all old enough
        with translate_redis_errors("reading the outbox index", self._calls):
            aged, legacy = await pipe.execute(self._client)
        refs = []
        for member in sorted({*aged, *legacy}):
            text = member.decode() if isinstance(member, bytes) else str(member)
            tenant_id, _, campaign_id = text.partition(":")
            refs.append(CampaignRef(tenant_id, campaign_id))
        return refs

    async def record_campaign_pause(
        self, tenant_id: str, member: str, at_ms: int, limit: int, within_ms: int
    ) -> TenantEscalation | None:
        """See `DetectionStore.record_campaign_pause`."""
        keys = [self._keys.tenant_state(tenant_id), self._keys.tenant_pauses(tenant_id)]
        with translate_redis_errors("recording a campaign pause", self._calls):
            reply = await self._record_pause(
                keys=keys, args=[member, at_ms, limit, within_ms, self._paused_state_ttl_ms]
            )
        if not reply:
            return None
        episode, joined = reply
        text = joined.decode() if isinstance(joined, bytes) else str(joined)
        return TenantEscalation(int(episode), tuple(text.split("\n")))

    async def confirm_tenant_pause(self, tenant_id: str, episode: int) -> None:
        """See `DetectionStore.confirm_tenant_pause`."""
        with translate_redis_errors("confirming a tenant pause", self._calls):
            await self._confirm_tenant(keys=[self._keys.tenant_state(tenant_id)], args=[episode])

    async def tenant_paused(self, tenant_id: str) -> bool:
        """See `DetectionStore.tenant_paused`."""
        with translate_redis_errors("reading tenant state", self._calls):
            status = await self._client.hget(self._keys.tenant_state(tenant_id), "st")
        return status in {b"paused", "paused"}

    async def save_resume(self, ref: CampaignRef, blob: bytes, expected_version: int) -> bool:
        """See `DetectionStore.save_resume`."""
        state_key = self._keys.campaign_state(ref.tenant_id, ref.campaign_id)
        with translate_redis_errors("saving a resumed campaign", self._calls):
            reply = await self._save_resume(
                keys=[state_key], args=[expected_version, blob, self._state_ttl_ms, self._stamp]
            )
        return bool(reply)

    async def campaign_lock(self, ref: CampaignRef) -> str | None:
        """See `DetectionStore.campaign_lock`."""
        key = self._keys.campaign_lock(ref.tenant_id, ref.campaign_id)
        return await get_text(self._client, key, "reading a campaign lock", self._calls)

    async def set_campaign_lock(self, ref: CampaignRef, lock: str | None) -> None:
        """See `DetectionStore.set_campaign_lock` (kept as long as a paused state)."""
        key = self._keys.campaign_lock(ref.tenant_id, ref.campaign_id)
        with translate_redis_errors("writing a campaign lock", self._calls):
            if lock is None:
                await self._client.delete(key)
            else:
                await self._client.set(key, lock, px=self._paused_state_ttl_ms)


def _ref_member(ref: CampaignRef) -> str:
    return campaign_key(ref.tenant_id, ref.campaign_id)
