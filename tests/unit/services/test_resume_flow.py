"""The resume loop's overlap: read ahead, publish behind, fewer GC passes, and the loop itself."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import TYPE_CHECKING

import pytest

from processor.errors import PublishError, StoreUnavailableError
from processor.ports.detection_store import OutboxMessage
from processor.services import resume
from processor.services.resume_flow import (
    GC_YOUNG_THRESHOLD,
    PublishBehind,
    fewer_gc_passes,
    read_ahead,
)
from schemas.topics import TopicRole
from tests.unit.services.resume_world import World, request

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Sequence

    from processor.ports.contact_store import Candidates
    from schemas.events import Recipient


def message(n: int) -> OutboxMessage:
    """A message numbered n."""
    return OutboxMessage(TopicRole.RECIPIENT_SETS.value, "k", str(n))


class Source:
    """An async generator of 0..n-1 that notes how far it was read and whether it was closed."""

    def __init__(self, n: int, *, fail_at: int | None = None) -> None:
        self.n = n
        self.fail_at = fail_at
        self.produced = 0
        self.closed = False

    async def items(self) -> AsyncGenerator[int, None]:
        """The items."""
        try:
            for item in range(self.n):
                await asyncio.sleep(0)
                if item == self.fail_at:
                    raise StoreUnavailableError("redis gone")
                self.produced += 1
                yield item
        finally:
            self.closed = True


async def test_read_ahead_keeps_order_and_reads_one_item_ahead() -> None:
    """Items come in order; while the caller holds one, the next one is read, not more."""
    source = Source(5)
    seen = []
    async for item in read_ahead(source.items()):
        for _ in range(5):
            await asyncio.sleep(0)  # the caller works, awaiting now and then
        seen.append(item)
        assert source.produced == min(item + 2, 5)
    assert seen == [0, 1, 2, 3, 4]
    assert source.closed


async def test_leaving_a_read_ahead_early_stops_it_and_closes_the_source() -> None:
    """Closing the read ahead mid-way cancels the read in progress and closes the source."""
    source = Source(100)
    ahead = read_ahead(source.items())
    async with contextlib.aclosing(ahead):
        async for item in ahead:
            if item == 3:
                break
    assert source.closed
    assert source.produced <= 5


async def test_a_failure_of_the_source_reaches_the_reader_in_order() -> None:
    """Items before the failure come first; then the failure is raised to the reader."""
    source = Source(10, fail_at=3)
    ahead = read_ahead(source.items())
    assert [await anext(ahead) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(StoreUnavailableError):
        await anext(ahead)
    assert source.closed


class SlowPublisher:
    """Acknowledges after a few loop turns; can fail a given call; notes what overlapped."""

    def __init__(self, *, fail_call: int | None = None) -> None:
        self.published: list[str] = []
        self.calls = 0
        self.fail_call = fail_call
        self.in_flight = 0
        self.most_in_flight = 0

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Publish after a while, or fail."""
        self.calls += 1
        call = self.calls
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for _ in range(3):
                await asyncio.sleep(0)
            if call == self.fail_call:
                raise PublishError("broker gone")
            self.published.extend(m.value for m in messages)
        finally:
            self.in_flight -= 1


async def test_publishing_behind_keeps_order_with_one_group_in_flight() -> None:
    """Groups go out in order, one at a time, while the caller goes on; flush waits for all."""
    publisher = SlowPublisher()
    behind = PublishBehind(publisher)
    for group in range(4):
        await behind.publish([message(2 * group), message(2 * group + 1)])
        assert publisher.published == [str(n) for n in range(2 * group)]  # not waited for
    await behind.flush()
    assert publisher.published == [str(n) for n in range(8)]
    assert publisher.most_in_flight == 1


async def test_a_failed_group_stops_the_ones_after_it() -> None:
    """The failure is raised by the next publish, which is then not started."""
    publisher = SlowPublisher(fail_call=2)
    behind = PublishBehind(publisher)
    await behind.publish([message(0)])
    await behind.publish([message(1)])
    with pytest.raises(PublishError):
        await behind.publish([message(2)])
    await behind.flush()
    assert publisher.published == ["0"]
    assert publisher.calls == 2


async def test_abandoning_stops_the_group_in_flight() -> None:
    """A failing caller abandons the group in flight: cancelled, its outcome swallowed."""
    publisher = SlowPublisher()
    behind = PublishBehind(publisher)
    await behind.publish([message(0)])
    await behind.abandon()
    await behind.flush()
    assert publisher.published == []
    assert publisher.in_flight == 0


def test_fewer_gc_passes_nest_and_restore_the_thresholds() -> None:
    """The young threshold is raised while inside, never lowered, and restored when left."""
    before = gc.get_threshold()
    with fewer_gc_passes():
        raised = gc.get_threshold()
        assert raised == (max(before[0], GC_YOUNG_THRESHOLD), *before[1:])
        with fewer_gc_passes():
            assert gc.get_threshold() == raised
        assert gc.get_threshold() == raised
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), fewer_gc_passes():
        raise RuntimeError("boom")
    assert gc.get_threshold() == before


# --- the service's loop ------------------------------------------------------------------------


async def test_a_publish_failure_mid_set_saves_nothing_and_a_retry_publishes_it_all() -> None:
    """The failure surfaces; no answer is saved, the run is ended; the retry sends every chunk."""
    world = World(chunk_size=1)
    ids = [f"u{n}" for n in range(60)]
    await world.plan("t1", "c1", [ids[:20], ids[20:40], ids[40:]])  # a group of chunks each
    world.pause("t1", "c1")
    publish = world.publisher.publish
    calls = 0

    async def fail_second_publish(messages: Sequence[OutboxMessage]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the second group of chunks
            raise PublishError("broker gone")
        await publish(messages)

    world.publisher.publish = fail_second_publish  # type: ignore[method-assign]  # failure seam
    with pytest.raises(PublishError):
        await world.service.handle(request())
    assert world.contacts.records == {}
    assert world.contacts.runs == {}
    first_try = world.publisher.on(TopicRole.RECIPIENT_SETS)
    assert [c["chunk_index"] for c in first_try] == list(range(20))

    world.publisher.messages.clear()
    outcome = await world.service.handle(request())

    published = world.publisher.on(TopicRole.RECIPIENT_SETS)
    assert [m.get("chunk_index") for m in published] == [*range(60), None]
    assert outcome.total_recipients == 60


async def test_a_store_failure_mid_set_ends_the_run_and_raises() -> None:
    """A contact store failure while reading ahead is raised; the run's claims are dropped."""
    world = World()
    await world.plan("t1", "c1", [["a"], ["b"], ["c"]])
    world.pause("t1", "c1")
    candidates = world.contacts.candidates
    calls = 0

    async def fail_third(
        tenant_id: str, campaign_id: str, run_id: str, recipients: Sequence[Recipient]
    ) -> Candidates:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise StoreUnavailableError("redis gone")
        return await candidates(tenant_id, campaign_id, run_id, recipients)

    world.contacts.candidates = fail_third  # type: ignore[method-assign]  # failure seam
    with pytest.raises(StoreUnavailableError):
        await world.service.handle(request())
    assert world.contacts.runs == {}
    assert world.contacts.records == {}


async def test_the_filter_lets_other_tasks_run_while_it_works() -> None:
    """A big audience chunk is filtered in steps, so the event loop keeps serving others."""
    world = World()
    ids = [f"u{n}" for n in range(5 * resume.FILTER_STEP)]
    await world.plan("t1", "c1", [ids])
    world.pause("t1", "c1")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(ticker())
    try:
        outcome = await world.service.handle(request())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert outcome.total_recipients == len(ids)
    assert ticks >= 5
