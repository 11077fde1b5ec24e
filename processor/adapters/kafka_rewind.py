"""Rewinding delivery-events to rebuild lost state (see services/state_guard.py).

Which partitions, to which offsets, and whether the detection group has read anything yet.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from processor.adapters.kafka import client_options
from processor.errors import PublishError
from processor.ports.state_epoch import PartitionRewind

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from processor.config.settings import Settings

log = logging.getLogger(__name__)


class Rewinder(Protocol):
    """Says which partitions to read again from a time, and hears what was done (StateGuard)."""

    def rewind_needed(self, partitions: Iterable[int]) -> tuple[int, list[int]] | None:
        """The Kafka time (ms) to rewind to and the partitions to rewind, or None."""
        ...

    async def rewound(self, rewinds: Sequence[PartitionRewind]) -> None:
        """The partitions were rewound and their new offsets committed."""
        ...


def not_before_rewind(
    rewinder: Rewinder, batches: dict[TopicPartition, list[Any]]
) -> dict[TopicPartition, list[Any]]:
    """`batches` without records of partitions still to be rewound (read before the pause).

    Applied, they would move the rebuilt state's offsets past the records to be read
    again; the rewind reads them again anyway.
    """
    waiting = rewinder.rewind_needed(tp.partition for tp in batches)
    if waiting is None:
        return batches
    _to_ms, partitions = waiting
    log.info(
        "records read before their partition's rewind dropped", extra={"partitions": partitions}
    )
    return {tp: msgs for tp, msgs in batches.items() if tp.partition not in partitions}


async def group_has_offsets(settings: Settings, topic: str, group_id: str) -> bool:
    """Whether the consumer group has committed an offset on the topic."""
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(group_id)
    except KafkaError as exc:
        raise PublishError(f"reading the offsets of {group_id} failed: {exc}") from exc
    finally:
        await admin.close()
    return any(tp.topic == topic and meta.offset >= 0 for tp, meta in offsets.items())


async def rewind_to(
    consumer: AIOKafkaConsumer, topic: str, partitions: list[int], to_ms: int
) -> list[PartitionRewind]:
    """Seek each partition to its first record at `to_ms` (never past the committed offset)."""
    tps = [TopicPartition(topic, p) for p in partitions]
    found = await consumer.offsets_for_times(dict.fromkeys(tps, to_ms))
    starts = await consumer.beginning_offsets(tps)
    ends = await consumer.end_offsets(tps)
    rewinds: list[PartitionRewind] = []
    targets: dict[TopicPartition, int] = {}
    for tp in tps:
        at = found.get(tp)
        wanted = at.offset if at is not None else ends[tp]
        missing_ms = 0
        if at is not None and at.offset == starts[tp] and starts[tp] > 0:
            # Records before the first kept one were deleted; some may have been after `to_ms`.
            missing_ms = max(0, at.timestamp - to_ms)
        committed = await consumer.committed(tp)
        # Nothing committed: read from the first record, as a fresh group would.
        target = starts[tp] if committed is None else min(committed, wanted)
        if committed is not None and committed < wanted:
            missing_ms = 0  # behind already: what is left to read reaches back further
        consumer.seek(tp, target)
        targets[tp] = target
        rewinds.append(PartitionRewind(tp.partition, committed, target, missing_ms))
    # Committed at once, so that whoever reads the partition next starts from here.
    await consumer.commit(targets)
    return rewinds
