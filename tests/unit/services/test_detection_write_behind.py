"""Detection's write-behind: campaigns that decided nothing are held in memory, then written.

A held batch's landing waits for the write; a decision writes its campaign at once; nothing
held is lost to a duplicate, a bug on one record or a failed write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from processor.domain.codec import decode_state
from processor.domain.detector import observe_run as real_observe
from processor.domain.windows import Counter
from processor.errors import StoreUnavailableError
from processor.ports.detection_store import CampaignAsk, CampaignRef, CampaignWrite, InMemoryStore
from processor.services.detection import DetectionService
from schemas.events import EventType
from schemas.topics import TopicRole
from tests.unit.services.resume_world import BOOK, NOW, Clock, ListPublisher, delivery, raw

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from processor.domain.campaign_state import CampaignState, EventFacts
    from processor.domain.policy import Policy
    from processor.ports.records import RawRecord

REF = CampaignRef("t1", "c1")
HOLD_S = 0.25  # halves exactly in binary: the clock reaches it exactly


class FailingStore(InMemoryStore):
    """An in-memory store whose campaign writes fail once `down` is set."""

    down = False

    async def commit_campaigns(self, writes: list[CampaignWrite]) -> list[bool]:
        """Fail like Redis gone, or write."""
        if self.down:
            message = "Redis gone"
            raise StoreUnavailableError(message)
        return await super().commit_campaigns(writes)


def _records(
    first_offset: int, contacts: Iterable[int], kind: EventType, **fields: str
) -> list[RawRecord]:
    events = [delivery(f"u{n}", kind, NOW, campaign_id="c1", **fields) for n in contacts]
    return [
        raw("delivery-events", e.model_dump_json().encode(), first_offset + i)
        for i, e in enumerate(events)
    ]


def _service(store: InMemoryStore, clock: Clock, publisher: ListPublisher) -> DetectionService:
    return DetectionService(
        store,
        publisher,
        lambda: BOOK,
        monotonic=clock,
        publish_periodic_health=False,
        state_write_behind_s=HOLD_S,
    )


def _sent(state: CampaignState) -> int:
    return state.windows.window("lifetime")[Counter.SENT]


async def _stored(store: InMemoryStore) -> tuple[int, CampaignState | None]:
    (loaded,) = await store.load_campaigns([CampaignAsk(REF)])
    state = decode_state(loaded.blob, BOOK.windows) if loaded.blob is not None else None
    return loaded.version, state


async def test_a_campaign_is_held_until_due_and_its_landings_wait_for_the_write() -> None:
    """Batches that decide nothing are not written until the hold is over; then in one write."""
    store, clock = InMemoryStore(), Clock()
    detection = _service(store, clock, ListPublisher())

    first = await detection.apply(_records(0, range(10), EventType.SENT))
    clock.now += HOLD_S / 2
    second = await detection.apply(_records(10, range(10, 20), EventType.SENT))

    assert (first.applied, second.applied) == (10, 10)
    assert await _stored(store) == (0, None)
    assert first.landing is not None
    assert second.landing is not None
    assert not first.landing.done()

    await detection.write_held_states(due_only=True)
    assert await _stored(store) == (0, None)  # not due yet
    clock.now += HOLD_S / 2
    third = await detection.apply(_records(20, range(20, 25), EventType.SENT))

    await first.landing
    await second.landing
    assert third.landing is None
    version, state = await _stored(store)
    assert version == 1
    assert state is not None
    assert state.offsets == {"delivery-events:0": 24}
    assert _sent(state) == 25


async def test_a_pause_writes_its_campaign_at_once_with_the_events_held_before() -> None:
    """A decision is never held: the state behind it, earlier held events too, is written first."""
    store, clock, publisher = InMemoryStore(), Clock(), ListPublisher()
    detection = _service(store, clock, publisher)
    await detection.apply(_records(0, range(220), EventType.SENT))

    report = await detection.apply(
        _records(220, range(0, 220, 10), EventType.BOUNCE, bounce_class="hard")
    )

    assert len(report.pauses) == 1
    assert report.applied_by_counter[Counter.HARD_BOUNCE] == 22
    assert sum(report.applied_by_counter) == 22  # the held sends were counted by the first batch
    assert len(publisher.on(TopicRole.CONTROL)) == 1
    version, state = await _stored(store)
    assert version == 1
    assert state is not None
    assert state.offsets == {"delivery-events:0": 241}
    assert _sent(state) == 220
    assert report.landing is None  # nothing is held any more


async def test_a_redelivered_copy_of_a_held_event_counts_once() -> None:
    """The digests of held events are checked in memory, before they reach the store."""
    store, clock = InMemoryStore(), Clock()
    detection = _service(store, clock, ListPublisher())
    await detection.apply(_records(0, range(5), EventType.SENT))

    again = await detection.apply(_records(5, range(3, 6), EventType.SENT))
    await detection.write_held_states()

    assert (again.applied, again.duplicates) == (1, 2)
    _, state = await _stored(store)
    assert state is not None
    assert state.duplicates == 2


async def test_a_bug_on_one_record_loses_none_of_the_events_held_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broken record is dead-lettered alone; held and fellow events are all written."""
    store, clock, publisher = InMemoryStore(), Clock(), ListPublisher()
    detection = _service(store, clock, publisher)
    await detection.apply(_records(0, range(10), EventType.SENT))

    def observe_unless_broken(
        state: CampaignState, run: list[EventFacts], policy: Policy, z: float
    ) -> Iterator[object]:
        if any(facts.event_id.startswith("u12-") for facts in run):
            message = "a bug on one event"
            raise RuntimeError(message)
        return iter(real_observe(state, run, policy, z))

    monkeypatch.setattr("processor.services.campaign_fold.observe_run", observe_unless_broken)

    report = await detection.apply_isolating(_records(10, range(10, 15), EventType.SENT))
    monkeypatch.undo()
    await detection.write_held_states()

    assert (report.applied, report.dead_lettered) == (4, 1)
    # The held events were folded again from the store: counted by an earlier report, not here.
    assert report.applied_by_counter[Counter.SENT] == 4
    assert sum(report.applied_by_counter) == 4
    assert len(publisher.on(TopicRole.DEAD_LETTER)) == 1
    _, state = await _stored(store)
    assert state is not None
    assert state.offsets == {"delivery-events:0": 14}
    assert _sent(state) == 14


async def test_a_failed_write_fails_the_held_landings_so_they_are_read_again() -> None:
    """Redis gone when the held states come due: the batch raises, held batches don't land."""
    store, clock = FailingStore(), Clock()
    detection = _service(store, clock, ListPublisher())
    held = await detection.apply(_records(0, range(10), EventType.SENT))
    assert held.landing is not None

    store.down = True
    clock.now += HOLD_S
    with pytest.raises(StoreUnavailableError):
        await detection.apply(_records(10, range(10, 12), EventType.SENT))

    with pytest.raises(StoreUnavailableError):
        await held.landing
    store.down = False
    await detection.write_held_states()  # nothing held is left to write
    assert await _stored(store) == (0, None)


async def test_events_are_tallied_by_type_once_across_held_and_written_batches() -> None:
    """Each report tallies its own applied events by counter; duplicates are in no tally."""
    store, clock = InMemoryStore(), Clock()
    detection = _service(store, clock, ListPublisher())
    sent = await detection.apply(_records(0, range(6), EventType.SENT))
    mixed = await detection.apply(
        _records(6, range(3), EventType.DELIVERED)
        + _records(9, range(2), EventType.BOUNCE, bounce_class="soft")
        + _records(11, range(2), EventType.DELIVERED)  # copies of delivered events u0, u1
    )
    clock.now += HOLD_S
    await detection.write_held_states()

    assert sent.applied_by_counter[Counter.SENT] == 6
    assert sum(sent.applied_by_counter) == sent.applied == 6
    assert mixed.applied_by_counter[Counter.DELIVERED] == 3
    assert mixed.applied_by_counter[Counter.SOFT_BOUNCE] == 2
    assert sum(mixed.applied_by_counter) == mixed.applied == 5
    assert mixed.duplicates == 2
