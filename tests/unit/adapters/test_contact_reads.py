"""The resume read path's shortcuts agree with what they stand in for (no Redis needed)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from processor.adapters import redis_contact_reads
from processor.adapters.keys import Keys, contact_shards
from processor.adapters.redis_contact_reads import (
    Lookup,
    pack_audience,
    trusted_recipient,
    unpack_audience,
)
from processor.ports.contact_store import contact_digest, contact_digests
from schemas.events import Recipient

IDS = ["a", "inner space", "ü", "😀 emoji", "contact-00001234", "x" * 320, 'quote"back\\slash']


def test_recipient_has_nothing_the_fast_construction_skips() -> None:
    """No alias, default, extra or post-init for `trusted_recipient` to honour: it takes over."""
    assert redis_contact_reads._FAST_CONSTRUCT  # the switch under test


@pytest.mark.parametrize("contact_id", IDS)
def test_a_trusted_recipient_equals_model_construct(contact_id: str) -> None:
    """Same type, fields, fields set, extra and private state as `model_construct` gives."""
    address = f"{contact_id.encode().hex()}@example.com"
    fast = trusted_recipient(contact_id, address)
    slow = Recipient.model_construct(contact_id=contact_id, address=address)
    assert type(fast) is Recipient
    assert fast == slow
    assert fast.__dict__ == slow.__dict__
    assert fast.model_fields_set == slow.model_fields_set
    assert (fast.__pydantic_extra__, fast.__pydantic_private__) == (None, None)
    assert (slow.__pydantic_extra__, slow.__pydantic_private__) == (None, None)
    assert fast.model_dump_json() == slow.model_dump_json()
    assert hash(fast) == hash(slow)


def test_an_audience_chunk_comes_back_as_validated_recipients() -> None:
    """What was stored reads back equal to the validated recipients, of the model's type."""
    stored = [Recipient(contact_id=c, address=f"{c.encode().hex()[:300]}@example.com") for c in IDS]
    read = unpack_audience(pack_audience(stored))
    assert read == stored
    assert [r.model_fields_set for r in read] == [r.model_fields_set for r in stored]
    assert {type(r) for r in read} == {Recipient}


def test_the_shared_fields_set_never_changes() -> None:
    """Recipients share one fields set: copies with updates and assignments leave it alone."""
    first, second = unpack_audience(pack_audience([trusted_recipient("a", "a@x.io")] * 2))
    copy = first.model_copy(update={"address": "b@x.io"})
    assert copy.address == "b@x.io"
    with pytest.raises(ValidationError):
        first.address = "c@x.io"  # type: ignore[misc]  # frozen: that it raises is the point
    assert first.model_fields_set == second.model_fields_set == {"contact_id", "address"}


def test_unknown_audience_formats_are_refused() -> None:
    """A chunk of a format this version does not know is an error, not an empty chunk."""
    with pytest.raises(ValueError, match="unknown audience chunk format"):
        unpack_audience(b"\x02" + pack_audience([])[1:])


@pytest.mark.parametrize("shards", [1, 16, 4096])
def test_batch_shard_keys_are_the_keys_of_each_contact(shards: int) -> None:
    """Prefix plus batch shard number is `Keys.contacts`, the key merges write to."""
    keys = Keys("p")
    ids = [*IDS, *(f"c{n}" for n in range(500))]
    numbers = contact_shards([c.encode() for c in ids], shards)
    built = [f"{keys.contact_shard_prefix('t1')}{n}" for n in numbers]
    assert built == [keys.contacts("t1", c, shards) for c in ids]


def test_batch_digests_are_the_contact_digests() -> None:
    """`contact_digests` of UTF-8 ids is `contact_digest` of each, as the attempted sets hold."""
    assert contact_digests([c.encode() for c in IDS]) == [contact_digest(c) for c in IDS]


def test_a_lookup_keeps_each_contact_once_at_its_first_place() -> None:
    """Repeats are dropped; positions say where the kept ones were asked for."""
    plain = Lookup.of(["a", "b", "c"])
    assert (plain.raw_ids, plain.positions) == ([b"a", b"b", b"c"], None)
    repeats = Lookup.of(["a", "b", "a", "c", "b"])
    assert repeats.raw_ids == [b"a", b"b", b"c"]
    assert repeats.positions == [0, 1, 3]
    assert repeats.digests == [contact_digest(c) for c in "abc"]
