"""The outbox sweep: publishes decisions a crash left unpublished, never one being published.

Every worker sweeps every few seconds; taking an outbox its writer is still publishing would put
the same pause on the control topic twice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from processor.errors import PublishError
from processor.ports.detection_store import InMemoryStore
from processor.services.detection import DetectionService
from schemas.events import EventType
from schemas.topics import TopicRole
from tests.unit.services.resume_world import BOOK, NOW, Clock, ListPublisher, delivery, raw

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.ports.detection_store import OutboxMessage
    from processor.ports.records import RawRecord

RECOVERY_AFTER_S = 30.0


class GatedPublisher(ListPublisher):
    """Holds each publish until `gate` is set (a broker acknowledging slowly)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Wait for the gate, then record (or fail)."""
        self.waiting.set()
        await self.gate.wait()
        await super().publish(messages)


async def _sent_to_bad_list(
    publisher: ListPublisher,
) -> tuple[Clock, InMemoryStore, DetectionService, list[RawRecord]]:
    """A detection on an embedded store with 220 sends applied; the 22 bounces that pause."""
    clock = Clock()
    store = InMemoryStore(monotonic=clock)
    detection = DetectionService(store, publisher, lambda: BOOK, publish_periodic_health=False)
    sends, bounces = _bad_campaign()
    await detection.apply(sends)
    return clock, store, detection, bounces


def _bad_campaign() -> tuple[list[RawRecord], list[RawRecord]]:
    """220 sends, then 22 hard bounces: the second batch pauses the campaign."""
    sends = [delivery(f"u{n}", EventType.SENT, NOW, campaign_id="c1") for n in range(220)]
    bounces = [
        delivery(f"u{n}", EventType.BOUNCE, NOW, campaign_id="c1", bounce_class="hard")
        for n in range(0, 220, 10)
    ]
    records = [raw("delivery-events", e.model_dump_json().encode(), i) for i, e in enumerate(sends)]
    later = [
        raw("delivery-events", e.model_dump_json().encode(), len(sends) + i)
        for i, e in enumerate(bounces)
    ]
    return records, later


async def test_a_sweep_while_the_pause_is_being_published_leaves_it_to_its_writer() -> None:
    """The decision is stored, its publish not yet acknowledged: the sweep does not take it."""
    publisher = GatedPublisher()
    clock, store, detection, bounces = await _sent_to_bad_list(publisher)
    deciding = asyncio.create_task(detection.apply(bounces))
    await publisher.waiting.wait()
    clock.now += 5  # a slow acknowledgement, well under the recovery time

    swept = asyncio.create_task(detection.recover_outboxes(RECOVERY_AFTER_S))
    await asyncio.sleep(0)
    publisher.gate.set()
    report = await deciding

    assert await swept == 0
    assert len(report.pauses) == 1
    assert len(publisher.on(TopicRole.CONTROL)) == 1
    assert await store.campaigns_with_outbox() == []


async def test_a_pause_left_unpublished_is_published_once_it_waited_the_recovery_time() -> None:
    """A publish that failed (the worker then stops) leaves the outbox for the sweep."""
    publisher = ListPublisher()
    clock, _, detection, bounces = await _sent_to_bad_list(publisher)
    publisher.failures = 1
    with pytest.raises(PublishError):  # the worker stops here, without committing
        await detection.apply(bounces)
    assert publisher.on(TopicRole.CONTROL) == []

    clock.now += RECOVERY_AFTER_S - 1
    assert await detection.recover_outboxes(RECOVERY_AFTER_S) == 0
    clock.now += 1
    assert await detection.recover_outboxes(RECOVERY_AFTER_S) == 1
    assert await detection.recover_outboxes(RECOVERY_AFTER_S) == 0

    (pause,) = publisher.on(TopicRole.CONTROL)
    assert pause["_key"] == "t1:c1"
