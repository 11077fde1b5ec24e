"""`ContactStore.candidates`, the resume agent's read of a chunk, against the reads it bundles.

On both stores, and on Redis also with tiny script slices and few shards, so that contacts of
one shard are split over several calls.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from processor.adapters import redis_contact_reads
from processor.adapters.keys import Keys
from processor.adapters.redis_contacts import RedisContactStore
from processor.domain.contact_codec import encode_contact
from processor.domain.contact_state import ContactState
from processor.ports.contact_store import (
    UNREADABLE_STATE,
    Candidates,
    ContactStore,
    InMemoryContactStore,
)
from schemas.audience import ConsentState, ContactUpdate
from schemas.events import EventType, Recipient
from tests.integration.test_contact_store_contract import T0, event

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox


@pytest.fixture(params=["memory", "redis", "redis-sliced"])
def store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> ContactStore:
    """Each contact store in turn; `redis-sliced` packs at most 3 contacts per script call."""
    if request.param == "memory":
        return InMemoryContactStore()
    sandbox: Sandbox = request.getfixturevalue("sandbox")
    shards = 16
    if request.param == "redis-sliced":
        monkeypatch.setattr(redis_contact_reads, "SLICE", 3)
        shards = 2
    client: Redis = request.getfixturevalue("redis")
    return RedisContactStore(client, Keys(sandbox.name), campaign_ttl_ms=600_000, shards=shards)


def recipients(ids: list[str]) -> list[Recipient]:
    """Recipients of these contact ids."""
    return [Recipient(contact_id=c, address=f"{c.encode().hex()[:60]}@example.com") for c in ids]


async def composed(
    store: ContactStore, run_id: str, chunk: list[Recipient]
) -> tuple[list[Recipient], list[ContactState], list[bool]]:
    """What `candidates` stands for, from the separate reads."""
    first = await store.claim_first("t1", "c1", run_id, [r.contact_id for r in chunk])
    kept = [r for r, is_first in zip(chunk, first, strict=True) if is_first]
    ids = [r.contact_id for r in kept]
    attempted = await store.attempted("t1", "c1", ids)
    states = await store.states("t1", ids)
    shown = [ContactState.empty() if a else s for s, a in zip(states, attempted, strict=True)]
    return kept, shown, attempted


async def test_candidates_are_the_claim_then_the_reads(store: ContactStore) -> None:
    """Same recipients, states and attempted flags as claim_first, attempted and states give."""
    rng = random.Random(5)  # noqa: S311  # a seeded workload, not cryptography
    ids = ['quote"here', "ü", "😀", *(f"c{n}" for n in range(60))]
    kinds = [EventType.SENT, EventType.OPEN, EventType.UNSUBSCRIBE, EventType.COMPLAINT]
    history = [
        event(c, rng.choice(kinds), T0 - timedelta(days=rng.randrange(300)), campaign="c-old")
        for c in ids
        if rng.random() < 0.5
    ]
    await store.apply_events(history)
    granted = ConsentState.GRANTED
    await store.apply_updates(
        [
            ContactUpdate(tenant_id="t1", contact_id=c, consent=granted, occurred_at=T0)
            for c in ids[::7]
        ]
    )
    await store.mark_attempted("t1", "c1", rng.sample(ids, 20))
    planned = rng.choices(ids, k=40)
    chunks = [recipients(planned[:15]), recipients(planned[15:16]), recipients(planned[16:])]
    chunks.append(recipients(ids))  # the rest, and repeats of all the above

    for chunk in chunks:
        got = await store.candidates("t1", "c1", "r1", chunk)
        kept, states, attempted = await composed(store, "r2", chunk)
        assert (got.recipients, got.states, got.attempted) == (kept, states, attempted)
        assert list(got) == list(zip(kept, states, attempted, strict=True))
        assert [c for part in got.slices(4) for c in part] == list(got)
    assert sum(s != ContactState.empty() for s in got.states) > 5  # histories were read


async def test_candidates_of_nothing_new_are_empty(store: ContactStore) -> None:
    """An empty chunk, and a chunk of contacts the run met before, have no candidates."""
    assert len(await store.candidates("t1", "c1", "r1", [])) == 0
    chunk = recipients(["a", "b", "a"])
    assert len(await store.candidates("t1", "c1", "r1", chunk)) == 2
    assert await store.candidates("t1", "c1", "r1", chunk) == Candidates([], [], [])


async def test_an_unreadable_state_of_a_candidate_reads_as_revoked_consent(
    sandbox: Sandbox, redis: Redis
) -> None:
    """A value of an unknown format is judged as revoked consent, as `states` reads it."""
    store = RedisContactStore(redis, Keys(sandbox.name), campaign_ttl_ms=600_000, shards=1)
    foreign = b"\x04" + encode_contact(ContactState())[1:]
    await redis.hset(Keys(sandbox.name).contacts("t1", "a", 1), "a", foreign)
    got = await store.candidates("t1", "c1", "r1", recipients(["a", "b"]))
    assert got.states == [UNREADABLE_STATE, ContactState.empty()]
    assert got.attempted == [False, False]
