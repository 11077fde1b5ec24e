"""Two worker processes share the delivery events: handovers count nothing twice, pause once.

Partitions are the unit of scale. A second worker joining mid-stream, and the first one
leaving, move partitions while batches are in flight and their commits trail them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import pytest

from processor.domain.codec import decode_state
from processor.domain.policy import PolicyBook
from processor.domain.windows import Counter
from tests.integration.conftest import WorkerProcess, event, produce, read_topic, until

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox

BAD = [f"bad{n}" for n in range(4)]
HEALTHY = [f"ok{n}" for n in range(4)]
CONTACTS_PER_WAVE = 20
"""Each wave sends to 20 contacts per campaign; every bad campaign also gets 4 hard bounces."""
TAIL_WAVES = 5
"""Waves produced after the first worker left."""


def _wave(wave: int, now: float) -> list[dict[str, Any]]:
    events = []
    for campaign in BAD + HEALTHY:
        for n in range(CONTACTS_PER_WAVE):
            contact = f"u{wave * CONTACTS_PER_WAVE + n}"
            events.append(_event(campaign, "sent", contact, now))
            if campaign in BAD and n % 5 == 0:
                events.append(_event(campaign, "bounce", contact, now + 0.5, bounce_class="hard"))
    return events


def _event(campaign: str, kind: str, contact: str, at: float, **extra: str) -> dict[str, Any]:
    return event(
        event_id=f"{campaign}-{contact}-{kind}",
        tenant="acme",
        campaign=campaign,
        kind=kind,
        at=at,
        contact=contact,
        **extra,
    )


def _worker(sandbox: Sandbox, name: str) -> WorkerProcess:
    return WorkerProcess(
        sandbox,
        name=name,
        env={
            "SENDGUARD_WORKER_ROLES": "detect",
            "SENDGUARD_KAFKA_GROUP_INSTANCE_ID": f"{sandbox.name}-{name}",
            "SENDGUARD_BATCH_MAX_EVENTS": "50",  # many batches, so handovers fall mid-stream
        },
    )


async def _sent_counts(redis: Redis, sandbox: Sandbox) -> dict[str, int]:
    windows = PolicyBook().windows
    counts = {}
    for campaign in BAD + HEALTHY:
        blob = await redis.hget(f"{sandbox.name}:{{c:acme:{campaign}}}:state", "s")
        state = decode_state(blob, windows) if isinstance(blob, bytes) else None
        counts[campaign] = state.windows.window("lifetime")[Counter.SENT] if state else 0
    return counts


@pytest.mark.parametrize("leaving", [signal.SIGTERM, signal.SIGKILL], ids=["stops", "crashes"])
async def test_a_second_worker_joining_and_the_first_leaving_lose_and_double_nothing(
    sandbox: Sandbox, producer: AIOKafkaProducer, redis: Redis, leaving: signal.Signals
) -> None:
    """Every send counted exactly once, one pause per bad campaign (and the tenant), none else.

    Before, a commit trailing its batch named a partition that had just moved to the joining
    worker, and aiokafka's refusal stopped the first worker. A first worker that crashes may
    have published a pause it had no time to forget: the second publishes it again, with the
    same command id (at-least-once), but never decides a second one.
    """
    first, second = _worker(sandbox, "w1"), _worker(sandbox, "w2")
    topic = sandbox.topic("delivery-events")
    waves = 0
    last_wave: int | None = None

    async def stream() -> None:
        nonlocal waves
        while last_wave is None or waves < last_wave:
            await produce(producer, topic, _wave(waves, time.time()))
            waves += 1
            await asyncio.sleep(0.05)

    try:
        await first.start()
        streaming = asyncio.create_task(stream())
        try:
            await second.start()  # joins while the first applies batches
            code = await first.stop(leaving)  # leaves while the stream goes on
            assert code == (0 if leaving == signal.SIGTERM else -signal.SIGKILL)
            last_wave = waves + TAIL_WAVES
            await streaming
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming

        expected = dict.fromkeys(BAD + HEALTHY, waves * CONTACTS_PER_WAVE)

        async def all_counted() -> bool:
            return await _sent_counts(redis, sandbox) == expected

        await until(all_counted, timeout_s=60)
    finally:
        await second.stop()
        await first.stop()

    pauses: dict[str, list[str]] = defaultdict(list)
    for message in await read_topic(
        sandbox, sandbox.topic("control"), until=lambda m: len(m) > len(BAD) + 1, timeout_s=3
    ):
        if message["command"] == "pause":
            pauses[message["_key"]].append(message["command_id"])
    # Three campaign pauses within a day escalate to the tenant (the default policy): one more.
    expected_pauses = {f"acme:{c}": 1 for c in BAD} | {"acme:*": 1}
    assert {key: len(set(ids)) for key, ids in pauses.items()} == expected_pauses
    if leaving == signal.SIGTERM:
        assert {key: len(ids) for key, ids in pauses.items()} == expected_pauses
    assert await read_topic(sandbox, sandbox.topic("dead-letter"), until=bool, timeout_s=2) == []
    for worker in (first, second):
        assert "consumption stopped" not in worker.log_text()
