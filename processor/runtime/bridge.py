"""Runs a bridge: the control topic in a consumer group of its own, into an HTTP target.

Settings -> Redis ledger, dead-letter producer, HTTP session, applier -> BridgeService, read
one command per poll and committed once it was applied, skipped or dead-lettered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from processor.adapters.batch_consumer import BatchConsumer
from processor.adapters.http_bridge import KumoSuspendApi, SignedWebhook, authorization_header
from processor.adapters.kafka import ConfirmedPublisher, client_options, declare_topics
from processor.adapters.keys import Keys
from processor.adapters.redis_bridge import RedisBridgeLedger
from processor.errors import ConfigurationError, PublishError, SendguardError
from processor.ports.bridge import CountingMetrics
from processor.runtime.bootstrap import build_redis
from processor.services.bridge import (
    BridgeService,
    CommandApplier,
    KumoApplier,
    RetryPolicy,
    WebhookApplier,
)
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from processor.config.settings import Settings
    from processor.ports.bridge import BridgeLedger, BridgeMetrics

log = logging.getLogger(__name__)

_DAY_S = 86400


@dataclass(frozen=True)
class BridgeTarget:
    """One bridge: its name (consumer group `<app_id>-bridge-<name>`, ledger keys) and target."""

    name: str
    make_applier: Callable[[aiohttp.ClientSession, BridgeLedger], CommandApplier]
    suspension_ttl_s: int


def kumomta_target(settings: Settings, url: str, expiry_s: int) -> BridgeTarget:
    """The KumoMTA bridge: pauses become suspensions lasting `expiry_s` unless lifted."""
    token = settings.bridge_kumomta_token
    password = settings.bridge_kumomta_password
    auth = authorization_header(
        token=token.get_secret_value() if token else None,
        username=settings.bridge_kumomta_username,
        password=password.get_secret_value() if password else None,
    )

    def make(session: aiohttp.ClientSession, ledger: BridgeLedger) -> CommandApplier:
        return KumoApplier(KumoSuspendApi(session, url, auth), ledger, expiry_s=expiry_s)

    # The ledger's ids outlive the MTA's suspensions, which expire by themselves.
    return BridgeTarget("kumomta", make, expiry_s + _DAY_S)


def webhook_target(settings: Settings, url: str, name: str) -> BridgeTarget:
    """A webhook bridge named `webhook-<name>`: commands posted, signed, to `url`."""
    secrets = [
        s.get_secret_value().encode()
        for s in (settings.bridge_webhook_secret, settings.bridge_webhook_previous_secret)
        if s is not None
    ]
    if settings.bridge_webhook_secret is None:
        raise ConfigurationError(
            "SENDGUARD_BRIDGE_WEBHOOK_SECRET is not set: the webhook bridge signs every post "
            "(docs/BRIDGES.md)"
        )

    def make(session: aiohttp.ClientSession, ledger: BridgeLedger) -> CommandApplier:
        return WebhookApplier(SignedWebhook(session, url, secrets, {}), ledger)

    return BridgeTarget(f"webhook-{name}", make, _DAY_S)


async def run_bridge(
    settings: Settings,
    target: BridgeTarget,
    *,
    stop: asyncio.Event | None = None,
    metrics: BridgeMetrics | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Bridge the control topic to the target until SIGTERM/SIGINT (or `stop`).

    Raises:
        SendguardError: Kafka or Redis failed; the command in flight was not committed.
    """
    await declare_topics(settings)
    redis = build_redis(settings)
    ledger = RedisBridgeLedger(
        redis,
        Keys(settings.redis_key_prefix),
        target.name,
        suspension_ttl_s=target.suspension_ttl_s,
    )
    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        client_id=f"{settings.app_id}-bridge-{target.name}",
    )
    session = aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=settings.bridge_request_timeout_s)
    )
    consumer: BatchConsumer | None = None
    try:
        try:
            await producer.start()
        except KafkaError as exc:
            raise PublishError(f"cannot start the dead-letter producer: {exc}") from exc

        async def send(topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
            delivery: Awaitable[Any] = await producer.send(topic, value=value, key=key)
            return delivery

        dead_letters = TopicRole.DEAD_LETTER.value
        publisher = ConfirmedPublisher(send, {dead_letters: settings.topic(TopicRole.DEAD_LETTER)})
        service = BridgeService(
            target.name,
            target.make_applier(session, ledger),
            ledger,
            publisher,
            metrics if metrics is not None else CountingMetrics(),
            retry=RetryPolicy(
                settings.bridge_max_attempts,
                settings.bridge_backoff_initial_s,
                settings.bridge_backoff_max_s,
            ),
            now=lambda: datetime.now(UTC),
            sleep=sleep,
        )
        # One command per poll: a failing one may take minutes of retries, and a batch of them
        # would outlast the poll interval Kafka allows before it takes the partitions away.
        one_at_a_time = settings.model_copy(update={"batch_max_events": 1})
        consumer = BatchConsumer(
            one_at_a_time,
            settings.topic(TopicRole.CONTROL),
            f"bridge-{target.name}",
            service.handle,
        )
        await consumer.start()
        log.info(
            "bridge started",
            extra={"bridge": target.name, "group": consumer.group_id},
        )
        await _until_stopped(consumer, stop or asyncio.Event())
    finally:
        if consumer is not None:
            await consumer.stop()
        await session.close()
        await producer.stop()
        await redis.aclose()
    if consumer is not None and consumer.failed is not None:
        raise SendguardError(f"bridge {target.name} stopped: {consumer.failed}")


async def _until_stopped(consumer: BatchConsumer, stopping: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stopping.set)
    try:
        while consumer.failed is None and not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=0.5)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("bridge stopping")
