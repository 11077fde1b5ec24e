"""How far a consumer group is behind a topic, read from Kafka: end offsets against group commits.

The resume agent uses it to wait for detection (which merges contacts), maybe in another process.
aiokafka errors become PublishError here (Kafka unavailable: the request is read again later).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from processor.adapters.kafka import client_options
from processor.errors import PublishError

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.config.settings import Settings


class GroupProgress:
    """`ContactProgress` of a consumer group on a topic (clients opened on first use)."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        group_id: str,
        *,
        poll_interval_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._group_id = group_id
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def wait_caught_up(self, timeout_s: float) -> int:
        """See `ContactProgress.wait_caught_up`: polls the group's commits until the deadline."""
        deadline = self._clock() + timeout_s
        try:
            targets, starts = await self._offsets()
            while True:
                behind = await self._behind(targets, starts)
                if behind == 0 or self._clock() >= deadline:
                    return behind
                await asyncio.sleep(self._poll_interval_s)
        except KafkaError as exc:
            raise PublishError(f"reading the progress of {self._group_id} failed: {exc}") from exc

    async def close(self) -> None:
        """Close the clients (they are opened again if used after this)."""
        consumer, admin = self._consumer, self._admin
        self._consumer = self._admin = None
        if consumer is not None:
            await consumer.stop()
        if admin is not None:
            await admin.close()

    async def _offsets(self) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Each partition's end offset, and its first (a group never commits below it)."""
        admin = await self._admin_client()
        (described,) = await admin.describe_topics([self._topic])
        tps = [TopicPartition(self._topic, p["partition"]) for p in described["partitions"]]
        if not tps:
            return {}, {}
        if self._consumer is None:
            consumer = AIOKafkaConsumer(**client_options(self._settings), enable_auto_commit=False)
            await consumer.start()
            self._consumer = consumer
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(tps)
        starts: dict[TopicPartition, int] = await self._consumer.beginning_offsets(tps)
        return ends, starts

    async def _admin_client(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**client_options(self._settings))
            await admin.start()
            self._admin = admin
        return self._admin

    async def _behind(
        self, targets: dict[TopicPartition, int], starts: dict[TopicPartition, int]
    ) -> int:
        admin = await self._admin_client()
        offsets = await admin.list_consumer_group_offsets(self._group_id)
        committed = {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
        # A partition whose records all expired has nothing to read, so nothing is committed.
        return sum(
            max(0, end - max(committed.get(tp, 0), starts.get(tp, 0)))
            for tp, end in targets.items()
        )
