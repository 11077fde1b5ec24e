"""Reading a Redis string as text, with redis-py errors translated (shared by the stores)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.adapters.redis_errors import translate_redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from processor.adapters.redis_errors import RedisCalls


async def get_text(
    client: Redis, key: str, doing: str, calls: RedisCalls | None = None
) -> str | None:
    """The string at `key` as text, None if absent; `doing` names the read (error, metrics)."""
    with translate_redis_errors(doing, calls):
        value = await client.get(key)
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
