"""Redis restarted empty, on the real broker and Redis: the loss is announced and rebuilt.

Only this test's keys are deleted (its sandbox prefix), never the shared Redis as a whole.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from processor.adapters.keys import Keys
from processor.services.outbox import deterministic_id
from schemas.health import CampaignStatus
from tests.integration.conftest import produce, read_topic
from tests.integration.test_detection import (
    Recipient,
    bad_list,
    distinct_counts,
    is_paused,
    read_all,
    wait_settled,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from processor.domain.campaign_state import CampaignState
    from tests.integration.conftest import Sandbox, WorkerProcess
    from tests.integration.test_detection import Message

TENANT = "acme"
PAUSED_BEFORE = "spring"
"""A bad list paused before Redis is emptied."""
CROSSES_AFTER = "summer"
"""Clean at first; its bad part arrives while Redis is empty."""
HEALTHY = "news"


def clean(campaign: str, recipients: range, at: float) -> list[Message]:
    """A send and a delivery per recipient."""
    events = []
    for i in recipients:
        who = Recipient(TENANT, campaign, f"u{i}")
        events += [who.event("sent", at + i / 1000), who.event("delivered", at + i / 1000)]
    return events


async def delete_sandbox_keys(redis: Redis, sandbox: Sandbox) -> int:
    """Delete every key of this sandbox (what an emptied Redis means to this test's worker)."""
    keys = [key async for key in redis.scan_iter(match=f"{sandbox.name}:*", count=1000)]
    for start in range(0, len(keys), 1000):
        await redis.unlink(*keys[start : start + 1000])
    return len(keys)


def recount(topic_messages: list[Message]) -> dict[str, list[int]]:
    """Brute force: per campaign, one count per distinct event id on the topic, by counter."""
    by_campaign: dict[str, list[Message]] = defaultdict(list)
    for message in topic_messages:
        by_campaign[message["campaign_id"]].append(message)
    return {campaign: distinct_counts(events) for campaign, events in by_campaign.items()}


def windows_hold(expected: list[int]) -> Callable[[CampaignState], bool]:
    """Every window (the events are all minutes old) and the lifetime hold `expected`."""

    def holds(state: CampaignState) -> bool:
        windows = state.windows
        sliding = [windows.window(w.spec.name) for w in windows.windows]
        return windows.lifetime == expected and all(
            list(counts) == expected[: len(counts)] for counts in sliding
        )

    return holds


def critical_lines(log_text: str) -> list[dict[str, object]]:
    """The worker's CRITICAL log lines, parsed."""
    return [
        json.loads(line)
        for line in log_text.splitlines()
        if line.startswith("{") and '"critical"' in line
    ]


async def test_redis_emptied_is_announced_and_windows_pauses_are_rebuilt(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """After its keys vanish, a restarted worker says so and rebuilds what Redis held.

    CRITICAL log, one StateLost on the health topic, windows equal to a recount of the topic,
    the campaign paused before still paused without a pause of a new id, and the campaign whose
    bad part came in while Redis was empty paused exactly once.
    """
    topic = sandbox.topic("delivery-events")
    now = time.time()
    await worker.start()
    before = bad_list(TENANT, PAUSED_BEFORE, range(250), now - 120)
    before += clean(CROSSES_AFTER, range(1000, 1020), now - 120)
    before += clean(HEALTHY, range(300), now - 120)
    await produce(producer, topic, before)
    counts = recount(before)
    for campaign, expected in counts.items():
        await wait_settled(redis, sandbox, TENANT, campaign, windows_hold(expected))
    assert await redis.hget(Keys(sandbox.name).state_epoch(), "id") is not None
    assert await worker.stop() == 0  # its offsets are committed

    assert await delete_sandbox_keys(redis, sandbox) > 0
    after = bad_list(TENANT, CROSSES_AFTER, range(250), now - 60)
    after += clean(HEALTHY, range(300, 400), now - 60)
    await produce(producer, topic, after)
    await worker.start()

    lost = await read_topic(
        sandbox,
        sandbox.topic("health"),
        until=lambda ms: any(m.get("kind") == "state_lost" for m in ms),
    )
    announced = [m for m in lost if m.get("kind") == "state_lost"]
    assert len(announced) == 1
    assert announced[0]["_key"] == "*:state-lost"
    counts = recount(await read_all(sandbox, topic))
    assert set(counts) == {PAUSED_BEFORE, CROSSES_AFTER, HEALTHY}
    states = {
        campaign: await wait_settled(redis, sandbox, TENANT, campaign, windows_hold(expected))
        for campaign, expected in counts.items()
    }
    assert is_paused(states[PAUSED_BEFORE])
    assert is_paused(states[CROSSES_AFTER])
    assert states[HEALTHY].status is CampaignStatus.HEALTHY
    assert all(state.duplicates == 0 for state in states.values())

    control = await read_all(sandbox, sandbox.topic("control"))
    ids: dict[str, list[str]] = defaultdict(list)
    for message in control:
        ids[message["campaign_id"]].append(message["command_id"])
    # The rebuild decides the earlier pause again: same episode, same id (consumers drop it).
    assert set(ids[PAUSED_BEFORE]) == {deterministic_id("pause", TENANT, PAUSED_BEFORE, 1)}
    assert ids[CROSSES_AFTER] == [deterministic_id("pause", TENANT, CROSSES_AFTER, 1)]
    assert HEALTHY not in ids

    critical = critical_lines(worker.log_text())
    assert any(
        str(line["message"]).startswith("Redis lost the detection state") for line in critical
    )
    epoch = await redis.hgetall(Keys(sandbox.name).state_epoch())
    assert epoch[b"id"] == announced[0]["message_id"].encode()
    assert {f"rebuilt:{p}".encode() for p in range(4)} <= set(epoch)


async def test_redis_emptied_under_a_running_worker_stops_it_and_its_restart_rebuilds(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """A worker whose keys vanish while it runs stops at its next write or check.

    What it wrote into the emptied Redis before it noticed (states of the old epoch, their
    offsets and digests) must not make the rebuild skip an event: after the restart (as a
    supervisor would) the windows equal a recount of the topic.
    """
    topic = sandbox.topic("delivery-events")
    now = time.time()
    await worker.start()
    before = bad_list(TENANT, PAUSED_BEFORE, range(250), now - 120)
    before += clean(HEALTHY, range(300), now - 120)
    await produce(producer, topic, before)
    for campaign, expected in recount(before).items():
        await wait_settled(redis, sandbox, TENANT, campaign, windows_hold(expected))

    await delete_sandbox_keys(redis, sandbox)
    await produce(producer, topic, clean(HEALTHY, range(300, 350), now - 60))
    assert worker.process is not None
    deadline = time.monotonic() + 30
    while worker.process.poll() is None:
        assert time.monotonic() < deadline, "the worker never noticed"
        await asyncio.sleep(0.1)
    assert worker.process.returncode != 0
    assert "StateLostError" in worker.log_text()

    await produce(producer, topic, bad_list(TENANT, CROSSES_AFTER, range(250), now - 60))
    await worker.start()
    counts = recount(await read_all(sandbox, topic))
    states = {
        campaign: await wait_settled(redis, sandbox, TENANT, campaign, windows_hold(expected))
        for campaign, expected in counts.items()
    }
    assert is_paused(states[PAUSED_BEFORE])
    assert is_paused(states[CROSSES_AFTER])
    ids: dict[str, set[str]] = defaultdict(set)
    for message in await read_all(sandbox, sandbox.topic("control")):
        ids[message["campaign_id"]].add(message["command_id"])
    assert ids == {
        PAUSED_BEFORE: {deterministic_id("pause", TENANT, PAUSED_BEFORE, 1)},
        CROSSES_AFTER: {deterministic_id("pause", TENANT, CROSSES_AFTER, 1)},
    }
    health = await read_all(sandbox, sandbox.topic("health"))
    assert len([m for m in health if m.get("kind") == "state_lost"]) == 1
