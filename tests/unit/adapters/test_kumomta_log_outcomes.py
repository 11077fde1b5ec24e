"""The KumoMTA log relay counts its records by outcome in the real Prometheus registry."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from processor.adapters.kafka import ConfirmedPublisher
from processor.adapters.kumomta_logs import KumoLogRelay
from processor.adapters.metrics import Metrics, PrometheusMessageOutcomes
from processor.config.settings import Settings
from processor.errors import PublishError
from processor.ports.records import RawRecord

BOUNCE = {
    "type": "Bounce",
    "id": "spool-1",
    "queue": "launch:beta@example.com",
    "recipient": "gone@example.com",
    "timestamp": int(time.time()),
    "bounce_classification": "InvalidRecipient",
    "response": {"code": 550, "content": "5.1.1 user unknown"},
}
TOPICS = {"delivery-events": "delivery-events", "dead-letter": "dead-letter"}


def _record(offset: int, value: object) -> RawRecord:
    return RawRecord("kumo-logs", 0, offset, b"k", json.dumps(value).encode(), None)


def _outcome(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value(
        "sendguard_mail_messages_total", {"source": "kumomta_logs", "outcome": outcome}
    )


async def _acknowledged(topic: str, key: bytes | None, value: bytes | None) -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result((topic, key, value))
    return done


async def _kafka_down(topic: str, key: bytes | None, value: bytes | None) -> asyncio.Future[Any]:
    raise KafkaConnectionError(f"no broker for {topic} ({key!r}, {len(value or b'')} bytes)")


def _relay(metrics: Metrics, send: Any) -> KumoLogRelay:
    outcomes = PrometheusMessageOutcomes(metrics, "kumomta_logs")
    return KumoLogRelay(
        Settings(kumomta_default_tenant=None), ConfirmedPublisher(send, TOPICS), outcomes
    )


async def test_records_are_counted_accepted_rejected_or_ignored() -> None:
    """An event is accepted, a record naming no tenant rejected, a JSON array of none ignored."""
    metrics = Metrics("test")
    relay = _relay(metrics, _acknowledged)
    await relay.handle(
        [
            _record(0, BOUNCE),
            _record(1, BOUNCE | {"id": "spool-2", "recipient": "x@example.com"}),
            _record(2, BOUNCE | {"queue": "example.com"}),
            _record(3, []),
        ]
    )
    assert _outcome(metrics, "accepted") == 2
    assert _outcome(metrics, "rejected") == 1
    assert _outcome(metrics, "ignored") == 1
    assert _outcome(metrics, "deferred") == 0


async def test_an_unacknowledged_batch_is_counted_deferred_and_nothing_else() -> None:
    """Kafka down: every record of the batch is deferred (it is read again), none accepted."""
    metrics = Metrics("test")
    relay = _relay(metrics, _kafka_down)
    with pytest.raises(PublishError):
        await relay.handle([_record(0, BOUNCE), _record(1, BOUNCE | {"queue": "example.com"})])
    assert _outcome(metrics, "deferred") == 2
    assert _outcome(metrics, "accepted") == 0
    assert _outcome(metrics, "rejected") == 0
