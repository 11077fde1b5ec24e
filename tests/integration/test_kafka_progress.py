"""GroupProgress on the real broker: events behind a consumer group's commits, and the wait."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from pydantic import SecretStr

from processor.adapters.kafka import declare_topics
from processor.adapters.kafka_progress import GroupProgress
from processor.config.settings import Settings
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from tests.integration.conftest import Sandbox


async def _commit(sandbox: Sandbox, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=sandbox.bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await consumer.stop()


async def test_progress_counts_what_the_group_has_not_committed_and_waits_for_it(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """Behind = events produced before the call and not committed; the wait ends on commit."""
    settings = Settings(
        kafka_bootstrap_servers=sandbox.bootstrap,
        redis_url=SecretStr(sandbox.stack["SENDGUARD_REDIS_URL"]),
        topic_prefix=f"{sandbox.name}.",
        topic_partitions=2,
    )
    await declare_topics(settings)
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    group = f"{sandbox.name}-contacts"
    progress = GroupProgress(settings, topic, group, poll_interval_s=0.05)
    try:
        assert await progress.wait_caught_up(0) == 0  # an empty topic: nothing to wait for
        for n in range(5):
            await producer.send_and_wait(topic, value=b"x", partition=n % 2)
        first, second = TopicPartition(topic, 0), TopicPartition(topic, 1)

        assert await progress.wait_caught_up(0.2) == 5  # nothing committed yet
        await _commit(sandbox, group, {first: 3})
        assert await progress.wait_caught_up(0.2) == 2

        async def commit_later() -> None:
            await asyncio.sleep(0.3)
            await _commit(sandbox, group, {first: 3, second: 2})

        later = asyncio.create_task(commit_later())
        assert await progress.wait_caught_up(20) == 0
        await later
    finally:
        await progress.close()
