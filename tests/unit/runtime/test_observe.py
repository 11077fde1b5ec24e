"""Batch reports and published messages become metric samples (processor.runtime.observe)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from processor.adapters.metrics import Metrics
from processor.domain.windows import Counter
from processor.errors import PublishError, StoreUnavailableError
from processor.ports.detection_store import OutboxMessage
from processor.ports.records import RawRecord
from processor.runtime.observe import EVENT_TYPES, ObservedPublisher, Observer
from processor.services.campaign_fold import NO_TALLY
from processor.services.detection import BatchReport
from schemas.control import PauseCommand, PauseScope, TriggerEvent
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Sequence

NOW_S = 1_800_000_000.0
AT = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def _pause(offset: int) -> OutboxMessage:
    command = PauseCommand(
        command_id="p1",
        scope=PauseScope.CAMPAIGN,
        tenant_id="acme",
        campaign_id="c1",
        episode=1,
        policy_version="v",
        decided_at=AT,
        trigger=TriggerEvent(
            event_id="e1", occurred_at=AT, topic="events", partition=0, offset=offset
        ),
        evidence=None,
    )
    return OutboxMessage(TopicRole.CONTROL.value, "acme:c1", command.model_dump_json())


def _record(offset: int, timestamp_ms: int) -> RawRecord:
    return RawRecord("events", 0, offset, b"acme:c1", b"{}", timestamp_ms)


def _health(key: str, status: str) -> OutboxMessage:
    return OutboxMessage(TopicRole.HEALTH.value, key, f'{{"status":"{status}"}}')


def _tally(**counts: int) -> tuple[int, ...]:
    return tuple(counts.get(counter.name.lower(), 0) for counter in Counter)


def test_a_report_counts_applied_events_by_type_and_skipped_ones_by_why() -> None:
    """Applied events add up per event type; duplicates, replays and late events by why."""
    metrics = Metrics("test")
    observer = Observer(metrics, clock=lambda: NOW_S)
    first = BatchReport(applied=7, duplicates=2, late=1)
    first.applied_by_counter = _tally(sent=5, hard_bounce=2)
    later = BatchReport(applied=3, replayed=4)
    later.applied_by_counter = _tally(sent=1, complaint=2)
    observer.batch(first, [])
    observer.batch(later, [])
    assert _value(metrics, "sendguard_events_applied_total", type="sent") == 6
    assert _value(metrics, "sendguard_events_applied_total", type="hard_bounce") == 2
    assert _value(metrics, "sendguard_events_applied_total", type="complaint") == 2
    assert _value(metrics, "sendguard_events_skipped_total", why="duplicate") == 2
    assert _value(metrics, "sendguard_events_skipped_total", why="replayed") == 4
    assert _value(metrics, "sendguard_events_skipped_total", why="late") == 1


def test_every_event_type_series_exists_at_zero_before_its_first_event() -> None:
    """rate() needs a series before its first increment: each type is born at 0, no 'all'."""
    metrics = Metrics("test")
    Observer(metrics)
    for type_ in EVENT_TYPES:
        found = metrics.registry.get_sample_value("sendguard_events_applied_total", {"type": type_})
        assert found == 0
    assert (
        metrics.registry.get_sample_value("sendguard_events_applied_total", {"type": "all"}) is None
    )


def test_a_pause_has_its_latency_from_the_triggering_record() -> None:
    """The latency runs from the trigger's Kafka timestamp to the clock at acknowledgement."""
    metrics = Metrics("test")
    observer = Observer(metrics, clock=lambda: NOW_S)
    records = [_record(41, int(NOW_S * 1000) - 9_000), _record(42, int(NOW_S * 1000) - 1_500)]
    observer.batch(BatchReport(applied=2, published=[_pause(42)]), records)
    assert _value(metrics, "sendguard_decision_latency_seconds_count") == 1
    assert _value(metrics, "sendguard_decision_latency_seconds_sum") == pytest.approx(1.5)


def test_a_pause_whose_trigger_is_not_in_the_batch_has_no_latency_sample() -> None:
    """A republished outbox has no triggering record at hand: not timed."""
    metrics = Metrics("test")
    Observer(metrics).batch(BatchReport(published=[_pause(42)]), [])
    assert _value(metrics, "sendguard_decision_latency_seconds_count") == 0


async def test_commands_are_counted_once_the_broker_acknowledged_them() -> None:
    """The publisher wrapper counts after `publish` returned, and not if it failed."""
    metrics = Metrics("test")
    published: list[OutboxMessage] = []

    class Broker:
        fail = False

        async def publish(self, messages: Sequence[OutboxMessage]) -> None:
            if self.fail:
                raise PublishError("down")
            published.extend(messages)

    broker = Broker()
    publisher = ObservedPublisher(broker, Observer(metrics))
    await publisher.publish([_pause(42)])
    broker.fail = True
    with pytest.raises(PublishError):
        await publisher.publish([_pause(43)])
    assert len(published) == 1
    assert (
        _value(metrics, "sendguard_commands_published_total", command="pause", scope="campaign")
        == 1
    )


def test_the_state_cache_counters_follow_the_running_totals() -> None:
    """Totals read twice add only what is new."""
    metrics = Metrics("test")
    observer = Observer(metrics)
    observer.state_cache(5, 2)
    observer.state_cache(9, 2)
    assert _value(metrics, "sendguard_state_cache_lookups_total", result="hit") == 9
    assert _value(metrics, "sendguard_state_cache_lookups_total", result="miss") == 2


def test_dead_letters_are_counted_by_reason() -> None:
    """Each dead letter counts under its error type."""
    metrics = Metrics("test")
    letters = [
        OutboxMessage(TopicRole.DEAD_LETTER.value, "k", '{"error_type":"invalid_json"}'),
        OutboxMessage(TopicRole.DEAD_LETTER.value, "k", '{"error_type":"invalid_json"}'),
        OutboxMessage(TopicRole.DEAD_LETTER.value, "k", '{"error_type":"invalid_event"}'),
    ]
    Observer(metrics).published(letters)
    assert _value(metrics, "sendguard_dead_letters_total", reason="invalid_json") == 2
    assert _value(metrics, "sendguard_dead_letters_total", reason="invalid_event") == 1


def test_campaigns_by_status_follow_each_campaigns_latest_status() -> None:
    """A campaign moving from healthy to paused leaves the healthy count and joins paused."""
    metrics = Metrics("test")
    observer = Observer(metrics)
    observer.published([_health("a:1", "healthy"), _health("a:2", "healthy")])
    observer.published([_health("a:1", "paused")])
    assert _value(metrics, "sendguard_campaigns", status="healthy") == 1
    assert _value(metrics, "sendguard_campaigns", status="paused") == 1


async def test_a_failed_batch_is_counted_by_kind_and_raised() -> None:
    """Redis unavailable: the failure is counted, and the caller still sees the error."""
    metrics = Metrics("test")

    async def broken(_records: object) -> BatchReport:
        raise StoreUnavailableError("redis down")

    handle = Observer(metrics).observed(broken)
    with pytest.raises(StoreUnavailableError):
        await handle([])
    assert _value(metrics, "sendguard_batch_failures_total", kind="StoreUnavailableError") == 1
    assert _value(metrics, "sendguard_batch_apply_seconds_count") == 0


async def test_an_applied_batch_is_timed_and_sized() -> None:
    """One observation of the batch time and of its record count per applied batch."""
    metrics = Metrics("test")

    async def apply(_records: object) -> BatchReport:
        return BatchReport(applied=2)

    handle = Observer(metrics, clock=lambda: NOW_S).observed(apply)
    await handle([_record(1, 0), _record(2, 0)])
    assert _value(metrics, "sendguard_batch_apply_seconds_count") == 1
    assert _value(metrics, "sendguard_batch_events_sum") == 2
    assert _value(metrics, "sendguard_last_batch_timestamp_seconds") == NOW_S


def test_a_downward_correction_neither_raises_nor_lowers_a_counter() -> None:
    """A negative tally (a refold after another worker's writes) is left out, not raised.

    It crashed the second worker of the scale-out test before.
    """
    metrics = Metrics("test")
    observer = Observer(metrics)
    rest = NO_TALLY[1:]
    observer.batch(BatchReport(applied=5, applied_by_counter=(5, *rest)), [])
    correction = BatchReport(applied=-2, duplicates=-1, applied_by_counter=(-2, *rest))
    observer.batch(correction, [])
    assert _value(metrics, "sendguard_events_applied_total", type="sent") == 5


async def test_a_failing_observation_never_reaches_the_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Metrics must never stop detection: a broken observation is logged, the report returned."""
    metrics = Metrics("test")
    observer = Observer(metrics)

    def broken(*_args: object) -> None:
        raise ValueError("broken metric")

    observer.batch = broken  # type: ignore[method-assign,assignment]  # a bug in the metrics
    report = BatchReport(applied=1)

    async def apply(_records: object) -> BatchReport:
        return report

    assert await observer.observed(apply)([]) is report
    assert "metrics not recorded" in caplog.text
