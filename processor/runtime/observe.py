"""Feeds the Prometheus metrics from what the use cases already report: batches and messages.

The services stay unaware of Prometheus: a batch's report and the messages it published say
what happened, and this module turns them into metric samples.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from processor.domain.windows import Counter
from processor.errors import PublishError, StoreUnavailableError
from schemas.control import PauseCommand, ResumeCommand, read_control
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from processor.adapters.metrics import Metrics
    from processor.ports.detection_store import OutboxMessage
    from processor.ports.publishing import Publisher
    from processor.ports.records import RawRecord
    from schemas.control import TriggerEvent

log = logging.getLogger(__name__)

EVENT_TYPES = tuple(counter.name.lower() for counter in Counter)
"""The `type` labels of sendguard_events_applied_total: the window counters (sent, delivered,
hard_bounce, soft_bounce, block, complaint, ...), indexed like `BatchReport.applied_by_counter`."""

TRACKED_CAMPAIGNS_MAX = 200_000
"""Campaign statuses remembered for the by-status gauge; the oldest are forgotten beyond it."""


class ObservedPublisher:
    """A publisher whose acknowledged messages are counted (every use case publishes via it)."""

    def __init__(self, inner: Publisher, observer: Observer) -> None:
        self._inner = inner
        self._observer = observer

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """See `Publisher.publish`; counted only once acknowledged."""
        await self._inner.publish(messages)
        self._observer.observe_published(messages)


class BatchOutcome(Protocol):
    """What a detection batch reports (processor.services.detection.BatchReport)."""

    @property
    def applied(self) -> int: ...  # noqa: D102 - the report's own field
    @property
    def duplicates(self) -> int: ...  # noqa: D102 - the report's own field
    @property
    def replayed(self) -> int: ...  # noqa: D102 - the report's own field
    @property
    def late(self) -> int: ...  # noqa: D102 - the report's own field
    @property
    def applied_by_counter(self) -> tuple[int, ...]: ...  # noqa: D102 - the report's own field
    @property
    def published(self) -> list[OutboxMessage]: ...  # noqa: D102 - the report's own field


_Report = TypeVar("_Report", bound=BatchOutcome)


class Observer:
    """Turns batch reports and published messages into samples of one `Metrics`."""

    def __init__(self, metrics: Metrics, *, clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics
        self._clock = clock
        self._statuses: OrderedDict[str, str] = OrderedDict()
        self._status_counts: dict[str, int] = {}
        self._cache_seen: dict[str, int] = {}
        # One series per event type, born at 0 so that rate() sees the first event of a type.
        self._applied_by_counter = [metrics.events_applied.labels(type_) for type_ in EVENT_TYPES]

    def observed(
        self, apply: Callable[[Sequence[RawRecord]], Awaitable[_Report]]
    ) -> Callable[[Sequence[RawRecord]], Awaitable[_Report]]:
        """`apply`, timed and counted; failures counted by kind and re-raised."""
        metrics = self.metrics

        async def handle(records: Sequence[RawRecord]) -> _Report:
            started = time.perf_counter()
            try:
                report = await apply(records)
            except (StoreUnavailableError, PublishError) as exc:
                metrics.batch_failures.labels(type(exc).__name__).inc()
                raise
            self._safely(self._applied, report, records, time.perf_counter() - started)
            return report

        return handle

    def _applied(self, report: BatchOutcome, records: Sequence[RawRecord], seconds: float) -> None:
        metrics = self.metrics
        metrics.batch_seconds.observe(seconds)
        metrics.batch_events.observe(len(records))
        metrics.last_batch_timestamp.set(self._clock())
        self.batch(report, records)

    def _safely(self, observe: Callable[..., None], *args: Any) -> None:
        """Run one observation; a failure is logged and never reaches detection."""
        try:
            observe(*args)
        except Exception:  # the one catch-all here: metrics must never stop a safety system
            log.exception("metrics not recorded")

    def batch(self, report: BatchOutcome, records: Sequence[RawRecord]) -> None:
        """Count what one applied batch did.

        A report may correct an earlier one downwards (a held campaign folded again from the
        store after another worker applied some of its events): counters only go up, so such a
        correction is left out, and the counters may run a few events high after that race.
        """
        metrics = self.metrics
        for series, count in zip(self._applied_by_counter, report.applied_by_counter, strict=True):
            if count > 0:
                series.inc(count)
        for why, count in (
            ("duplicate", report.duplicates),
            ("replayed", report.replayed),
            ("late", report.late),
        ):
            if count > 0:
                metrics.events_skipped.labels(why).inc(count)
        timestamps: dict[tuple[str, int, int], int] | None = None
        for message in report.published:
            if message.role != TopicRole.CONTROL:
                continue
            command = read_control(message.value)
            if isinstance(command, PauseCommand) and command.trigger is not None:
                if timestamps is None:
                    timestamps = {
                        (r.topic, r.partition, r.offset): r.timestamp_ms
                        for r in records
                        if r.timestamp_ms is not None
                    }
                self._decision_latency(command.trigger, timestamps)

    def observe_published(self, messages: Iterable[OutboxMessage]) -> None:
        """`published`, whose failure is logged and never reaches the publisher's caller."""
        self._safely(self.published, messages)

    def published(self, messages: Iterable[OutboxMessage]) -> None:
        """Count acknowledged messages: commands, dead letters, health statuses."""
        for message in messages:
            role = message.role
            if role == TopicRole.DEAD_LETTER:
                reason = _field(message.value, "error_type") or "unknown"
                self.metrics.dead_letters.labels(reason).inc()
            elif role == TopicRole.HEALTH:
                self._status(message)
            elif role == TopicRole.CONTROL:
                command = read_control(message.value)
                if isinstance(command, ResumeCommand):
                    self.metrics.commands_published.labels("resume", "campaign").inc()
                else:
                    self.metrics.commands_published.labels("pause", command.scope.value).inc()

    def state_cache(self, hits: int, misses: int) -> None:
        """Bring the cache counters up to the detection service's running totals."""
        counter = self.metrics.state_cache
        for result, total in (("hit", hits), ("miss", misses)):
            seen = self._cache_seen.get(result, 0)
            if total > seen:
                counter.labels(result).inc(total - seen)
                self._cache_seen[result] = total

    def _decision_latency(
        self, trigger: TriggerEvent, timestamps: dict[tuple[str, int, int], int]
    ) -> None:
        if trigger.topic is None or trigger.partition is None or trigger.offset is None:
            return  # replayed from a file: no Kafka timestamp to measure from
        at_ms = timestamps.get((trigger.topic, trigger.partition, trigger.offset))
        if at_ms is not None:
            self.metrics.decision_seconds.observe(max(0.0, self._clock() - at_ms / 1000))

    def _status(self, message: OutboxMessage) -> None:
        status = _field(message.value, "status")
        if status is None:
            return
        statuses, counts = self._statuses, self._status_counts
        previous = statuses.pop(message.key, None)
        if previous is not None:
            counts[previous] -= 1
        statuses[message.key] = status
        counts[status] = counts.get(status, 0) + 1
        if len(statuses) > TRACKED_CAMPAIGNS_MAX:
            _, forgotten = statuses.popitem(last=False)
            counts[forgotten] -= 1
        for name in (status, previous):
            if name is not None:
                self.metrics.campaigns_by_status.labels(name).set(counts[name])


def _parse(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError:
        log.warning("published message is not JSON; not counted by type")
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _field(value: str, name: str) -> str | None:
    found = _parse(value).get(name)
    return str(found) if found is not None else None
