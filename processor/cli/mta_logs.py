"""`sendguard mta-logs`: relays KumoMTA log records from Kafka to delivery-events."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import click

from processor.errors import ConfigurationError, SendguardError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from processor.config.settings import Settings


async def _relay(settings: Settings) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from processor.adapters.batch_consumer import BatchConsumer
    from processor.adapters.kafka import ConfirmedPublisher, client_options
    from processor.adapters.kumomta_logs import ROLE, KumoLogRelay
    from processor.adapters.metrics import PrometheusMessageOutcomes
    from processor.errors import PublishError
    from processor.runtime.bootstrap import build_metrics
    from schemas.topics import TopicRole

    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        client_id=f"{settings.app_id}-{ROLE}",
    )

    async def send(topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        delivery: Awaitable[Any] = await producer.send(topic, value=value, key=key)
        return delivery

    roles = (TopicRole.DELIVERY_EVENTS, TopicRole.DEAD_LETTER)
    publisher = ConfirmedPublisher(send, {r.value: settings.topic(r) for r in roles})
    metrics, metrics_server = build_metrics(settings, ROLE)
    relay = KumoLogRelay(settings, publisher, PrometheusMessageOutcomes(metrics, "kumomta_logs"))
    if metrics_server is not None:
        metrics_server.start()  # before Kafka: a taken port is said at once, as a setting error
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        if metrics_server is not None:
            metrics_server.stop()
        raise PublishError(f"starting the Kafka producer failed: {exc}") from exc
    consumer = BatchConsumer(settings, settings.kumomta_log_topics, ROLE, relay.handle)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await consumer.start()
        while not stopping.done() and consumer.failed is None:
            await asyncio.wait([stopping], timeout=1)  # polls for a consumer failure too
    finally:
        stopping.cancel()
        await consumer.stop()
        await producer.stop()
        if metrics_server is not None:
            metrics_server.stop()
    if consumer.failed is not None:
        raise SendguardError(f"relay stopped: {consumer.failed}")


@click.command("mta-logs")
def mta_logs_command() -> None:
    """Relay KumoMTA log records from SENDGUARD_KUMOMTA_LOG_TOPICS to delivery-events.

    Commits a batch only after its events (and dead letters) were acknowledged; a Kafka
    failure stops it with exit status 2, to be restarted (docs/MAIL.md). SIGTERM stops it.
    With SENDGUARD_METRICS_PORT, serves /metrics (records by outcome, dead letters).
    """
    from processor.logs import configure_logging
    from processor.runtime.bootstrap import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.library_log_level)
    if not settings.kumomta_log_topics:
        raise ConfigurationError("SENDGUARD_KUMOMTA_LOG_TOPICS is not set (see docs/MAIL.md)")
    asyncio.run(_relay(settings))
