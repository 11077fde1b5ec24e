"""The contact store's writes: delivery events and contact updates merged into contact shards.

One merge script (`redis_contact_merge`) per tenant per batch over the tenant's shards (one
slot), so concurrent workers never lose an update, and each campaign's attempted set, all in one
pipeline.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processor.adapters.redis_contact_merge import MERGE_CONTACTS, OP_HEAD
from processor.adapters.redis_errors import translate_redis_errors
from processor.adapters.redis_pipeline import ScriptPipeline
from processor.ports.contact_store import contact_digest

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from processor.adapters.keys import Keys
    from processor.adapters.redis_errors import RedisCalls
    from processor.ports.contact_store import ContactOp

log = logging.getLogger(__name__)

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


class ContactWrites:
    """Builds the pipelines that merge contact ops and mark attempted contacts, and sends them."""

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        *,
        shards: int,
        campaign_ttl_ms: int,
        calls: RedisCalls | None = None,
    ) -> None:
        self._client = client
        self._calls = calls
        self._keys = keys
        self._shards = shards
        self._campaign_ttl_ms = campaign_ttl_ms
        self._merge = client.register_script(MERGE_CONTACTS)
        self._mark_attempted = client.register_script(_MARK_ATTEMPTED)

    def pipeline(
        self, ops: list[tuple[str, str, ContactOp]], attempted: dict[tuple[str, str], list[str]]
    ) -> MergePipeline | None:
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
            # An active campaign keeps its audience until it can be resumed.
            pipe.script(
                self._mark_attempted,
                [
                    keys.campaign_attempted(tenant_id, campaign_id),
                    keys.campaign_audience(tenant_id, campaign_id),
                ],
                [digests, ttl],
            )
        return MergePipeline(pipe, len(by_tenant))

    async def send(self, pipeline: MergePipeline | None, doing: str) -> None:
        """Send `pipeline` (None: nothing to write); `doing` names the write in the error."""
        if pipeline is None:
            return
        with translate_redis_errors(doing, self._calls):
            replies = await pipeline.commands.execute(self._client)
        unread = sum(int(reply[1]) for reply in replies[: pipeline.merges])
        if unread:
            log.error("contact states of an unknown format left as they are", extra={"n": unread})


@dataclass(frozen=True, slots=True)
class MergePipeline:
    """The queued commands of one write, and how to read their replies."""

    commands: ScriptPipeline
    merges: int
    """How many of the commands, first, are merge scripts (their replies count unread states)."""
