"""The DetectionStore contract, run against both InMemoryStore and RedisStore (on real Redis).

Also DetectionService on each store: the same records in any batch split, with replays and
redeliveries, with states written behind or not, must publish the same decisions and leave
the same state bytes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.keys import Keys
from processor.adapters.redis_store import RedisStore
from processor.domain.codec import decode_state
from processor.domain.policy import PolicyBook
from processor.ports.detection_store import (
    CampaignAsk,
    CampaignRef,
    CampaignWrite,
    DetectionStore,
    InMemoryStore,
    OutboxMessage,
    StoredCampaign,
    TenantEscalation,
)
from processor.ports.records import RawRecord
from processor.services.detection import DetectionService
from processor.services.event_input import event_digest
from schemas.base import campaign_key
from schemas.topics import TopicRole
from tests.integration.conftest import event

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox


REF = CampaignRef("acme", "spring")
OTHER = CampaignRef("acme", "autumn")
DAY = 20_000
"""An event-time day number (days since the epoch)."""
HOUR_MS = 3_600_000
BOOK = PolicyBook()
NOW_MS = int(time.time() * 1000)


# --- stores ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def make_store(
    request: pytest.FixtureRequest, sandbox: Sandbox, redis: Redis
) -> Callable[[], DetectionStore]:
    """Makes empty stores of one kind; Redis ones each get their own key prefix in the sandbox."""
    kind: str = request.param
    serial = itertools.count()

    def make() -> DetectionStore:
        if kind == "memory":
            return InMemoryStore()
        return redis_store(redis, f"{sandbox.name}:s{next(serial)}")

    return make


@pytest.fixture
def store(make_store: Callable[[], DetectionStore]) -> DetectionStore:
    """An empty store (each kind in turn)."""
    return make_store()


def redis_store(client: Redis, prefix: str) -> RedisStore:
    """A RedisStore wired like `processor.cli.build_store`, with small TTLs."""
    return RedisStore(
        client,
        Keys(prefix),
        state_ttl_ms=600_000,
        paused_state_ttl_ms=1_200_000,
        seen_ttl_ms=1_200_000,
    )


def digest(n: int) -> bytes:
    """The dedup digest of event id `e<n>`."""
    return event_digest(f"e{n}")


def decision(n: int, ref: CampaignRef = REF) -> OutboxMessage:
    """A decided control message."""
    return OutboxMessage(
        TopicRole.CONTROL.value, campaign_key(ref.tenant_id, ref.campaign_id), f"[{n}]"
    )


def write(
    expected_version: int,
    blob: bytes,
    *,
    ref: CampaignRef = REF,
    digests: dict[int, list[bytes]] | None = None,
    outbox: Sequence[OutboxMessage] = (),
) -> CampaignWrite:
    """A compare-and-set write of a campaign."""
    return CampaignWrite(ref, expected_version, blob, dict(digests or {}), list(outbox))


async def load(
    store: DetectionStore, ref: CampaignRef = REF, digests: dict[int, list[bytes]] | None = None
) -> StoredCampaign:
    """Load one campaign, asking about `digests` by day."""
    (loaded,) = await store.load_campaigns([CampaignAsk(ref, dict(digests or {}))])
    return loaded


# --- campaign state --------------------------------------------------------------------------


async def test_an_unknown_campaign_loads_as_empty_at_version_zero(store: DetectionStore) -> None:
    """A campaign never written loads with no blob, version 0, no outbox and nothing seen."""
    loaded = await load(store, digests={DAY: [digest(1)]})
    assert (loaded.blob, loaded.version) == (None, 0)
    assert (loaded.outbox, loaded.seen) == ([], set())


async def test_a_write_at_the_current_version_succeeds_and_bumps_the_version(
    store: DetectionStore,
) -> None:
    """Writes at the current version succeed, each bumping the version by one."""
    assert await store.commit_campaigns([write(0, b"one")]) == [True]
    loaded = await load(store)
    assert (loaded.blob, loaded.version) == (b"one", 1)
    assert await store.commit_campaigns([write(1, b"two")]) == [True]
    loaded = await load(store)
    assert (loaded.blob, loaded.version) == (b"two", 2)


async def test_a_write_at_a_stale_version_conflicts_and_changes_nothing(
    store: DetectionStore,
) -> None:
    """A write at a stale version returns False and leaves blob, digests and outbox as they were."""
    first = write(0, b"one", digests={DAY: [digest(1)]}, outbox=[decision(1)])
    assert await store.commit_campaigns([first]) == [True]
    stale = write(0, b"other", digests={DAY: [digest(2)]}, outbox=[decision(2)])
    assert await store.commit_campaigns([stale]) == [False]

    loaded = await load(store, digests={DAY: [digest(1), digest(2)]})
    assert (loaded.blob, loaded.version) == (b"one", 1)
    assert loaded.seen == {digest(1)}
    assert (loaded.outbox, loaded.outbox_version) == ([decision(1)], 1)


async def test_each_write_of_a_batch_succeeds_or_conflicts_on_its_own(
    store: DetectionStore,
) -> None:
    """In one batch a conflicting write fails alone; the results come back in write order."""
    third = CampaignRef("acme", "winter")
    assert await store.commit_campaigns([write(0, b"other-1", ref=OTHER)]) == [True]
    batch = [
        write(0, b"spring-1", outbox=[decision(1)]),
        write(0, b"other-stale", ref=OTHER, outbox=[decision(2, OTHER)]),
        write(0, b"winter-1", ref=third),
    ]
    assert await store.commit_campaigns(batch) == [True, False, True]
    blobs = [(await load(store, ref)).blob for ref in (REF, OTHER, third)]
    assert blobs == [b"spring-1", b"other-1", b"winter-1"]


async def test_digests_written_are_reported_seen_on_the_next_load_per_day(
    store: DetectionStore,
) -> None:
    """Digests committed under a day are seen when asked under that day only, for that campaign."""
    digests = {DAY: [digest(1), digest(2)], DAY + 1: [digest(3)]}
    assert await store.commit_campaigns([write(0, b"s", digests=digests)]) == [True]

    asked = {DAY: [digest(1), digest(3), digest(4)]}
    assert (await load(store, digests=asked)).seen == {digest(1)}
    asked = {DAY + 1: [digest(1), digest(3)], DAY + 2: [digest(2)]}
    assert (await load(store, digests=asked)).seen == {digest(3)}
    assert (await load(store, OTHER, digests=digests)).seen == set()


async def test_thousands_of_digests_in_one_write_are_all_remembered(
    store: DetectionStore,
) -> None:
    """2500 digests of one day in one write (Redis adds them in slices) are all seen."""
    written = [digest(n) for n in range(2500)]
    assert await store.commit_campaigns([write(0, b"s", digests={DAY: written})]) == [True]
    unknown = [digest(n) for n in range(2500, 2510)]
    loaded = await load(store, digests={DAY: written + unknown})
    assert loaded.seen == set(written)


async def test_a_speculative_write_is_refused_if_a_digest_was_applied_before(
    store: DetectionStore,
) -> None:
    """A write folded without loading is refused when one of its digests is already stored.

    The same write, not speculative, is accepted: only a loaded fold has checked the digests.
    """
    assert await store.commit_campaigns([write(0, b"one", digests={DAY: [digest(1)]})]) == [True]
    repeat = write(1, b"two", digests={DAY: [digest(2), digest(1)]})
    repeat.speculative = True
    assert await store.commit_campaigns([repeat]) == [False]
    assert ((await load(store)).blob, (await load(store)).version) == (b"one", 1)

    fresh = write(1, b"two", digests={DAY + 1: [digest(1)], DAY: [digest(3)]})
    fresh.speculative = True
    assert await store.commit_campaigns([fresh]) == [True]
    loaded = await load(store, digests={DAY: [digest(2), digest(3)]})
    assert (loaded.blob, loaded.version, loaded.seen) == (b"two", 2, {digest(3)})


async def test_a_speculative_write_is_refused_while_an_outbox_awaits_delivery(
    store: DetectionStore,
) -> None:
    """A write folded without loading never passes an outbox it did not see."""
    assert await store.commit_campaigns([write(0, b"one", outbox=[decision(1)])]) == [True]
    blind = write(1, b"two")
    blind.speculative = True
    assert await store.commit_campaigns([blind]) == [False]
    await store.clear_outbox(REF, 1)
    assert await store.commit_campaigns([blind]) == [True]


async def test_a_speculative_write_at_a_stale_version_is_refused(store: DetectionStore) -> None:
    """The version check holds for speculative writes too."""
    assert await store.commit_campaigns([write(0, b"one")]) == [True]
    assert await store.commit_campaigns([write(1, b"other worker")]) == [True]
    stale = write(1, b"mine")
    stale.speculative = True
    assert await store.commit_campaigns([stale]) == [False]
    assert (await load(store)).blob == b"other worker"


# --- outbox ----------------------------------------------------------------------------------


async def test_an_outbox_is_loaded_until_cleared_at_its_version(store: DetectionStore) -> None:
    """An outbox written with the state is loaded, through later writes, until cleared."""
    assert await store.commit_campaigns([write(0, b"one", outbox=[decision(1)])]) == [True]
    assert await store.commit_campaigns([write(1, b"two")]) == [True]
    loaded = await load(store)
    assert (loaded.outbox, loaded.outbox_version) == ([decision(1)], 1)

    await store.clear_outbox(REF, 1)
    loaded = await load(store)
    assert loaded.outbox == []
    assert (loaded.blob, loaded.version) == (b"two", 2)


async def test_clearing_a_replaced_outbox_keeps_the_newer_one(store: DetectionStore) -> None:
    """clear_outbox at the version of an outbox already replaced leaves the newer outbox."""
    assert await store.commit_campaigns([write(0, b"one", outbox=[decision(1)])]) == [True]
    assert await store.commit_campaigns([write(1, b"two", outbox=[decision(2)])]) == [True]
    await store.clear_outbox(REF, 1)
    loaded = await load(store)
    assert (loaded.outbox, loaded.outbox_version) == ([decision(2)], 2)

    await store.clear_outbox(REF, 2)
    assert (await load(store)).outbox == []


async def test_campaigns_with_an_outbox_are_listed_until_cleared(store: DetectionStore) -> None:
    """campaigns_with_outbox lists a campaign written with an outbox until its outbox is cleared."""
    batch = [write(0, b"s", outbox=[decision(1)]), write(0, b"o", ref=OTHER)]
    assert await store.commit_campaigns(batch) == [True, True]
    assert await store.campaigns_with_outbox() == [REF]
    await store.clear_outbox(REF, 1)
    assert await store.campaigns_with_outbox() == []


async def test_an_outbox_is_listed_for_recovery_only_once_it_waited_the_given_time(
    store: DetectionStore,
) -> None:
    """A young outbox is being published by its writer: the sweep must not take it too."""
    assert await store.commit_campaigns([write(0, b"s", outbox=[decision(1)])]) == [True]
    assert await store.campaigns_with_outbox(60_000) == []
    await asyncio.sleep(0.05)
    assert await store.campaigns_with_outbox(20) == [REF]
    assert await store.campaigns_with_outbox() == [REF]


async def test_outboxes_indexed_by_an_older_release_are_listed_and_cleared(
    sandbox: Sandbox, redis: Redis
) -> None:
    """The recovery index was a set without times: its members count as old enough."""
    store = redis_store(redis, f"{sandbox.name}:legacy")
    assert await store.commit_campaigns([write(0, b"s", outbox=[decision(1)])]) == [True]
    keys = Keys(f"{sandbox.name}:legacy")
    await redis.delete(keys.outbox_index())
    await redis.sadd(keys.legacy_outbox_index(), campaign_key(REF.tenant_id, REF.campaign_id))

    assert await store.campaigns_with_outbox(60_000) == [REF]
    await store.clear_outbox(REF, 1)
    assert await store.campaigns_with_outbox() == []
    assert await redis.exists(keys.legacy_outbox_index()) == 0


@pytest.mark.parametrize(
    "make_store",
    [
        "memory",
        "redis",
    ],
    indirect=True,
)
async def test_a_stale_clear_leaves_the_campaign_listed_with_its_outbox(
    store: DetectionStore,
) -> None:
    """After a stale clear_outbox the newer, unpublished outbox is still listed for recovery."""
    assert await store.commit_campaigns([write(0, b"one", outbox=[decision(1)])]) == [True]
    assert await store.commit_campaigns([write(1, b"two", outbox=[decision(2)])]) == [True]
    await store.clear_outbox(REF, 1)
    assert (await load(store)).outbox == [decision(2)]
    assert await store.campaigns_with_outbox() == [REF]


# --- tenant escalation -----------------------------------------------------------------------


async def test_a_tenant_escalates_exactly_at_the_limit_of_campaign_pauses(
    store: DetectionStore,
) -> None:
    """The third campaign pause within the window escalates the tenant (episode 1), not before."""
    assert await store.record_campaign_pause("acme", "a#1", NOW_MS, 3, HOUR_MS) is None
    assert await store.record_campaign_pause("acme", "b#1", NOW_MS + 1, 3, HOUR_MS) is None
    assert not await store.tenant_paused("acme")

    escalation = await store.record_campaign_pause("acme", "c#1", NOW_MS + 2, 3, HOUR_MS)
    assert escalation is not None
    assert escalation.episode == 1
    assert sorted(escalation.campaigns) == ["a#1", "b#1", "c#1"]
    assert await store.tenant_paused("acme")
    assert not await store.tenant_paused("globex")


async def test_recording_the_same_campaign_pause_again_counts_it_once(
    store: DetectionStore,
) -> None:
    """A campaign pause recorded repeatedly is one pause towards the limit."""
    for attempt in range(3):
        assert (
            await store.record_campaign_pause("acme", "a#1", NOW_MS + attempt, 3, HOUR_MS) is None
        )
    assert await store.record_campaign_pause("acme", "b#1", NOW_MS + 5, 3, HOUR_MS) is None
    assert not await store.tenant_paused("acme")


async def test_pauses_older_than_the_window_do_not_count_towards_escalation(
    store: DetectionStore,
) -> None:
    """Campaign pauses more than within_ms before the newest one are forgotten."""
    within = 1000
    assert await store.record_campaign_pause("acme", "a#1", NOW_MS, 3, within) is None
    assert await store.record_campaign_pause("acme", "b#1", NOW_MS + 800, 3, within) is None
    # a#1 is now 1500 ms old: only b#1 and c#1 count.
    assert await store.record_campaign_pause("acme", "c#1", NOW_MS + 1500, 3, within) is None
    assert not await store.tenant_paused("acme")

    escalation = await store.record_campaign_pause("acme", "d#1", NOW_MS + 1700, 3, within)
    assert escalation is not None
    assert sorted(escalation.campaigns) == ["b#1", "c#1", "d#1"]


async def test_an_escalation_is_returned_again_until_confirmed_and_then_never(
    store: DetectionStore,
) -> None:
    """Until confirm_tenant_pause(episode), every record returns the same escalation; then None."""
    for n, member in enumerate(("a#1", "b#1")):
        await store.record_campaign_pause("acme", member, NOW_MS + n, 3, HOUR_MS)
    escalation = await store.record_campaign_pause("acme", "c#1", NOW_MS + 2, 3, HOUR_MS)
    assert escalation is not None

    again = await store.record_campaign_pause("acme", "d#1", NOW_MS + 3, 3, HOUR_MS)
    assert again == escalation
    assert await store.record_campaign_pause("acme", "c#1", NOW_MS + 2, 3, HOUR_MS) == escalation
    await store.confirm_tenant_pause("acme", escalation.episode + 1)
    assert await store.record_campaign_pause("acme", "e#1", NOW_MS + 4, 3, HOUR_MS) == escalation

    await store.confirm_tenant_pause("acme", escalation.episode)
    assert await store.record_campaign_pause("acme", "f#1", NOW_MS + 5, 3, HOUR_MS) is None
    assert await store.record_campaign_pause("acme", "c#1", NOW_MS + 2, 3, HOUR_MS) is None
    assert await store.tenant_paused("acme")


async def test_both_stores_name_an_escalations_campaigns_in_the_same_order(
    sandbox: Sandbox, redis: Redis
) -> None:
    """The same pauses escalate with the same campaigns, in the same order, on both stores."""
    escalations: list[TenantEscalation | None] = []
    for store in (InMemoryStore(), redis_store(redis, sandbox.name)):
        for n, member in enumerate(("zeta#1", "alpha#1")):
            await store.record_campaign_pause("acme", member, NOW_MS + n, 3, HOUR_MS)
        escalations.append(
            await store.record_campaign_pause("acme", "mid#1", NOW_MS + 2, 3, HOUR_MS)
        )
    assert escalations[0] is not None
    assert escalations[0] == escalations[1]


async def test_a_tenants_state_in_redis_expires_once_its_first_pause_is_recorded(
    sandbox: Sandbox, redis: Redis
) -> None:
    """The tenant state hash a first escalation creates gets the paused-state TTL, as its pauses."""
    store = redis_store(redis, sandbox.name)
    for n, member in enumerate(("a#1", "b#1", "c#1")):
        await store.record_campaign_pause("acme", member, NOW_MS + n, 3, HOUR_MS)
    assert await store.tenant_paused("acme")
    keys = Keys(sandbox.name)
    for key in (keys.tenant_state("acme"), keys.tenant_pauses("acme")):
        assert 0 < await redis.pttl(key) <= 1_200_000, key


# --- resume ----------------------------------------------------------------------------------


async def test_an_operator_lock_is_kept_until_lifted(store: DetectionStore) -> None:
    """A campaign lock reads back as set, only for its campaign, and is gone once lifted."""
    assert await store.campaign_lock(REF) is None
    await store.set_campaign_lock(REF, '{"by": "ops"}')
    assert await store.campaign_lock(REF) == '{"by": "ops"}'
    assert await store.campaign_lock(CampaignRef(REF.tenant_id, "other")) is None
    await store.set_campaign_lock(REF, None)
    assert await store.campaign_lock(REF) is None


async def test_saving_a_resumed_state_is_compare_and_set(store: DetectionStore) -> None:
    """save_resume writes only at the current version, and bumps it like a commit does."""
    assert await store.commit_campaigns([write(0, b"paused")]) == [True]
    assert not await store.save_resume(REF, b"rearmed", 0)
    assert (await load(store)).blob == b"paused"

    assert await store.save_resume(REF, b"rearmed", 1)
    loaded = await load(store)
    assert (loaded.blob, loaded.version) == (b"rearmed", 2)
    assert await store.commit_campaigns([write(1, b"late")]) == [False]
    assert await store.commit_campaigns([write(2, b"next")]) == [True]


# --- DetectionService on each store ----------------------------------------------------------

TOPIC = "events"
FIXED_NOW = datetime(2030, 1, 1, tzinfo=UTC)


class RecordingPublisher:
    """A Publisher that keeps what it was given."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Record the messages."""
        self.messages.extend(messages)


def recipient_events(
    tenant: str, campaign: str, count: int, *, at: float, bounce_every: int = 0
) -> list[dict[str, Any]]:
    """Per recipient a send then a delivery, or a hard bounce for every `bounce_every`-th."""
    events = []
    for i in range(count):
        common = {"tenant": tenant, "campaign": campaign, "contact": f"u{i}"}
        moment = at + i
        events.append(event(event_id=f"{campaign}-{i}-s", kind="sent", at=moment, **common))
        if bounce_every and i % bounce_every == bounce_every - 1:
            body = event(
                event_id=f"{campaign}-{i}-b",
                kind="bounce",
                bounce_class="hard",
                at=moment,
                **common,
            )
        else:
            body = event(event_id=f"{campaign}-{i}-d", kind="delivered", at=moment, **common)
        events.append(body)
    return events


def to_records(bodies: Sequence[tuple[int, dict[str, Any] | bytes]]) -> list[RawRecord]:
    """Kafka records of (partition, event or raw bytes), offsets counted per partition."""
    offsets: dict[int, int] = {}
    records = []
    for partition, body in bodies:
        offset = offsets.get(partition, 0)
        offsets[partition] = offset + 1
        if isinstance(body, bytes):
            key, value = None, body
        else:
            key = f"{body['tenant_id']}:{body['campaign_id']}".encode()
            value = json.dumps(body).encode()
        records.append(RawRecord(TOPIC, partition, offset, key, value, NOW_MS + 60_000))
    return records


def whole(records: list[RawRecord]) -> list[list[RawRecord]]:
    """One batch of everything."""
    return [records]


def small(records: list[RawRecord]) -> list[list[RawRecord]]:
    """Batches of 7 records."""
    return [records[i : i + 7] for i in range(0, len(records), 7)]


def crashing(records: list[RawRecord]) -> list[list[RawRecord]]:
    """Random batches; now and then a 'crash' replays everything since the last 'commit'."""
    rng = random.Random(11)  # noqa: S311  # reproducible batch boundaries, not cryptography
    batches, position, committed = [], 0, 0
    while position < len(records):
        end = min(len(records), position + rng.randint(1, 60))
        batches.append(records[position:end])
        position = end
        if rng.random() < 0.3:
            committed = position
        elif rng.random() < 0.3:
            position = committed
    return batches


SPLITS: dict[str, Callable[[list[RawRecord]], list[list[RawRecord]]]] = {
    "whole": whole,
    "small": small,
    "crashing": crashing,
    "two-workers": crashing,
    "uncached": crashing,
}
"""How the records are cut into batches. "two-workers" hands runs of batches to two services
on one store in turn (a partition moving back and forth between workers, each with states
cached from before); "uncached" keeps no decoded state between batches."""


async def run_splits(
    make_store: Callable[[], DetectionStore], records: list[RawRecord], refs: list[CampaignRef]
) -> dict[str, tuple[list[OutboxMessage], list[bytes | None]]]:
    """Apply the records in each split on a fresh store: what was published, and final blobs."""
    outcomes = {}
    for name, split in SPLITS.items():
        store, publisher = make_store(), RecordingPublisher()
        services = [
            DetectionService(
                store,
                publisher,
                lambda: BOOK,
                wall_clock=lambda: FIXED_NOW,
                publish_periodic_health=False,
                state_cache_campaigns=0 if name == "uncached" else 10_000,
            )
            for _ in range(2 if name == "two-workers" else 1)
        ]
        for index, batch in enumerate(split(records)):
            await services[(index // 3) % len(services)].apply(batch)
        loaded = await store.load_campaigns([CampaignAsk(ref) for ref in refs])
        outcomes[name] = (publisher.messages, [c.blob for c in loaded])
    for name, workers in (("write-behind", 1), ("write-behind-two-workers", 2)):
        outcomes[name] = await run_write_behind(make_store(), records, refs, workers)
    return outcomes


class SteppedClock:
    """A monotonic clock that moves only when told: held states come due by batches."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


async def run_write_behind(
    store: DetectionStore, records: list[RawRecord], refs: list[CampaignRef], workers: int
) -> tuple[list[OutboxMessage], list[bytes | None]]:
    """Random batches on services that hold states back (write-behind), as Kafka hands them.

    A batch is committed once it and every batch before it landed. A crash loses what the
    worker held and re-reads from the last commit; so does a handover of the partitions to
    the other worker (which may hold states from its own earlier turn).
    """
    rng = random.Random(13)  # noqa: S311  # reproducible batches and crashes, not cryptography
    publisher, clock = RecordingPublisher(), SteppedClock()

    def worker() -> DetectionService:
        return DetectionService(
            store,
            publisher,
            lambda: BOOK,
            wall_clock=lambda: FIXED_NOW,
            monotonic=clock,
            publish_periodic_health=False,
            state_write_behind_s=0.2,
        )

    services = [worker() for _ in range(workers)]
    active, position, committed = 0, 0, 0
    landing: list[tuple[int, asyncio.Future[None] | None]] = []
    while position < len(records):
        end = min(len(records), position + rng.randint(1, 60))
        report = await services[active].apply(records[position:end])
        landing.append((end, report.landing))
        position = end
        clock.now += 0.05
        await asyncio.sleep(0)  # lets what landed say so (done callbacks run on the loop)
        while landing and (landing[0][1] is None or landing[0][1].done()):
            committed = landing.pop(0)[0]
        roll = rng.random()
        if roll < 0.16:
            landing.clear()
            position = committed
            if roll < 0.08 or workers == 1:
                services[active] = worker()  # crashed: what it held is gone
            else:
                active = (active + 1) % workers
    for service in services:
        await service.write_held_states()
    loaded = await store.load_campaigns([CampaignAsk(ref) for ref in refs])
    return publisher.messages, [c.blob for c in loaded]


def decisions(messages: list[OutboxMessage]) -> list[OutboxMessage]:
    """Control messages and status-change snapshots, in a batch-independent order."""
    kept = [m for m in messages if m.role in {TopicRole.CONTROL.value, TopicRole.HEALTH.value}]
    return sorted(kept, key=lambda m: (m.role, m.key, m.value))


async def test_any_batch_split_with_replays_and_redeliveries_decides_and_stores_the_same(
    make_store: Callable[[], DetectionStore],
) -> None:
    """One batch, batches of 7, or random batches with replays publish and store the same."""
    rng = random.Random(5)  # noqa: S311  # a reproducible stream, not cryptography
    start = NOW_MS / 1000 - 3600
    bad = recipient_events("t1", "bad", 260, at=start, bounce_every=10)
    fine = recipient_events("t2", "fine", 260, at=start, bounce_every=100)
    complained = recipient_events("t3", "loud", 1100, at=start)
    complained += [
        event(
            event_id=f"loud-{i}-c",
            tenant="t3",
            campaign="loud",
            kind="complaint",
            at=start + 1200 + i,
            contact=f"u{i}",
        )
        for i in range(12)
    ]
    streams = {0: bad, 1: fine, 2: complained}
    bodies: list[tuple[int, dict[str, Any] | bytes]] = []
    copies = {"bad": 0, "fine": 0, "loud": 0}
    cursors = dict.fromkeys(streams, 0)
    while any(cursors[p] < len(s) for p, s in streams.items()):
        partition = rng.choice([p for p, s in streams.items() if cursors[p] < len(s)])
        body = streams[partition][cursors[partition]]
        cursors[partition] += 1
        bodies.append((partition, body))
        if rng.random() < 0.05:  # a redelivered copy: same event id, a later offset
            bodies.append((partition, body))
            copies[body["campaign_id"]] += 1
        if rng.random() < 0.002:
            bodies.append((partition, b"{not json"))
    records = to_records(bodies)
    refs = [CampaignRef("t1", "bad"), CampaignRef("t2", "fine"), CampaignRef("t3", "loud")]

    outcomes = await run_splits(make_store, records, refs)

    reference_messages, reference_blobs = outcomes["whole"]
    paused = {m.key for m in reference_messages if m.role == TopicRole.CONTROL.value}
    assert paused == {"t1:bad", "t3:loud"}
    assert len(outcomes) == len(SPLITS) + 2
    for name in outcomes.keys() - {"whole"}:
        messages, blobs = outcomes[name]
        assert decisions(messages) == decisions(reference_messages), name
        assert blobs == reference_blobs, name
    for ref, blob in zip(refs, reference_blobs, strict=True):
        assert blob is not None
        assert decode_state(blob, BOOK.windows).duplicates == copies[ref.campaign_id]


async def test_tenant_escalation_does_not_depend_on_batch_boundaries(
    make_store: Callable[[], DetectionStore],
) -> None:
    """The tenant pause names the first three campaign pauses in event order, in any batch split."""
    start = NOW_MS / 1000 - 3600
    # `d` shows up first but pauses last; `a`, `b` and `c` pause in that order before it.
    d = recipient_events("acme", "d", 220, at=start + 3000, bounce_every=10)
    a, b, c = (
        recipient_events("acme", name, 220, at=start + n * 500, bounce_every=10)
        for n, name in enumerate("abc")
    )
    records = to_records([(0, body) for body in d[:4] + a + b + c + d[4:]])
    refs = [CampaignRef("acme", name) for name in "abcd"]

    outcomes = await run_splits(make_store, records, refs)

    tenant_pauses = {
        name: [m for m in messages if m.key == "acme:*"] for name, (messages, _) in outcomes.items()
    }
    assert len(tenant_pauses["small"]) == 1
    command = json.loads(tenant_pauses["small"][0].value)
    assert command["paused_campaigns"] == ["a", "b", "c"]
    for name in outcomes.keys() - {"small"}:
        assert tenant_pauses[name] == tenant_pauses["small"], name


async def test_a_campaign_this_worker_wrote_last_is_not_loaded_unless_a_duplicate_comes(
    store: DetectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next batch of a campaign folds the cached state with no load; a redelivery reloads.

    The redelivered copy (same event id, later offset) is still counted once, as a duplicate.
    """
    loads: list[list[CampaignRef]] = []
    real_load = store.load_campaigns

    async def counting(asks: list[CampaignAsk]) -> list[StoredCampaign]:
        loads.append([ask.ref for ask in asks])
        return await real_load(asks)

    monkeypatch.setattr(store, "load_campaigns", counting)
    service = DetectionService(
        store, RecordingPublisher(), lambda: BOOK, publish_periodic_health=False
    )
    bodies = recipient_events("acme", "spring", 30, at=NOW_MS / 1000 - 600)
    records = to_records([(0, body) for body in [*bodies, bodies[3]]])

    await service.apply(records[:20])
    await service.apply(records[20:40])
    assert loads == [[REF]]  # the first batch only

    report = await service.apply(records[40:])
    assert loads == [[REF], [REF]]  # refused speculatively, loaded, folded again
    assert (report.applied, report.duplicates) == (20, 1)
    (loaded,) = await store.load_campaigns([CampaignAsk(REF)])
    assert loaded.blob is not None
    state = decode_state(loaded.blob, BOOK.windows)
    assert state.duplicates == 1
