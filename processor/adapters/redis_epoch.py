"""The state epoch marker in Redis (`Keys.state_epoch`): one hash without a TTL.

Redis errors become StoreUnavailableError here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processor.adapters.redis_errors import translate_redis_errors
from processor.errors import StoreUnavailableError
from processor.ports.state_epoch import StateEpoch

if TYPE_CHECKING:
    from collections.abc import Iterable

    from redis.asyncio import Redis

    from processor.adapters.keys import Keys
    from processor.adapters.redis_errors import RedisCalls

# KEYS: the marker. ARGV: field, value pairs. Writes them unless a marker exists; returns it.
_CREATE_EPOCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return redis.call('HGETALL', KEYS[1])
"""

# KEYS: the marker. ARGV: the epoch id, then fields to set to 1. Only in that epoch.
_MARK = """
if redis.call('HGET', KEYS[1], 'id') ~= ARGV[1] then return 0 end
for i = 2, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], 1) end
return 1
"""

_REBUILT_PREFIX = "rebuilt:"
_SCAN_BATCH = 1000
_LEGACY_SAMPLE = 100
"""Campaign states looked at for a stamp before deciding they predate epochs."""


class RedisEpochStore:
    """`EpochStore` on Redis."""

    def __init__(self, client: Redis, keys: Keys, calls: RedisCalls | None = None) -> None:
        self._client = client
        self._calls = calls
        self._keys = keys
        self._create = client.register_script(_CREATE_EPOCH)
        self._mark = client.register_script(_MARK)

    async def read_epoch(self) -> StateEpoch | None:
        """See `EpochStore.read_epoch`."""
        with translate_redis_errors("reading the state epoch", self._calls):
            fields = await self._client.hgetall(self._keys.state_epoch())
        return _decode(fields)

    async def create_epoch(self, epoch: StateEpoch) -> StateEpoch:
        """See `EpochStore.create_epoch`."""
        args: list[Any] = ["id", epoch.id, "created_at", epoch.created_ms]
        if epoch.rewind_to_ms is not None:
            args += ["rewind_to", epoch.rewind_to_ms]
        if epoch.reason is not None:
            args += ["reason", epoch.reason]
        if epoch.previous is not None:
            args += ["previous", epoch.previous]
        with translate_redis_errors("creating the state epoch", self._calls):
            reply = await self._create(keys=[self._keys.state_epoch()], args=args)
        stored = _decode(dict(zip(reply[::2], reply[1::2], strict=True)))
        if stored is None:  # pragma: no cover - the script always leaves one
            raise StoreUnavailableError("the state epoch vanished as it was written")
        return stored

    async def mark_rebuilt(self, epoch_id: str, partitions: Iterable[int]) -> None:
        """See `EpochStore.mark_rebuilt`."""
        await self._mark_fields(epoch_id, [f"{_REBUILT_PREFIX}{p}" for p in partitions])

    async def mark_announced(self, epoch_id: str) -> None:
        """See `EpochStore.mark_announced`."""
        await self._mark_fields(epoch_id, ["announced"])

    async def holds_state_without_epoch(self) -> bool:
        """See `EpochStore.holds_state_without_epoch` (scans for campaign states: at start only)."""
        pattern = self._keys.campaign_state("*", "*")
        looked = 0
        with translate_redis_errors("looking for campaign states", self._calls):
            async for key in self._client.scan_iter(match=pattern, count=_SCAN_BATCH):
                if not await self._client.hexists(key, "e"):
                    return True
                looked += 1
                if looked >= _LEGACY_SAMPLE:
                    return False
        return False

    async def _mark_fields(self, epoch_id: str, fields: list[str]) -> None:
        if not fields:
            return
        with translate_redis_errors("updating the state epoch", self._calls):
            await self._mark(keys=[self._keys.state_epoch()], args=[epoch_id, *fields])


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: dict[Any, Any]) -> StateEpoch | None:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if "id" not in fields:
        return None
    rewind_to = fields.get("rewind_to")
    return StateEpoch(
        id=fields["id"],
        created_ms=int(fields.get("created_at", "0")),
        rewind_to_ms=int(rewind_to) if rewind_to is not None else None,
        reason=fields.get("reason"),
        previous=fields.get("previous"),
        announced="announced" in fields,
        rebuilt=frozenset(
            int(name.removeprefix(_REBUILT_PREFIX))
            for name in fields
            if name.startswith(_REBUILT_PREFIX)
        ),
    )
