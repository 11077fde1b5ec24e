"""Deleting every key under one prefix: a `replay --redis` run's scratch namespace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.adapters.redis_errors import translate_redis_errors

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from processor.adapters.keys import Keys

_SLICE = 1000
"""Keys per SCAN page and per UNLINK."""


async def delete_namespace(client: Redis, keys: Keys) -> int:
    """Delete every key under `keys.prefix`; how many there were.

    UNLINK frees the values in the background, so a large namespace does not hold Redis up.
    """
    deleted = 0
    with translate_redis_errors(f"deleting the keys under prefix {keys.prefix!r}"):
        batch: list[bytes] = []
        async for key in client.scan_iter(match=keys.every_key(), count=_SLICE):
            batch.append(key)
            if len(batch) == _SLICE:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    return deleted
