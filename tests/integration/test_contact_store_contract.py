"""The contact store contract: the same cases on InMemoryContactStore and RedisContactStore.

The Redis store merges in Lua; these cases prove it agrees with the pure transitions of
contact_state.py that the in-memory store applies directly, and writes contact_codec.py's bytes.
"""

from __future__ import annotations

import asyncio
import random
import struct
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.crc import key_slot

from processor.adapters.keys import Keys
from processor.adapters.redis_contacts import RedisContactStore
from processor.domain.contact_codec import decode_contact, encode_contact
from processor.domain.contact_state import (
    MAX_COUNTED_SENDS,
    ContactState,
    apply_contact_update,
    apply_delivery_event,
)
from processor.domain.recipients import FilterRules, exclusion_reason
from processor.errors import StoreUnavailableError
from processor.ports.contact_store import UNREADABLE_STATE, ContactStore, InMemoryContactStore
from schemas.audience import AudienceChunk, ConsentState, ContactUpdate
from schemas.events import BounceClass, DeliveryEvent, EventType, Recipient

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox

T0 = datetime(2025, 5, 1, 9, 0, tzinfo=UTC)
SHARDS = 16
Op = DeliveryEvent | ContactUpdate


def redis_store(sandbox: Sandbox, client: Redis, shards: int = SHARDS) -> RedisContactStore:
    """A Redis contact store under the sandbox's prefix."""
    return RedisContactStore(client, Keys(sandbox.name), campaign_ttl_ms=600_000, shards=shards)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> ContactStore:
    """Each contact store in turn."""
    if request.param == "memory":
        return InMemoryContactStore()
    sandbox: Sandbox = request.getfixturevalue("sandbox")
    return redis_store(sandbox, request.getfixturevalue("redis"))


def event(
    contact: str,
    kind: EventType,
    at: datetime = T0,
    *,
    tenant: str = "t1",
    campaign: str = "c1",
    bounce_class: BounceClass | None = None,
) -> DeliveryEvent:
    """A delivery event."""
    return DeliveryEvent(
        event_id=f"{contact}-{kind}-{at.isoformat()}",
        tenant_id=tenant,
        campaign_id=campaign,
        recipient=Recipient(contact_id=contact, address="x@example.com"),
        type=kind,
        bounce_class=bounce_class,
        occurred_at=at,
    )


def update(contact: str, *, tenant: str = "t1", **fields: Any) -> ContactUpdate:
    """A contact update (occurred at T0 unless stated)."""
    fields.setdefault("occurred_at", T0)
    return ContactUpdate(tenant_id=tenant, contact_id=contact, **fields)


def pure(
    ops: list[Op], states: dict[tuple[str, str], ContactState] | None = None
) -> dict[tuple[str, str], ContactState]:
    """The states the pure transitions give, per (tenant, contact) (from `states`, if given)."""
    states = {} if states is None else dict(states)
    for op in ops:
        if isinstance(op, ContactUpdate):
            key = (op.tenant_id, op.contact_id)
            states[key] = apply_contact_update(states.get(key, ContactState.empty()), op)
        else:
            key = (op.tenant_id, op.recipient.contact_id)
            state = states.get(key, ContactState.empty())
            states[key] = apply_delivery_event(state, op.type, op.bounce_class, op.occurred_at)
    return states


async def apply(store: ContactStore, ops: list[Op], batch: int = 1000) -> None:
    """Apply ops in order, in batches of consecutive ops of one kind."""
    run: list[Op] = []
    for op in [*ops, None]:
        if run and (op is None or type(op) is not type(run[0]) or len(run) >= batch):
            if isinstance(run[0], ContactUpdate):
                await store.apply_updates([o for o in run if isinstance(o, ContactUpdate)])
            else:
                await store.apply_events([o for o in run if isinstance(o, DeliveryEvent)])
            run = []
        if op is not None:
            run.append(op)


def random_ops(seed: int, n: int) -> list[Op]:
    """Random events and updates over a few contacts of two tenants, times repeating."""
    rng = random.Random(seed)  # noqa: S311  # a seeded workload, not cryptography
    ops: list[Op] = []
    for _ in range(n):
        contact = f"c{rng.randrange(12)}"
        tenant = rng.choice(["t1", "t2"])
        at = T0 + timedelta(seconds=rng.randrange(-5, 6), microseconds=rng.choice([0, 999_999]))
        if rng.random() < 0.7:
            kind = rng.choice(list(EventType))
            bounce = rng.choice(list(BounceClass)) if kind is EventType.BOUNCE else None
            ops.append(event(contact, kind, at, tenant=tenant, bounce_class=bounce))
        else:
            ops.append(
                update(
                    contact,
                    tenant=tenant,
                    consent=rng.choice([*ConsentState, None]),
                    unsubscribed=rng.choice([True, False, None]),
                    deleted=rng.random() < 0.1,
                    occurred_at=at,
                )
            )
    return ops


async def assert_agrees(store: ContactStore, ops: list[Op]) -> None:
    """Every contact the ops touch (and an unknown one) reads as the pure transitions give."""
    expected = pure(ops)
    for tenant in ("t1", "t2"):
        ids = [*sorted({c for t, c in expected if t == tenant}), "never-seen"]
        states = await store.states(tenant, ids)
        empty = ContactState.empty()
        assert states == [expected.get((tenant, c), empty) for c in ids]


SEQUENCES: dict[str, list[Op]] = {
    "hard bounce": [event("a", EventType.BOUNCE, bounce_class=BounceClass.HARD)],
    "soft bounce and block change nothing": [
        event("a", EventType.BOUNCE, bounce_class=BounceClass.SOFT),
        event("a", EventType.BOUNCE, bounce_class=BounceClass.BLOCK),
        event("a", EventType.DELIVERED),
        event("a", EventType.DEFERRED),
        event("a", EventType.DROPPED_SUPPRESSED),
    ],
    "complaint": [event("a", EventType.COMPLAINT)],
    "unsubscribe event": [event("a", EventType.UNSUBSCRIBE)],
    "sends count once per second, in any order": [
        event("a", EventType.SENT, T0),
        event("a", EventType.SENT, T0 + timedelta(microseconds=500)),
        event("a", EventType.SENT, T0 - timedelta(hours=1)),
        event("a", EventType.SENT, T0 + timedelta(seconds=1)),
    ],
    "an engagement clears the sends before it; an older one only marks engaged": [
        event("a", EventType.SENT, T0),
        event("a", EventType.SENT, T0 + timedelta(seconds=1)),
        event("a", EventType.OPEN, T0 + timedelta(seconds=2)),
        event("a", EventType.SENT, T0 + timedelta(seconds=3)),
        event("a", EventType.CLICK, T0 - timedelta(days=1)),
        event("a", EventType.SENT, T0 - timedelta(seconds=5)),
    ],
    "a late engagement keeps the sends after it": [
        *(event("a", EventType.SENT, T0 + timedelta(seconds=n)) for n in range(5)),
        event("a", EventType.OPEN, T0 + timedelta(seconds=2)),
    ],
    "consent granted then revoked": [
        update("a", consent=ConsentState.GRANTED),
        update("a", consent=ConsentState.REVOKED),
    ],
    "re-subscribed by a later update after an unsubscribe event": [
        event("a", EventType.UNSUBSCRIBE),
        update("a", unsubscribed=False, occurred_at=T0 + timedelta(seconds=1)),
    ],
    "an older CRM export does not re-subscribe; a tie keeps the unsubscribe": [
        event("a", EventType.UNSUBSCRIBE),
        update("a", unsubscribed=False, occurred_at=T0 - timedelta(days=1)),
        update("a", unsubscribed=False),
        event("b", EventType.UNSUBSCRIBE, T0 - timedelta(days=2)),
        update("b", unsubscribed=False, occurred_at=T0 - timedelta(days=1)),
    ],
    "deleted stays deleted": [update("a", deleted=True), update("a", deleted=False)],
    "a deletion erases the history, and later events keep nothing": [
        event("a", EventType.SENT),
        event("a", EventType.OPEN, T0 + timedelta(seconds=5)),
        update("a", consent=ConsentState.GRANTED, unsubscribed=True),
        update("a", deleted=True),
        event("a", EventType.COMPLAINT),
        update("a", consent=ConsentState.GRANTED),
    ],
    "an update without fields changes nothing": [
        update("a", consent=ConsentState.GRANTED, unsubscribed=True),
        update("a"),
    ],
    "tenants are separate": [
        event("a", EventType.COMPLAINT, tenant="t2"),
        update("a", tenant="t1", consent=ConsentState.REVOKED),
    ],
}


@pytest.mark.parametrize("name", list(SEQUENCES))
async def test_each_transition_matches_the_pure_function(store: ContactStore, name: str) -> None:
    """Each kind of event and update merges exactly as contact_state.py defines it."""
    await apply(store, SEQUENCES[name])
    await assert_agrees(store, SEQUENCES[name])


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_histories_merge_like_the_pure_transitions(
    store: ContactStore, seed: int
) -> None:
    """Random mixes of events and updates, in batches of every size, agree with contact_state.py."""
    ops = random_ops(seed, 600)
    await apply(store, ops, batch=random.Random(seed).choice([1, 7, 100]))  # noqa: S311  # seeded
    await assert_agrees(store, ops)


async def test_a_replayed_batch_changes_nothing(store: ContactStore) -> None:
    """Applying the same events and updates again leaves every state as it was."""
    ops = random_ops(4, 300)
    await apply(store, ops)
    await apply(store, ops)
    await assert_agrees(store, ops)


async def seed(store: ContactStore, contact: str, state: ContactState) -> None:
    """Store a state of tenant t1 as it would be after a long history."""
    if isinstance(store, InMemoryContactStore):
        store.contacts["t1", contact] = state
    else:
        assert isinstance(store, RedisContactStore)
        key = store._keys.contacts("t1", contact, store._shards)
        await store._client.hset(key, contact, encode_contact(state))


async def test_only_the_latest_sends_are_kept(store: ContactStore) -> None:
    """Past MAX_COUNTED_SENDS the oldest drop out; a late older send changes nothing then."""
    sends = [event("a", EventType.SENT, T0 + timedelta(days=n)) for n in range(25)]
    await store.apply_events(sends[::-1])
    (state,) = await store.states("t1", ["a"])
    assert state.recent_sends == tuple(e.occurred_at for e in sends[::-1][:MAX_COUNTED_SENDS])
    assert state.last_marketing_send_at == sends[-1].occurred_at
    await store.apply_events([event("a", EventType.CLICK, T0 + timedelta(days=22, hours=1))])
    (state,) = await store.states("t1", ["a"])
    assert (state.sends_since_engagement, state.ever_engaged) == (2, True)


async def test_every_event_of_a_campaign_marks_its_contact_attempted(store: ContactStore) -> None:
    """Any delivery event, or an explicit mark, makes the contact attempted in that campaign."""
    kinds = list(EventType)
    soft = BounceClass.SOFT
    await store.apply_events(
        [
            event(f"k{i}", kind, bounce_class=soft if kind is EventType.BOUNCE else None)
            for i, kind in enumerate(kinds)
        ]
    )
    await store.mark_attempted("t1", "c1", ["marked"])
    ids = [f"k{i}" for i in range(len(kinds))] + ["marked", "other"]
    assert await store.attempted("t1", "c1", ids) == [True] * (len(kinds) + 1) + [False]
    assert await store.attempted("t1", "c2", ["k0"]) == [False]
    assert await store.attempted("t2", "c1", ["k0"]) == [False]
    assert await store.attempted("t1", "c1", []) == []


def chunk(index: int, ids: list[str], tenant: str = "t1") -> AudienceChunk:
    """An audience chunk of campaign c1."""
    recipients = [Recipient(contact_id=c, address=f"{c.encode().hex()}@example.com") for c in ids]
    return AudienceChunk(
        tenant_id=tenant, campaign_id="c1", chunk_index=index, recipients=recipients
    )


async def test_audience_chunks_come_back_by_index_and_replace_themselves(
    store: ContactStore,
) -> None:
    """Chunks iterate in numeric index order, exactly as stored; a redelivered index replaces."""
    stored = {10: chunk(10, ["j"]), 2: chunk(2, ["x"]), 1: chunk(1, ["a", 'quote"here', "ü"])}
    for c in stored.values():
        await store.store_audience_chunk(c)
    stored[2] = chunk(2, ["b", "c"])
    await store.store_audience_chunk(stored[2])
    read = [c async for c in store.audience_chunks("t1", "c1")]
    assert read == [stored[i].recipients for i in (1, 2, 10)]
    assert [c async for c in store.audience_chunks("t1", "c-unknown")] == []


async def test_audience_progress_counts_stored_chunks_against_the_stated_total(
    store: ContactStore,
) -> None:
    """Chunks stored (a redelivery counts once) and the last stated total; chunks still read."""
    assert await store.audience_progress("t1", "c1") == (0, None)
    await store.store_audience_chunk(chunk(0, ["a"]))
    assert await store.audience_progress("t1", "c1") == (1, None)
    for index in (2, 2):
        stated = chunk(index, [f"c{index}"]).model_copy(update={"total_chunks": 3})
        await store.store_audience_chunk(stated)
    assert await store.audience_progress("t1", "c1") == (2, 3)
    read = [c async for c in store.audience_chunks("t1", "c1")]
    assert [[r.contact_id for r in c] for c in read] == [["a"], ["c2"]]
    await store.store_audience_chunk(chunk(1, ["b"]).model_copy(update={"total_chunks": 3}))
    assert await store.audience_progress("t1", "c1") == (3, 3)


async def test_two_tenants_plan_campaigns_of_the_same_id_independently(
    store: ContactStore,
) -> None:
    """A campaign id is the tenant's own: another tenant's `c1` is another campaign."""
    await store.store_audience_chunk(chunk(0, ["a"]))
    await store.store_audience_chunk(chunk(0, ["z"], tenant="t2"))
    await store.store_audience_chunk(chunk(1, ["y"], tenant="t2"))
    t1 = [[r.contact_id for r in c] async for c in store.audience_chunks("t1", "c1")]
    t2 = [[r.contact_id for r in c] async for c in store.audience_chunks("t2", "c1")]
    assert (t1, t2) == ([["a"]], [["z"], ["y"]])
    assert await store.audience_progress("t1", "c1") == (1, None)
    assert await store.audience_progress("t2", "c1") == (2, None)


async def test_a_run_claims_each_contact_once(store: ContactStore) -> None:
    """Within a run a contact is first once, within a list or across calls; runs are separate."""
    assert await store.claim_first("t1", "c1", "r1", ["a", "b", "a"]) == [True, True, False]
    assert await store.claim_first("t1", "c1", "r1", ["b", "c", "c"]) == [False, True, False]
    assert await store.claim_first("t1", "c1", "r2", ["a"]) == [True]
    await store.end_run("t1", "c1", "r1")
    assert await store.claim_first("t1", "c1", "r1", ["a"]) == [True]
    assert await store.claim_first("t1", "c1", "r1", []) == []


async def test_the_first_resume_record_wins(store: ContactStore) -> None:
    """A request's record is saved once; a later save returns the first."""
    assert await store.resume_record("t1", "c1", "q1") is None
    assert await store.save_resume_record("t1", "c1", "q1", '{"n": 1}') == '{"n": 1}'
    assert await store.save_resume_record("t1", "c1", "q1", '{"n": 2}') == '{"n": 1}'
    assert await store.resume_record("t1", "c1", "q1") == '{"n": 1}'
    assert await store.resume_record("t1", "c2", "q1") is None


# --- Redis only --------------------------------------------------------------------------------


async def test_concurrent_workers_lose_no_merge(sandbox: Sandbox, redis: Redis) -> None:
    """Two workers merging into the same contacts at once keep every flag and every send."""
    other = Redis.from_url(sandbox.stack["SENDGUARD_REDIS_URL"])
    workers = [redis_store(sandbox, redis), redis_store(sandbox, other)]
    ids = [f"c{n}" for n in range(50)]
    kinds = [EventType.COMPLAINT, EventType.UNSUBSCRIBE, EventType.OPEN]
    batches = [
        [event(c, kinds[n % 3], T0 + timedelta(seconds=n)) for c in ids]
        + [event(c, EventType.SENT, T0 + timedelta(seconds=100 + n)) for c in ids]
        for n in range(30)
    ]
    try:
        await asyncio.gather(
            *(workers[n % 2].apply_events(batch) for n, batch in enumerate(batches))
        )
    finally:
        await other.aclose()
    states = await workers[0].states("t1", ids)
    assert {s.complained and s.unsubscribed and s.ever_engaged for s in states} == {True}
    assert {s.last_marketing_send_at for s in states} == {T0 + timedelta(seconds=129)}


async def test_a_tenants_contact_shards_share_one_cluster_slot(sandbox: Sandbox) -> None:
    """Every contact shard key of a tenant hashes to the tenant's slot, for one Lua script."""
    keys = Keys(sandbox.name)
    shard_keys = {keys.contacts("acme", f"c{n}", 4096) for n in range(500)}
    assert len(shard_keys) > 400
    assert {key_slot(k.encode()) for k in shard_keys} == {key_slot(b"{t:acme}")}


async def test_an_unreadable_state_is_kept_and_read_as_revoked_consent(
    sandbox: Sandbox, redis: Redis
) -> None:
    """A value of an unknown format is left as it is by merges and never reads as mailable."""
    store = redis_store(sandbox, redis, shards=1)
    key = Keys(sandbox.name).contacts("t1", "a", 1)
    foreign = b"\x04" + encode_contact(ContactState())[1:]
    await redis.hset(key, "a", foreign)
    await store.apply_events([event("a", EventType.SENT), event("b", EventType.SENT)])
    assert await redis.hget(key, "a") == foreign
    states = await store.states("t1", ["a", "b"])
    assert states[0] == UNREADABLE_STATE
    assert states[1].sends_since_engagement == 1


@pytest.mark.parametrize("version", [1, 2])
async def test_an_earlier_version_is_read_merged_and_rewritten_as_version_3(
    sandbox: Sandbox, redis: Redis, version: int
) -> None:
    """A version 1 or 2 state (a count of sends, no times) merges like the pure functions."""
    store = redis_store(sandbox, redis, shards=1)
    key = Keys(sandbox.name).contacts("t1", "a", 1)
    sent = int(T0.timestamp())
    head = struct.pack(">BBIIH", version, 0b0000_0101, sent, sent - 3600, 12)
    stored_before = head if version == 1 else head + struct.pack(">I", sent - 7200)
    before = decode_contact(stored_before)
    assert before.sends_since_engagement == 12
    await redis.hset(key, "a", stored_before)
    ops: list[Op] = [
        update("a", unsubscribed=False, occurred_at=T0 - timedelta(days=1)),
        event("a", EventType.OPEN, T0 - timedelta(seconds=5)),
        event("a", EventType.SENT, T0 - timedelta(seconds=30)),
    ]
    await apply(store, ops)
    expected = before
    for op in ops:
        expected = pure([op], {("t1", "a"): expected})["t1", "a"]
    assert await redis.hget(key, "a") == encode_contact(expected)
    assert await store.states("t1", ["a"]) == [expected]
    assert expected.sends_since_engagement == 5


async def test_a_stored_state_untouched_by_merges_is_still_read(
    sandbox: Sandbox, redis: Redis
) -> None:
    """A version 2 value nobody merged into since the upgrade reads as migrated."""
    store = redis_store(sandbox, redis, shards=1)
    key = Keys(sandbox.name).contacts("t1", "a", 1)
    await redis.hset(key, "a", struct.pack(">BBIIHI", 2, 0, int(T0.timestamp()), 0, 11, 0))
    (state,) = await store.states("t1", ["a"])
    assert state.sends_since_engagement == 11
    assert exclusion_reason(state, FilterRules(), T0) is not None


async def test_redis_errors_become_store_unavailable() -> None:
    """A Redis that does not answer surfaces as StoreUnavailableError, with the cause kept."""
    client = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    store = RedisContactStore(client, Keys("down"), campaign_ttl_ms=1000)
    try:
        with pytest.raises(StoreUnavailableError) as raised:
            await store.apply_events([event("a", EventType.SENT)])
        assert raised.value.__cause__ is not None
        with pytest.raises(StoreUnavailableError):
            await store.states("t1", ["a"])
    finally:
        await client.aclose()


# --- arrival order, on both stores -------------------------------------------------------------

contacts = st.sampled_from(["a", "b", "c"])
timed_kinds = st.sampled_from(
    [EventType.SENT, EventType.SENT, EventType.SENT, EventType.OPEN, EventType.CLICK]
)
offsets = st.integers(min_value=-30, max_value=30).map(lambda n: timedelta(seconds=n))
histories = st.lists(st.tuples(contacts, timed_kinds, offsets), min_size=1, max_size=60)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # each example: own tenant
)
@given(histories, st.randoms(use_true_random=False), st.data())
def test_any_arrival_order_merges_to_the_same_states_on_both_stores(
    sandbox: Sandbox,
    history: list[tuple[str, EventType, timedelta]],
    rng: random.Random,
    data: st.DataObject,
) -> None:
    """Events shuffled, some replayed, in any batches: both stores hold the in-order fold's state.

    Redis holds exactly the bytes `encode_contact` gives for it, and the resume filter's
    verdict is the same as in order.
    """
    tenant = f"h{uuid.uuid4().hex[:8]}"
    in_order: list[Op] = [event(c, kind, T0 + offset, tenant=tenant) for c, kind, offset in history]
    arrived = in_order + data.draw(st.lists(st.sampled_from(in_order), max_size=10))
    rng.shuffle(arrived)
    batch = data.draw(st.sampled_from([1, 3, 1000]))
    expected = pure(in_order)
    asyncio.run(_check_both_stores(sandbox, tenant, arrived, batch, expected))


async def _check_both_stores(
    sandbox: Sandbox,
    tenant: str,
    arrived: list[Op],
    batch: int,
    expected: dict[tuple[str, str], ContactState],
) -> None:
    client = Redis.from_url(sandbox.stack["SENDGUARD_REDIS_URL"])
    try:
        stores: list[ContactStore] = [InMemoryContactStore(), redis_store(sandbox, client)]
        ids = sorted(c for _, c in expected)
        want = [expected[tenant, c] for c in ids]
        for store in stores:
            await apply(store, arrived, batch)
            assert await store.states(tenant, ids) == want
        keys = Keys(sandbox.name)
        for contact, state in zip(ids, want, strict=True):
            stored = await client.hget(keys.contacts(tenant, contact, SHARDS), contact)
            assert stored == encode_contact(state)
        rules = FilterRules(unengaged_never_engaged_sends=3, unengaged_engaged_before_sends=2)
        now = T0 + timedelta(days=1)
        verdicts = [exclusion_reason(s, rules, now) for s in await stores[1].states(tenant, ids)]
        assert verdicts == [exclusion_reason(s, rules, now) for s in want]
    finally:
        stale = [k async for k in client.scan_iter(match=f"{sandbox.name}:*", count=1000)]
        if stale:
            await client.unlink(*stale)
        await client.aclose()
