"""A compare-and-set write that keeps losing stops the batch; its valid records are kept.

The batch is read again later (like Redis gone); nothing is dead-lettered for a conflict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from processor.errors import WRITE_ATTEMPTS, StoreUnavailableError, WriteConflictError
from processor.ports.detection_store import CampaignRef, InMemoryStore
from processor.services.detection import DetectionService
from processor.services.resume import ResumeService
from schemas.events import EventType
from schemas.topics import TopicRole
from tests.unit.services.resume_world import (
    BOOK,
    DECIDED,
    NOW,
    ListPublisher,
    World,
    delivery,
    raw,
    request,
)

if TYPE_CHECKING:
    from processor.ports.detection_store import CampaignWrite


class OutrunStore(InMemoryStore):
    """An in-memory store where another writer always wins: every compare-and-set fails."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def commit_campaigns(self, writes: list[CampaignWrite]) -> list[bool]:
        """Refuse every campaign write, as if its version had moved on."""
        self.attempts += 1
        return [False] * len(writes)

    async def save_resume(self, ref: CampaignRef, blob: bytes, expected_version: int) -> bool:
        """Let another writer move the version on first, so the re-arm is refused."""
        self.attempts += 1
        version, stored = self.campaigns[ref]
        self.campaigns[ref] = (version + 1, stored)
        return await super().save_resume(ref, blob, expected_version)


def test_a_write_conflict_is_handled_like_an_unavailable_store() -> None:
    """Every handler that stops a batch for Redis gone stops it for a lasting conflict too."""
    assert issubclass(WriteConflictError, StoreUnavailableError)


async def test_detection_raises_a_lasting_conflict_and_dead_letters_nothing() -> None:
    """Valid events whose campaign never takes the write propagate the error, unrejected."""
    store, publisher = OutrunStore(), ListPublisher()
    detection = DetectionService(store, publisher, lambda: BOOK, publish_periodic_health=False)
    events = [delivery(f"u{n}", EventType.SENT, NOW, campaign_id="c1") for n in range(3)]
    records = [
        raw("delivery-events", e.model_dump_json().encode(), i) for i, e in enumerate(events)
    ]

    with pytest.raises(WriteConflictError, match="t1:c1"):
        await detection.apply_isolating(records)

    assert store.attempts == WRITE_ATTEMPTS
    assert publisher.on(TopicRole.DEAD_LETTER) == []
    assert store.campaigns == {}


async def test_resume_raises_a_lasting_conflict_and_dead_letters_nothing() -> None:
    """An accepted request whose re-arm never takes the write propagates the error."""
    world = World()
    await world.plan("t1", "c1", [["a", "b"]])
    world.pause("t1", "c1")
    store = OutrunStore()
    store.campaigns = dict(world.store.campaigns)
    service = ResumeService(
        store, world.contacts, world.publisher, lambda: BOOK, wall_clock=lambda: DECIDED
    )

    with pytest.raises(WriteConflictError, match="t1:c1"):
        await service.apply([raw("resume-requests", request().model_dump_json().encode())])

    assert store.attempts == WRITE_ATTEMPTS
    assert world.publisher.on(TopicRole.DEAD_LETTER) == []
    assert world.publisher.on(TopicRole.CONTROL) == []
