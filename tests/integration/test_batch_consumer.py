"""BatchConsumer on the real broker: a stop waits for the batch in flight and commits it."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from processor.adapters.batch_consumer import MAX_BATCHES_LANDING, BatchConsumer, WriteHeld
from processor.adapters.kafka import declare_topics
from processor.config.settings import Settings
from processor.errors import StoreUnavailableError
from schemas.topics import TopicRole
from tests.integration.conftest import until

if TYPE_CHECKING:
    from collections.abc import Sequence

    from aiokafka import AIOKafkaProducer

    from processor.ports.records import RawRecord
    from tests.integration.conftest import Sandbox


def _settings(sandbox: Sandbox) -> Settings:
    return Settings(
        kafka_bootstrap_servers=sandbox.bootstrap,
        redis_url=SecretStr(sandbox.stack["SENDGUARD_REDIS_URL"]),
        topic_prefix=f"{sandbox.name}.",
        redis_key_prefix=sandbox.name,
        app_id=sandbox.name,
        topic_partitions=1,
        kafka_session_timeout_s=6,
        batch_max_wait_ms=20,
    )


async def _committed(sandbox: Sandbox, group: str, tp: TopicPartition) -> int | None:
    probe = AIOKafkaConsumer(bootstrap_servers=sandbox.bootstrap, group_id=group)
    await probe.start()
    try:
        committed: int | None = await probe.committed(tp)
        return committed
    finally:
        await probe.stop()


class HeldBatches:
    """A `handle` that holds each batch until released, then records its values (or fails)."""

    def __init__(self, *, fail: bool = False) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.handled: list[str] = []
        self.fail = fail

    async def __call__(self, records: Sequence[RawRecord]) -> None:
        """Hold the batch, then record or fail it."""
        self.entered.set()
        await self.release.wait()
        if self.fail:
            message = "Kafka producer is not running"
            raise RuntimeError(message)
        self.handled.extend((r.value or b"").decode() for r in records)


async def _stop_mid_batch(consumer: BatchConsumer, held: HeldBatches, hold_s: float) -> bool:
    """Start, stop while a batch is held, release it `hold_s` later; had stop() returned?"""
    await consumer.start()
    await asyncio.wait_for(held.entered.wait(), timeout=30)
    stopping = asyncio.create_task(consumer.stop())
    await asyncio.sleep(hold_s)
    returned_early = stopping.done()
    held.release.set()
    await asyncio.wait_for(stopping, timeout=30)
    return returned_early


async def test_stop_during_a_batch_returns_only_after_the_batch_finished_and_was_committed(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """stop() called while `handle` runs waits for it; the batch's offsets are committed.

    Before, shield() let stop() return under the batch, and the app then closed the Kafka
    producer the batch was still publishing with.
    """
    settings = _settings(sandbox)
    await declare_topics(settings)
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    for n in range(5):
        await producer.send_and_wait(topic, value=f"v{n}".encode(), key=b"k")
    held = HeldBatches()
    consumer = BatchConsumer(settings, topic, "test", held)

    returned_early = await _stop_mid_batch(consumer, held, 0.3)

    assert not returned_early, "stop() returned while the batch was still being applied"
    assert held.handled == [f"v{n}" for n in range(5)]
    assert consumer.failed is None
    assert await _committed(sandbox, consumer.group_id, TopicPartition(topic, 0)) == 5


async def test_a_batch_that_fails_during_the_stop_is_not_committed(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """If the batch in flight fails while stopping, its offsets stay uncommitted (re-read)."""
    settings = _settings(sandbox)
    await declare_topics(settings)
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    await producer.send_and_wait(topic, value=b"v", key=b"k")
    held = HeldBatches(fail=True)
    consumer = BatchConsumer(settings, topic, "test", held)

    await _stop_mid_batch(consumer, held, 0.1)

    assert await _committed(sandbox, consumer.group_id, TopicPartition(topic, 0)) is None


class Landed:
    """What a handle returns when its batch's writes go on after it returned."""

    def __init__(self, landing: asyncio.Future[None]) -> None:
        self.landing = landing


async def _consume_three_landing_on(
    sandbox: Sandbox,
    producer: AIOKafkaProducer,
    landing: asyncio.Future[None],
    write_held: WriteHeld | None = None,
) -> tuple[BatchConsumer, TopicPartition, list[RawRecord]]:
    settings = _settings(sandbox)
    await declare_topics(settings)
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    for n in range(3):
        await producer.send_and_wait(topic, value=f"v{n}".encode(), key=b"k")
    handled: list[RawRecord] = []

    async def handle(records: Sequence[RawRecord]) -> Landed:
        handled.extend(records)
        return Landed(landing)

    consumer = BatchConsumer(settings, topic, "test", handle, write_held)
    await consumer.start()

    async def all_handled() -> bool:
        return len(handled) == 3

    await until(all_handled)
    return consumer, TopicPartition(topic, 0), handled


async def test_a_batch_is_committed_only_once_its_landing_is_done(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """Writes that go on after `handle` returned hold the commit back until they are done."""
    landing = asyncio.get_running_loop().create_future()
    consumer, tp, _ = await _consume_three_landing_on(sandbox, producer, landing)
    try:
        await asyncio.sleep(0.5)  # an unheld commit lands within milliseconds
        assert await _committed(sandbox, consumer.group_id, tp) is None

        landing.set_result(None)

        async def committed() -> bool:
            return await _committed(sandbox, consumer.group_id, tp) == 3

        await until(committed)
        assert consumer.failed is None
    finally:
        await consumer.stop()


@pytest.mark.parametrize("moment", ["idle", "stop"])
async def test_writes_held_back_are_written_when_idle_or_at_stop_and_the_batch_committed(
    sandbox: Sandbox, producer: AIOKafkaProducer, moment: str
) -> None:
    """A landing that waits for held writes lands once `write_held` wrote them, then commits.

    With no further batch, the consumer asks for due writes while idle; a stop asks for all.
    """
    landing = asyncio.get_running_loop().create_future()
    calls: list[bool] = []

    async def write_held(*, due_only: bool) -> None:
        calls.append(due_only)
        if due_only == expected and not landing.done():
            landing.set_result(None)

    expected = moment == "idle"  # idle: only what is due; stop: everything
    consumer, tp, _ = await _consume_three_landing_on(sandbox, producer, landing, write_held)
    try:
        if moment == "idle":

            async def committed() -> bool:
                return await _committed(sandbox, consumer.group_id, tp) == 3

            await until(committed)
    finally:
        await consumer.stop()
    assert await _committed(sandbox, consumer.group_id, tp) == 3
    assert expected in calls
    assert consumer.failed is None


async def test_too_many_batches_waiting_to_land_force_the_held_writes(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """Past MAX_BATCHES_LANDING unlanded batches, reading waits: held writes are forced first."""
    settings = _settings(sandbox).model_copy(update={"batch_max_events": 1})
    await declare_topics(settings)
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    count = MAX_BATCHES_LANDING + 4
    for n in range(count):
        await producer.send_and_wait(topic, value=f"v{n}".encode(), key=b"k")
    held: list[asyncio.Future[None]] = []
    landed_when_forced: list[int] = []

    async def handle(_records: Sequence[RawRecord]) -> Landed:
        held.append(asyncio.get_running_loop().create_future())
        return Landed(held[-1])

    async def write_held(*, due_only: bool) -> None:
        if not due_only:  # never due by time here: only a forced write lands anything
            landed_when_forced.append(len(held))
            for future in held:
                if not future.done():
                    future.set_result(None)

    consumer = BatchConsumer(settings, topic, "test", handle, write_held)
    await consumer.start()
    try:

        async def all_handled() -> bool:
            return len(held) == count

        await until(all_handled)
        assert landed_when_forced
        assert landed_when_forced[0] == MAX_BATCHES_LANDING + 1
        assert consumer.failed is None
    finally:
        await consumer.stop()
    assert await _committed(sandbox, consumer.group_id, TopicPartition(topic, 0)) == count


@pytest.mark.parametrize(
    "failure",
    [StoreUnavailableError("Redis gone"), RuntimeError("a bug while writing")],
    ids=["store-unavailable", "bug"],
)
async def test_a_batch_whose_landing_fails_is_not_committed_and_stops_consumption(
    sandbox: Sandbox, producer: AIOKafkaProducer, failure: Exception
) -> None:
    """A failed landing is a failed batch: not committed, and the worker must exit.

    A bug fails it as Redis going away does: the consumer stops rather than die unnoticed.
    """
    landing = asyncio.get_running_loop().create_future()
    consumer, tp, _ = await _consume_three_landing_on(sandbox, producer, landing)
    try:
        landing.set_exception(failure)

        async def failed() -> bool:
            return consumer.failed is not None

        await until(failed)
        assert consumer.failed is failure
    finally:
        await consumer.stop()
    assert await _committed(sandbox, consumer.group_id, tp) is None


async def test_a_batch_landing_after_a_rebalance_took_a_partition_commits_the_rest(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """A commit that trails its batch may find some partitions gone to another member.

    Their offsets are left to the new owner (it re-reads them, harmlessly); the rest are
    committed and consumption goes on. Before, aiokafka's IllegalStateError for the partition
    no longer assigned stopped the worker: a second worker process joining crashed the first.
    """
    settings = _settings(sandbox).model_copy(update={"topic_partitions": 2})
    await declare_topics(settings)
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    for partition in (0, 1):
        for n in range(3):
            await producer.send_and_wait(
                topic, value=f"p{partition}-{n}".encode(), partition=partition
            )
    landing = asyncio.get_running_loop().create_future()
    first_handled: list[RawRecord] = []

    async def first_handle(records: Sequence[RawRecord]) -> Landed:
        first_handled.extend(records)
        return Landed(landing)

    second_handled: list[RawRecord] = []

    async def second_handle(records: Sequence[RawRecord]) -> None:
        second_handled.extend(records)

    first = BatchConsumer(
        settings.model_copy(update={"kafka_group_instance_id": "first"}),
        topic,
        "test",
        first_handle,
    )
    second = BatchConsumer(
        settings.model_copy(update={"kafka_group_instance_id": "second"}),
        topic,
        "test",
        second_handle,
    )
    await first.start()
    try:

        async def first_has_all() -> bool:
            return len(first_handled) == 6

        await until(first_has_all)
        await second.start()

        async def split() -> bool:
            return len(first.assignment) == 1 and len(second_handled) == 3

        await until(split)
        (kept,) = first.assignment
        (moved,) = {TopicPartition(topic, 0), TopicPartition(topic, 1)} - {kept}
        landing.set_result(None)

        async def kept_committed() -> bool:
            return await _committed(sandbox, first.group_id, kept) == 3

        await until(kept_committed)
        await producer.send_and_wait(topic, value=b"after", partition=kept.partition)

        async def still_consuming() -> bool:
            return first_handled[-1].value == b"after"

        await until(still_consuming)
        assert first.failed is None
        assert {r.partition for r in second_handled} == {moved.partition}
    finally:
        await second.stop()
        await first.stop()
    assert first.failed is None
    assert second.failed is None
