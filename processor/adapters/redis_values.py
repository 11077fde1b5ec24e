"""Reading a Redis string as text, with redis-py errors translated once (shared by the stores)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from processor.errors import StoreUnavailableError

if TYPE_CHECKING:
    from redis.asyncio import Redis


async def get_text(client: Redis, key: str, doing: str) -> str | None:
    """The string at `key` as text, None if absent; `doing` names the read in the error."""
    try:
        value = await client.get(key)
    except RedisError as exc:
        raise StoreUnavailableError(f"{doing} failed: {exc}") from exc
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
