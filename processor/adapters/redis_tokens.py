"""Webhook signing tokens already accepted, in Redis: a second use of one is a replay.

Redis errors become StoreUnavailableError (`redis_errors`); the receiver answers 503 for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.adapters.redis_errors import translate_redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from processor.adapters.keys import Keys
    from processor.adapters.redis_errors import RedisCalls


class WebhookTokens:
    """Claims of (provider, token) pairs, each remembered for `ttl_s` seconds."""

    def __init__(
        self, client: Redis, keys: Keys, *, ttl_s: int, calls: RedisCalls | None = None
    ) -> None:
        self._client = client
        self._calls = calls
        self._keys = keys
        self._ttl_s = ttl_s

    async def claim(self, provider: str, token: str) -> bool:
        """Remember the token; False if it was already there (a replay)."""
        key = self._keys.webhook_token(provider, token)
        with translate_redis_errors("claiming a webhook token", self._calls):
            return bool(await self._client.set(key, b"1", nx=True, ex=self._ttl_s))

    async def release(self, provider: str, token: str) -> None:
        """Forget a claimed token, so that the provider's retry of a refused post gets through."""
        with translate_redis_errors("releasing a webhook token", self._calls):
            await self._client.delete(self._keys.webhook_token(provider, token))
