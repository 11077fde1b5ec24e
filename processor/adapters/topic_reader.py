"""Reads whole topics from Kafka for the ops views: from the beginning to the end, then maybe on.

No consumer group (nothing is committed): every reader sees every partition. aiokafka's errors
become `ReadError` here.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from processor.adapters.kafka import client_options
from processor.errors import ReadError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from processor.config.settings import Settings

log = logging.getLogger(__name__)

POLL_MS = 200


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """One record as read, with the topic it came from."""

    topic: str
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


class CaughtUp:
    """Marker yielded once every partition was read to the end it had at the start."""


CAUGHT_UP = CaughtUp()


async def read_topics(
    settings: Settings, topics: Sequence[str], *, follow: bool = False
) -> AsyncIterator[TopicMessage | CaughtUp]:
    """Every record of `topics` from the beginning, then `CAUGHT_UP`; with `follow`, then on."""
    consumer = AIOKafkaConsumer(
        *topics,
        **client_options(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id=f"{settings.app_id}-reader",
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise ReadError(f"cannot read {', '.join(topics)}: {exc}") from exc
    try:
        async for item in _records(consumer, follow=follow):
            yield item
    except KafkaError as exc:
        raise ReadError(f"reading {', '.join(topics)} failed: {exc}") from exc
    finally:
        await consumer.stop()


async def _records(
    consumer: AIOKafkaConsumer, *, follow: bool
) -> AsyncIterator[TopicMessage | CaughtUp]:
    assignment = consumer.assignment()
    await consumer.seek_to_beginning(*assignment)
    ends = await consumer.end_offsets(list(assignment))
    behind = {tp for tp, end in ends.items() if end > 0}
    caught_up = False
    while True:
        if not behind and not caught_up:
            caught_up = True
            yield CAUGHT_UP
            if not follow:
                return
        batches = await consumer.getmany(timeout_ms=POLL_MS)
        for tp, records in batches.items():
            for record in records:
                yield TopicMessage(tp.topic, record.key, record.value, record.timestamp)
            if tp in behind and records and records[-1].offset + 1 >= ends[tp]:
                behind.discard(tp)
        if not batches:
            await asyncio.sleep(0)
            # A partition whose records were all compacted or deleted below its end offset.
            for tp in list(behind):
                if await consumer.position(tp) >= ends[tp]:
                    behind.discard(tp)
