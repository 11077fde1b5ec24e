"""The contact-merge use case: what delivery events teach about contacts, off detection's path.

It reads the delivery events in a consumer group of its own, so a pause never waits for contact
writes; a resume request waits for this group to catch up instead (`ContactProgress`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

from processor.errors import InvalidInputError, PublishError, StoreUnavailableError
from processor.event_input import parse_batch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.event_input import EventView
    from processor.messages import RawRecord

log = logging.getLogger(__name__)


class ContactSink(Protocol):
    """Takes what delivery events teach about contacts (idempotent merges)."""

    async def apply_events(self, events: Sequence[EventView]) -> None:
        """Merge the events into contact state and campaigns' attempted sets."""
        ...


class ContactProgress(Protocol):
    """How far the contact merge is behind the delivery events."""

    async def wait_caught_up(self, timeout_s: float) -> int:
        """Wait until every event produced before the call is merged; events still behind."""
        ...


class ContactMergeService:
    """Merges batches of delivery-event records into contact state.

    Merges are idempotent, so a replayed batch changes nothing. Invalid records are skipped
    here: detection, which reads the same records, dead-letters them with their reason.
    """

    def __init__(self, sink: ContactSink, *, max_future_skew_ms: int = 15 * 60_000) -> None:
        self._sink = sink
        self._max_future_skew_ms = max_future_skew_ms

    async def apply(self, records: Sequence[RawRecord]) -> int:
        """Merge the batch's valid events; returns how many were merged.

        Raises StoreUnavailableError when Redis fails: the batch must then be read again.
        """
        parsed = parse_batch(records, self._max_future_skew_ms)
        events = [p[0] for p in parsed if not isinstance(p, InvalidInputError)]
        if not events:
            return 0
        try:
            await self._sink.apply_events(events)
        except (StoreUnavailableError, PublishError):
            raise
        except Exception:  # the one catch-all: a bug on one event must not stall the stream
            if len(records) == 1:
                record = records[0]
                log.exception(
                    "contact merge failed on a record; skipped",
                    extra={"partition": record.partition, "offset": record.offset},
                )
                return 0
            merged = 0
            for record in records:
                merged += await self.apply([record])
            return merged
        return len(events)
