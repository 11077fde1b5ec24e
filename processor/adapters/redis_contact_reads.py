"""The resume agent's batch reads of the Redis contact store, and the audience chunk codec.

A resume reads, for every planned recipient, whether the run met it before, whether the paused
campaign attempted it and what sendguard knows of it. Per contact, redis-py's pure-Python
command packing costs more than Redis's work, so these reads pass the contacts packed into a
few arguments to two read scripts, each over the keys of one slot (the campaign's run and
attempted sets; the tenant's contact shards), queued on the caller's pipeline. A script call
covers at most about `SLICE` contacts, so no call blocks Redis for long.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import is_not
from typing import TYPE_CHECKING, Any

from processor.adapters.keys import contact_shards
from processor.domain.contact_codec import decode_contact
from processor.domain.contact_state import ContactState
from processor.logs import address_hash
from processor.ports.contact_store import UNREADABLE_STATE, contact_digests
from schemas.events import Recipient

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from processor.adapters.keys import Keys

log = logging.getLogger(__name__)

SLICE = 4000
"""Contacts per script call: a few milliseconds of Redis time, so other clients are not held up."""
RUN_TTL_MS = 3_600_000
"""A resume run's scratch set outlives any run; a crashed run's set then expires."""
CODE_MET = ord("0")
CODE_FIRST = ord("1")
CODE_FIRST_ATTEMPTED = ord("2")
_AUDIENCE_FORMAT = b"\x01"
"""Audience chunk values: this byte, then zlib of JSON [[contact_id, address], ...]."""

# KEYS: a run's scratch set and its campaign's attempted set (one slot). ARGV: distinct 8-byte
# contact digests back to back, the scratch set's TTL (ms). Adds the digests to the scratch set
# and returns one byte per digest: '0' the run met it before, '1' first, '2' first and the
# campaign attempted it. unpack() has a C-stack limit, hence batches of 1000 digests.
_CLAIM = """
local packed, codes, n = ARGV[1], {}, 0
for base = 1, #packed, 8000 do
  local batch = {}
  for i = base, math.min(base + 7999, #packed), 8 do
    batch[#batch + 1] = string.sub(packed, i, i + 7)
  end
  local met = redis.call('SMISMEMBER', KEYS[1], unpack(batch))
  redis.call('SADD', KEYS[1], unpack(batch))
  local done = redis.call('SMISMEMBER', KEYS[2], unpack(batch))
  for j = 1, #batch do
    n = n + 1
    if met[j] == 1 then codes[n] = '0'
    elseif done[j] == 1 then codes[n] = '2'
    else codes[n] = '1' end
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return table.concat(codes)
"""

# KEYS: contact shards of one tenant (one slot). ARGV: the contacts grouped by shard, as three
# packed strings: per group `>HH` (index into KEYS, contact count); per contact `>I4` (UTF-8
# length of its id); the ids back to back. Returns the stored values in that order, nil for
# none: one HMGET per group.
_STATES = """
local heads, lengths, ids = ARGV[1], ARGV[2], ARGV[3]
local hp, lp, ip, values, n = 1, 1, 1, {}, 0
while hp <= #heads do
  local k, count
  k, count, hp = struct.unpack('>HH', heads, hp)
  local group = {}
  for j = 1, count do
    local len
    len, lp = struct.unpack('>I4', lengths, lp)
    group[j] = string.sub(ids, ip, ip + len - 1)
    ip = ip + len
  end
  local found = redis.call('HMGET', KEYS[k], unpack(group))
  for j = 1, count do
    n = n + 1
    values[n] = found[j]
  end
end
return values
"""


_FAST_CONSTRUCT = (
    set(Recipient.model_fields) == {"contact_id", "address"}
    and all(f.alias is None and f.validation_alias is None for f in Recipient.model_fields.values())
    and not Recipient.__pydantic_post_init__
    and not Recipient.__private_attributes__
    and Recipient.model_config.get("extra") != "allow"
)
"""Whether `trusted_recipient` may skip `model_construct`'s generic handling of aliases,
defaults, extras and post-init hooks: Recipient has none of them (tests hold it to this)."""
_FIELDS_SET = {"contact_id", "address"}
"""The fields set of every trusted recipient, one set shared rather than a million: nothing
adds to it, as Recipient is frozen and `model_copy` copies the set before updating it. Saves
the allocations and the garbage collector's passes over them."""


def trusted_recipient(contact_id: str, address: str) -> Recipient:
    """`Recipient.model_construct(contact_id=..., address=...)`, equal to it, at half the cost."""
    if not _FAST_CONSTRUCT:
        return Recipient.model_construct(contact_id=contact_id, address=address)
    recipient = Recipient.__new__(Recipient)
    object.__setattr__(recipient, "__dict__", {"contact_id": contact_id, "address": address})
    object.__setattr__(recipient, "__pydantic_fields_set__", _FIELDS_SET)
    object.__setattr__(recipient, "__pydantic_extra__", None)
    object.__setattr__(recipient, "__pydantic_private__", None)
    return recipient


def pack_audience(recipients: Sequence[Recipient]) -> bytes:
    """A chunk of planned recipients as stored: compact and order-preserving."""
    pairs = [[r.contact_id, r.address] for r in recipients]
    return _AUDIENCE_FORMAT + zlib.compress(json.dumps(pairs, separators=(",", ":")).encode())


def unpack_audience(value: bytes) -> list[Recipient]:
    """The recipients `pack_audience` stored (validated when they came in, so not again)."""
    if value[:1] != _AUDIENCE_FORMAT:
        raise ValueError(f"unknown audience chunk format {value[:1]!r}")
    pairs = json.loads(zlib.decompress(value[1:]))
    if not _FAST_CONSTRUCT:
        return [Recipient.model_construct(contact_id=c, address=a) for c, a in pairs]
    new, cls, set_attr, fields_set = Recipient.__new__, Recipient, object.__setattr__, _FIELDS_SET
    recipients = []
    for contact_id, address in pairs:  # as `trusted_recipient`, inlined: a million calls add up
        recipient = new(cls)
        set_attr(recipient, "__dict__", {"contact_id": contact_id, "address": address})
        set_attr(recipient, "__pydantic_fields_set__", fields_set)
        set_attr(recipient, "__pydantic_extra__", None)
        set_attr(recipient, "__pydantic_private__", None)
        recipients.append(recipient)
    return recipients


@dataclass(frozen=True, slots=True)
class Lookup:
    """Contacts to claim and read, each once, as their first occurrence in the asked list."""

    raw_ids: list[bytes]
    """UTF-8 contact ids, one per distinct digest, in order of first occurrence."""
    digests: list[bytes]
    positions: list[int] | None
    """Where each was first asked for; None when the list had no repeats (the common case)."""

    @staticmethod
    def of(contact_ids: Sequence[str]) -> Lookup:
        """The lookup of `contact_ids`, repeats (by digest, as the run set sees them) dropped."""
        raw_ids = [contact_id.encode() for contact_id in contact_ids]
        digests = contact_digests(raw_ids)
        if len(set(digests)) == len(digests):
            return Lookup(raw_ids, digests, None)
        first: dict[bytes, int] = {}
        for position, digest in enumerate(digests):
            first.setdefault(digest, position)
        positions = list(first.values())
        return Lookup([raw_ids[p] for p in positions], list(first), positions)


class ContactReads:
    """Queues the packed reads on a pipeline and reads their replies back."""

    def __init__(self, client: Redis, keys: Keys, shards: int) -> None:
        self._keys = keys
        self._shards = shards
        self._claim = client.register_script(_CLAIM)
        self._states = client.register_script(_STATES)

    async def queue_claim(
        self, pipe: Pipeline, tenant_id: str, campaign_id: str, run_id: str, lookup: Lookup
    ) -> int:
        """Queue the run's claim of the lookup's contacts; returns the replies it will take."""
        keys = [
            self._keys.resume_run(tenant_id, campaign_id, run_id),
            self._keys.campaign_attempted(tenant_id, campaign_id),
        ]
        digests = lookup.digests
        calls = 0
        for start in range(0, len(digests), SLICE):
            packed = b"".join(digests[start : start + SLICE])
            await self._claim(keys=keys, args=[packed, RUN_TTL_MS], client=pipe)
            calls += 1
        return calls

    async def queue_states(
        self, pipe: Pipeline, tenant_id: str, raw_ids: Sequence[bytes]
    ) -> list[int]:
        """Queue the read of these contacts' states; returns the order the values come in.

        The values come shard by shard: the i-th value is that of contact `raw_ids[order[i]]`.
        """
        groups: defaultdict[int, list[int]] = defaultdict(list)
        for index, shard in enumerate(contact_shards(raw_ids, self._shards)):
            groups[shard].append(index)
        order = list(chain.from_iterable(groups.values()))
        in_order = list(map(raw_ids.__getitem__, order))
        prefix = self._keys.contact_shard_prefix(tenant_id)
        keys: list[str] = []
        heads: list[int] = []
        start = end = 0  # the contacts of the call being packed: in_order[start:end]
        for shard, members in groups.items():
            key, count = f"{prefix}{shard}", len(members)
            for piece in range(0, count, SLICE):
                keys.append(key)
                heads += (len(keys), min(count - piece, SLICE))
                end += heads[-1]
                if end - start >= SLICE:  # so under 2 * SLICE contacts and SLICE keys per call
                    await self._queue_states(pipe, keys, heads, in_order[start:end])
                    keys, heads, start = [], [], end
        if keys:
            await self._queue_states(pipe, keys, heads, in_order[start:end])
        return order

    async def _queue_states(
        self, pipe: Pipeline, keys: list[str], heads: list[int], ids: list[bytes]
    ) -> None:
        lengths = struct.pack(f">{len(ids)}I", *map(len, ids))
        packed = [struct.pack(f">{len(heads)}H", *heads), lengths, b"".join(ids)]
        await self._states(keys=keys, args=packed, client=pipe)

    @staticmethod
    def claim_codes(replies: Sequence[Any]) -> bytes:
        """The claim's one byte per contact (`CODE_*`), from its replies."""
        return b"".join(replies)

    @staticmethod
    def states(
        tenant_id: str,
        raw_ids: Sequence[bytes],
        order: list[int],
        replies: Sequence[Any],
        *,
        into: list[ContactState] | None = None,
        at: Sequence[int] | None = None,
    ) -> list[ContactState]:
        """The contacts' states, from the replies to `queue_states` (and the order it gave).

        In `raw_ids` order; or written into `into`, the state of `raw_ids[i]` at `at[i]`, where
        the empty state is already in place: the values found are few.
        """
        if into is None:
            into, at = [ContactState.empty()] * len(raw_ids), range(len(raw_ids))
        elif at is None:
            raise ValueError("states written into a list need their places")
        decoded: dict[bytes, ContactState] = {}  # many contacts share a value
        values = list(chain.from_iterable(replies))
        for i in compress(range(len(values)), map(is_not, values, repeat(None))):
            value, index = values[i], order[i]
            state = decoded.get(value)
            if state is None:
                state = _decode(tenant_id, raw_ids[index], value)
                if state is not UNREADABLE_STATE:
                    decoded[value] = state
            into[at[index]] = state
        return into


def _decode(tenant_id: str, raw_id: bytes, value: bytes) -> ContactState:
    """The state stored as `value`; logged and read as `UNREADABLE_STATE` if unreadable."""
    try:
        return decode_contact(value)
    except ValueError:
        log.exception(
            "unreadable contact state, treated as revoked consent",
            extra={"tenant_id": tenant_id, "contact": address_hash(raw_id.decode())},
        )
        return UNREADABLE_STATE
