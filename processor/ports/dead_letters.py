"""The dead letter of a rejected Kafka record: one bounded builder for every consumer.

Detection, resume, the bridges and the KumoMTA log relay all reject records; each letter keeps
the record's coordinates, a bounded excerpt of its key and value, and a deterministic id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.ports.detection_store import OutboxMessage
from schemas.dead_letter import KEY_EXCERPT_BYTES, DeadLetter
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from datetime import datetime

    from processor.ports.records import RawRecord


def dead_letter(record: RawRecord, error_type: str, reason: str, now: datetime) -> OutboxMessage:
    """A rejected record, with where it came from and why (key: the source key).

    Bounded whatever the record's size (see `DeadLetter`), so it always fits the producer's
    request limit; its id comes from the record's topic, partition and offset.
    """
    letter = DeadLetter.of_rejected(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        key=record.key,
        value=record.value,
        error_type=error_type,
        error=reason,
        failed_at=now,
    )
    key = b""
    if record.key is not None:
        key = record.key[:KEY_EXCERPT_BYTES]
    return OutboxMessage(
        TopicRole.DEAD_LETTER.value, key.decode("utf-8", "replace"), letter.model_dump_json()
    )
