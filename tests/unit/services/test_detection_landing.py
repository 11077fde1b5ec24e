"""Detection's contact merges land after the batch's decisions, one batch after another."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from processor.errors import StoreUnavailableError
from processor.ports.contact_store import InMemoryContactStore
from processor.ports.detection_store import InMemoryStore
from processor.services.detection import DetectionService
from schemas.events import EventType
from schemas.topics import TopicRole
from tests.unit.services.resume_world import BOOK, NOW, ListPublisher, delivery, raw

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from processor.ports.records import EventView, RawRecord


class GatedContacts:
    """A contact sink whose writes each wait for their own gate, then merge into memory."""

    def __init__(self) -> None:
        self.merged = InMemoryContactStore()
        self.gates: list[asyncio.Event] = []
        self.started: list[int] = []
        self.fail: set[int] = set()
        """Numbers of the writes that fail (Redis gone) once let through."""
        self.broken_contact = "never"
        """A contact whose merge cannot be built (a bug on one record)."""

    def prepare_events(self, events: Sequence[EventView]) -> Callable[[], Awaitable[None]]:
        """Number the write and hold it at its gate."""
        if any(e.recipient.contact_id == self.broken_contact for e in events):
            message = "cannot build this merge"
            raise ValueError(message)
        number, gate = len(self.gates), asyncio.Event()
        self.gates.append(gate)
        kept = list(events)

        async def write() -> None:
            self.started.append(number)
            await gate.wait()
            if number in self.fail:
                message = "Redis gone"
                raise StoreUnavailableError(message)
            await self.merged.apply_events(kept)

        return write


def _records(first_offset: int, contacts: range, kind: EventType, **fields: str) -> list[RawRecord]:
    events = [delivery(f"u{n}", kind, NOW, campaign_id="c1", **fields) for n in contacts]
    return [
        raw("delivery-events", e.model_dump_json().encode(), first_offset + i)
        for i, e in enumerate(events)
    ]


def _service(contacts: GatedContacts, publisher: ListPublisher) -> DetectionService:
    return DetectionService(InMemoryStore(), publisher, lambda: BOOK, contacts=contacts)


async def test_the_pause_is_published_before_the_batch_s_contacts_are_written() -> None:
    """A pause never waits for the contact merge of its batch; the batch's landing does."""
    contacts, publisher = GatedContacts(), ListPublisher()
    detection = _service(contacts, publisher)
    records = _records(0, range(220), EventType.SENT)
    records += _records(220, range(0, 220, 10), EventType.BOUNCE, bounce_class="hard")

    report = await detection.apply(records)

    assert len(report.pauses) == 1
    assert len(publisher.on(TopicRole.CONTROL)) == 1
    assert report.landing is not None
    assert not report.landing.done()
    assert contacts.merged.attempted_sets == {}
    contacts.gates[0].set()
    await report.landing
    assert len(contacts.merged.attempted_sets[("t1", "c1")]) == 220
    assert contacts.merged.contacts[("t1", "u10")].hard_bounced


async def _two_batches(
    detection: DetectionService, second_kind: EventType
) -> tuple[asyncio.Future[None], asyncio.Future[None]]:
    """Apply three sends, then three events of `second_kind`; the two batches' landings."""
    first = await detection.apply(_records(0, range(3), EventType.SENT))
    second = await detection.apply(_records(3, range(3), second_kind))
    assert first.landing is not None
    assert second.landing is not None
    return first.landing, second.landing


async def test_merges_land_one_after_another_in_batch_order() -> None:
    """The second batch's write starts only once the first one is written."""
    contacts = GatedContacts()
    detection = _service(contacts, ListPublisher())
    first, second = await _two_batches(detection, EventType.OPEN)

    contacts.gates[1].set()
    await asyncio.sleep(0.01)
    assert contacts.started == [0]
    assert not second.done()
    contacts.gates[0].set()
    await detection.landed()

    assert contacts.started == [0, 1]
    assert first.done()
    assert contacts.merged.contacts[("t1", "u1")].last_engaged_at == NOW


async def test_a_failed_merge_fails_every_landing_after_it() -> None:
    """If batch 1's merge fails, batch 2's landing fails too: neither may be committed."""
    contacts = GatedContacts()
    contacts.fail = {0}
    detection = _service(contacts, ListPublisher())
    first, second = await _two_batches(detection, EventType.SENT)

    contacts.gates[0].set()
    contacts.gates[1].set()

    with pytest.raises(StoreUnavailableError):
        await first
    with pytest.raises(StoreUnavailableError):
        await second
    assert contacts.started == [0]


async def test_a_record_whose_merge_cannot_be_built_is_dead_lettered_alone() -> None:
    """The merge is built inside `apply`, so a record that breaks it is isolated as usual."""
    contacts, publisher = GatedContacts(), ListPublisher()
    contacts.broken_contact = "u1"
    detection = _service(contacts, publisher)

    report = await detection.apply_isolating(_records(0, range(3), EventType.SENT))
    for gate in contacts.gates:
        gate.set()
    await detection.landed()

    assert report.dead_lettered == 1
    letters = publisher.on(TopicRole.DEAD_LETTER)
    assert [letter["error_type"] for letter in letters] == ["processing_error"]
    assert "cannot build this merge" in letters[0]["error"]
    assert report.landing is not None
    assert report.landing.done()
    assert contacts.merged.attempted_sets[("t1", "c1")] == {"u0", "u2"}
