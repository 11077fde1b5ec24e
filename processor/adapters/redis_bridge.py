"""The bridges' ledger in Redis: outcomes by command id, suspension ids by pause scope.

A pause's suspension id and its outcome are written in one MULTI/EXEC (one hash tag per
bridge), so a restart knows both or neither. Redis errors become StoreUnavailableError at the
one seam, `redis_errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.adapters.redis_errors import translate_redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from processor.adapters.keys import Keys

OUTCOME_TTL_S = 90 * 86400
"""How long a completed command is remembered: far beyond any redelivery (a crash republishes
within seconds; the outbox sweep within a minute)."""


class RedisBridgeLedger:
    """`BridgeLedger` of one bridge (its name scopes the keys: kumomta, webhook-<name>)."""

    def __init__(self, client: Redis, keys: Keys, bridge: str, *, suspension_ttl_s: int) -> None:
        self._redis = client
        self._keys = keys
        self._bridge = bridge
        # A suspension map outlives the MTA's suspension, which expires by itself.
        self._suspension_ttl_s = suspension_ttl_s

    async def outcome(self, command_id: str) -> str | None:
        """See `BridgeLedger.outcome`."""
        with translate_redis_errors("reading bridge outcome"):
            value = await self._redis.get(self._keys.bridge_outcome(self._bridge, command_id))
        return value.decode() if isinstance(value, bytes) else value

    async def record_outcome(self, command_id: str, outcome: str) -> None:
        """See `BridgeLedger.record_outcome`."""
        key = self._keys.bridge_outcome(self._bridge, command_id)
        with translate_redis_errors("recording bridge outcome"):
            await self._redis.set(key, outcome, ex=OUTCOME_TTL_S)

    async def suspensions(self, tenant: str, campaign: str | None) -> dict[str, str]:
        """See `BridgeLedger.suspensions`."""
        key = self._keys.bridge_suspensions(self._bridge, tenant, campaign)
        with translate_redis_errors("reading bridge suspensions"):
            raw = await self._redis.hgetall(key)
        return {_text(k): _text(v) for k, v in raw.items()}

    async def record_suspension(
        self, command_id: str, tenant: str, campaign: str | None, suspension_id: str, outcome: str
    ) -> None:
        """See `BridgeLedger.record_suspension`."""
        held = self._keys.bridge_suspensions(self._bridge, tenant, campaign)
        with translate_redis_errors("recording a suspension"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(held, command_id, suspension_id)
                pipe.expire(held, self._suspension_ttl_s)
                pipe.set(
                    self._keys.bridge_outcome(self._bridge, command_id), outcome, ex=OUTCOME_TTL_S
                )
                await pipe.execute()

    async def record_lift(
        self,
        command_id: str,
        tenant: str,
        campaign: str | None,
        pause_ids: list[str],
        outcome: str,
    ) -> None:
        """See `BridgeLedger.record_lift`."""
        held = self._keys.bridge_suspensions(self._bridge, tenant, campaign)
        with translate_redis_errors("recording a lift"):
            async with self._redis.pipeline(transaction=True) as pipe:
                if pause_ids:
                    pipe.hdel(held, *pause_ids)
                pipe.set(
                    self._keys.bridge_outcome(self._bridge, command_id), outcome, ex=OUTCOME_TTL_S
                )
                await pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
