"""The right to erasure in Redis: a deleted contact leaves the tenant's campaigns' sets.

The contact's own state is erased by the merge script (only the deleted mark stays, so it is
never mailed again); this removes it from every attempted set and planned audience of its
tenant. Redis errors become StoreUnavailableError (`redis_errors`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from processor.adapters.redis_contact_reads import pack_audience, unpack_audience
from processor.adapters.redis_errors import translate_redis_errors
from processor.ports.contact_store import contact_digest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Collection

    from redis.asyncio import Redis

    from processor.adapters.keys import Keys
    from processor.adapters.redis_errors import RedisCalls

log = logging.getLogger(__name__)

_SCAN_COUNT = 1000

# KEYS: an audience hash. ARGV: a chunk's field, the value it was read with, the value without
# the erased contacts. Replaces the chunk only if it is still the one read (a redelivered chunk
# written meanwhile is left as its producer sent it).
_REPLACE_CHUNK = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""


class ContactErasure:
    """Removes deleted contacts from the attempted sets and audiences of their tenant."""

    def __init__(self, client: Redis, keys: Keys, calls: RedisCalls | None = None) -> None:
        self._client = client
        self._calls = calls
        self._keys = keys
        self._replace_chunk = client.register_script(_REPLACE_CHUNK)

    async def erase(self, tenant_id: str, contact_ids: Collection[str]) -> None:
        """Forget the contacts in every campaign of the tenant.

        Its cost grows with the tenant's campaigns and planned audiences (each chunk is read):
        deletions are rare, and a batch of them costs one pass.
        """
        with translate_redis_errors("erasing deleted contacts", self._calls):
            attempted = await self._erase_attempted(tenant_id, contact_ids)
            chunks = await self._erase_from_audiences(tenant_id, set(contact_ids))
        log.info(
            "deleted contacts erased",
            extra={
                "tenant_id": tenant_id,
                "contacts": len(contact_ids),
                "attempted_sets": attempted,
                "audience_chunks": chunks,
            },
        )

    async def _erase_attempted(self, tenant_id: str, contact_ids: Collection[str]) -> int:
        """SREM the contacts' digests from each attempted set; how many sets held one."""
        digests = [contact_digest(c) for c in contact_ids]
        changed = 0
        async for key in self._campaign_keys(tenant_id, "attempted", "set"):
            changed += bool(await self._client.srem(key, *digests))
        return changed

    async def _erase_from_audiences(self, tenant_id: str, contact_ids: set[str]) -> int:
        """Rewrite each audience chunk that plans one of the contacts; how many were."""
        changed = 0
        async for key in self._campaign_keys(tenant_id, "audience", "hash"):
            for field in await self._client.hkeys(key):
                if not field.isdigit():  # the stated total
                    continue
                value = await self._client.hget(key, field)
                if not isinstance(value, bytes):
                    continue
                planned = unpack_audience(value)
                kept = [r for r in planned if r.contact_id not in contact_ids]
                if len(kept) < len(planned):
                    # An emptied chunk stays (empty): it still counts towards `total_chunks`.
                    args = [field, value, pack_audience(kept)]
                    changed += int(await self._replace_chunk(keys=[key], args=args))
        return changed

    async def _campaign_keys(self, tenant_id: str, suffix: str, kind: str) -> AsyncIterator[str]:
        glob, exact = self._keys.tenant_campaign_keys(tenant_id, suffix)
        async for raw in self._client.scan_iter(match=glob, count=_SCAN_COUNT, _type=kind):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            if exact.fullmatch(key):
                yield key
