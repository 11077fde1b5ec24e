"""The resume agent's loop, kept fast: read ahead of the filter, publish behind it, few GC passes.

The filter is Python CPU; reading the next audience chunk and waiting for the broker's acks are
waits on Redis and Kafka. The overlap helpers keep order and bound memory: one item read ahead,
one group of messages in flight while the next is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from processor.ports.detection_store import OutboxMessage
    from processor.ports.publishing import Publisher

_Item = TypeVar("_Item")


async def _step(items: AsyncIterator[_Item]) -> tuple[_Item] | None:
    """The next item, boxed; None at the end."""
    try:
        return (await anext(items),)
    except StopAsyncIteration:
        return None


async def _settle(task: asyncio.Future[Any]) -> None:
    """Cancel `task` if still running and wait for it to end, swallowing its outcome."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


async def read_ahead(items: AsyncIterator[_Item]) -> AsyncGenerator[_Item, None]:
    """`items` in order, getting the next one while the caller works on the one yielded.

    `items` is advanced by one task at a time, so it may claim or read in order. Closing this
    generator (e.g. with `contextlib.aclosing`) stops the read ahead and closes `items` (if it
    is an async generator).
    """
    ahead: asyncio.Task[tuple[_Item] | None] = asyncio.ensure_future(_step(items))
    try:
        while (boxed := await ahead) is not None:
            ahead = asyncio.ensure_future(_step(items))
            yield boxed[0]
    finally:
        await _settle(ahead)
        if isinstance(items, AsyncGenerator):
            await items.aclose()


class PublishBehind:
    """Publishes groups of messages in order, each while the caller builds the next.

    A group is handed to the publisher only once the previous one is acknowledged, so the
    groups go out in order, and a failure stops everything after it: it is raised by the next
    `publish` or by `flush`.
    """

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._in_flight: asyncio.Task[None] | None = None

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Wait for the previous group's acks (raising its error), then start this group."""
        await self.flush()
        self._in_flight = asyncio.ensure_future(self._publisher.publish(messages))

    async def flush(self) -> None:
        """Wait until every group is acknowledged; raise a group's error."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await in_flight

    async def abandon(self) -> None:
        """Stop a group still in flight (the caller is failing anyway)."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await _settle(in_flight)


GC_YOUNG_THRESHOLD = 100_000
"""Allocations between young-generation collections while a recipient set is built."""


class _GcPasses:
    """The process's GC thresholds, raised while any recipient set is being built."""

    def __init__(self) -> None:
        self.depth = 0
        self.saved: tuple[int, int, int] | None = None

    @contextlib.contextmanager
    def fewer(self) -> Iterator[None]:
        """Collect the young generation every `GC_YOUNG_THRESHOLD` allocations, not every 700.

        A resume allocates a few objects per planned recipient that live until their chunk is
        published (a million recipients: millions of objects), so at the default threshold
        they are traversed over and over by full collections: a quarter of the resume's CPU
        in the benchmark. They are not cyclic; refcounting frees them. Process-wide while
        inside (nests; never lowers a threshold set higher by the process), restored after.
        """
        if self.depth == 0:
            self.saved = gc.get_threshold()
            young, *older = self.saved
            gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if self.depth == 0 and self.saved is not None:
                gc.set_threshold(*self.saved)


fewer_gc_passes = _GcPasses().fewer
