"""The worker skeleton on the real broker and Redis: events reach it, bad input is dead-lettered."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from typing import TYPE_CHECKING

from tests.integration.conftest import event, produce, read_topic, run_cli, until

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox, WorkerProcess


async def test_an_event_reaches_the_worker_and_a_malformed_one_is_dead_lettered(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """A valid event updates the campaign's state in Redis; malformed ones are dead-lettered.

    The state is written once the write-behind has held it its time. Each dead letter carries
    its reason, its origin and its original bytes.
    """
    await worker.start()
    topic = sandbox.topic("delivery-events")
    now = time.time()
    good = event(event_id="e1", tenant="acme", campaign="c1", kind="sent", at=now, contact="u1")
    await produce(producer, topic, [good])
    await producer.send_and_wait(topic, value=b"{not json", key=b"acme:c1")
    await producer.send_and_wait(
        topic, value=json.dumps({**good, "event_id": "e2", "type": "exploded"}).encode(), key=b"x"
    )

    letters = await read_topic(sandbox, sandbox.topic("dead-letter"), until=lambda m: len(m) >= 2)
    # Keyed differently, the two land on different partitions: their order is not defined.
    by_type = {m["error_type"]: m for m in letters}
    assert sorted(by_type) == ["invalid_event", "invalid_json"]
    assert base64.b64decode(by_type["invalid_json"]["original"]) == b"{not json"
    assert by_type["invalid_json"]["source_topic"] == topic
    assert by_type["invalid_json"]["source_offset"] is not None
    assert "type" in by_type["invalid_event"]["error"]
    state_key = f"{sandbox.name}:{{c:acme:c1}}:state"

    async def state_written() -> bool:
        return await redis.hget(state_key, "v") == b"1"

    await until(state_written, timeout_s=5)


def test_help_lists_the_commands(sandbox: Sandbox) -> None:
    """`sendguard --help` names the worker and the schema export."""
    result = run_cli(sandbox, "--help")
    assert result.returncode == 0
    assert "worker" in result.stdout
    assert "schemas" in result.stdout


def test_a_bad_setting_stops_the_worker_with_the_variable_named(sandbox: Sandbox) -> None:
    """An invalid Redis URL fails at start with a message naming SENDGUARD_REDIS_URL."""
    sandbox.extra_env["SENDGUARD_REDIS_URL"] = "http://nope"
    result = run_cli(sandbox, "worker", timeout_s=30)
    assert result.returncode == 2
    assert "SENDGUARD_REDIS_URL" in result.stderr


def test_an_unknown_worker_role_is_refused_with_the_variable_named(sandbox: Sandbox) -> None:
    """SENDGUARD_WORKER_ROLES with an unknown role fails at start, naming the roles it takes."""
    sandbox.extra_env["SENDGUARD_WORKER_ROLES"] = "detect,contacts"
    result = run_cli(sandbox, "worker", timeout_s=30)
    assert result.returncode == 2
    assert "SENDGUARD_WORKER_ROLES (1): Input should be 'detect' or 'resume'" in result.stderr


async def test_sigterm_mid_stream_finishes_the_batch_in_flight_without_dead_letters(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """Stopping while batches are applied publishes their decisions before Kafka is closed.

    Each new campaign's first health snapshot is published with its batch, so a stop that
    closed the producer under a batch in flight used to turn valid records into dead letters.
    """
    await worker.start()
    topic = sandbox.topic("delivery-events")

    async def stream() -> None:
        for wave in range(10_000):
            now = time.time()
            await produce(
                producer,
                topic,
                [
                    event(
                        event_id=f"e{wave}-{c}",
                        tenant="acme",
                        campaign=f"c{wave}-{c}",
                        kind="sent",
                        at=now,
                        contact=f"u{c}",
                    )
                    for c in range(200)
                ],
            )

    streaming = asyncio.create_task(stream())
    try:
        await read_topic(sandbox, sandbox.topic("health"), until=lambda m: len(m) >= 1000)
        code = await worker.stop()  # while the stream goes on, so a batch is in flight
    finally:
        streaming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await streaming

    assert code == 0
    log = worker.log_text()
    # The race itself is rare; the order that rules it out is not.
    assert "batch consumer stopped" in log
    assert log.index("batch consumer stopped") < log.index("Producer]: Stopping")
    assert "dead-lettered" not in log
    assert "Producer service not yet started" not in log
    letters = await read_topic(sandbox, sandbox.topic("dead-letter"), until=bool, timeout_s=3)
    assert letters == []
