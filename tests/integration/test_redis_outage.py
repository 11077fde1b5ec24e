"""A Redis outage, short or long, on the real broker: no count is lost, no pause doubled.

Redis is reached through a proxy the test takes down (the shared Redis itself stays up).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import pytest

from processor.services.outbox import deterministic_id
from tests.integration.conftest import WorkerProcess, produce
from tests.integration.redis_proxy import RedisProxy
from tests.integration.test_detection import bad_list, is_paused, read_all, wait_settled
from tests.integration.test_state_lost import (
    CROSSES_AFTER,
    HEALTHY,
    PAUSED_BEFORE,
    TENANT,
    clean,
    recount,
    windows_hold,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox

RETRY_BUDGET_S = 5
"""About how long the worker's Redis client retries with backoff before giving up."""


async def exited(worker: WorkerProcess, timeout_s: float) -> int | None:
    """The worker's exit status once it exits, None if it still runs at the deadline."""
    assert worker.process is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = worker.process.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.1)
    return None


@pytest.mark.parametrize(
    "outage_s", [2, 3 * RETRY_BUDGET_S], ids=["within the retries", "beyond them"]
)
async def test_a_redis_outage_of_any_length_loses_no_count(
    sandbox: Sandbox, producer: AIOKafkaProducer, redis: Redis, outage_s: float
) -> None:
    """Events that arrive while Redis is down are counted once it is back, exactly.

    A short outage is ridden out by the retries; a long one stops the worker (non-zero exit,
    CRITICAL line, nothing committed) and its restart, as a supervisor does, reads the rest.
    The campaign that crosses during the outage is paused once; Redis kept its data, so no
    loss is announced.
    """
    proxy = RedisProxy(sandbox.stack["SENDGUARD_REDIS_URL"])
    await proxy.up()
    worker = WorkerProcess(sandbox, env={"SENDGUARD_REDIS_URL": proxy.url})
    topic = sandbox.topic("delivery-events")
    now = time.time()
    try:
        await worker.start()
        before = bad_list(TENANT, PAUSED_BEFORE, range(250), now - 120)
        before += clean(HEALTHY, range(300), now - 120)
        await produce(producer, topic, before)
        for campaign, expected in recount(before).items():
            await wait_settled(redis, sandbox, TENANT, campaign, windows_hold(expected))

        await proxy.down()
        during = bad_list(TENANT, CROSSES_AFTER, range(250), now - 60)
        during += clean(HEALTHY, range(300, 400), now - 60)
        await produce(producer, topic, during)
        code = await exited(worker, outage_s)
        await proxy.up()
        if outage_s > RETRY_BUDGET_S:
            assert code not in {None, 0}
            assert "state or broker unavailable" in worker.log_text()
            await worker.start()
        else:
            assert code is None

        counts = recount(await read_all(sandbox, topic))
        states = {
            campaign: await wait_settled(redis, sandbox, TENANT, campaign, windows_hold(expected))
            for campaign, expected in counts.items()
        }
    finally:
        await worker.stop()
        await proxy.down()
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
    assert not [m for m in health if m.get("kind") == "state_lost"]
