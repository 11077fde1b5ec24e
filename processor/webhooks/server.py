"""The webhook receiver's aiohttp app: routes, the Kafka producer's lifecycle, serving.

The request handling is `receiver.WebhookReceiver`; its refusals are in `refusals`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web
from aiokafka.errors import KafkaError

from processor.adapters.kafka import ConfirmedPublisher
from processor.adapters.keys import Keys
from processor.adapters.metrics import PrometheusRedisCalls
from processor.adapters.providers import Provider
from processor.adapters.redis_tokens import WebhookTokens
from processor.errors import PublishError
from processor.webhooks.batch import RAW_ROLE, raw_topic_name
from processor.webhooks.receiver import WebhookReceiver, token_ttl_s
from processor.webhooks.unsubscribe import OneClickUnsubscribe, RedactingAccessLogger
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aiohttp.typedefs import Middleware
    from redis.asyncio import Redis

    from processor.adapters.metrics import Metrics
    from processor.config.settings import Settings
    from processor.webhooks.credentials import Credentials

log = logging.getLogger(__name__)


class WebhookProducer(Protocol):
    """What the receiver needs of a Kafka producer (aiokafka's AIOKafkaProducer)."""

    async def start(self) -> None: ...  # noqa: D102  # connect, once, when the app starts
    async def stop(self) -> None: ...  # noqa: D102  # flush and disconnect, once, at app cleanup
    async def send(  # noqa: D102  # queue a record; the awaitable resolves on the broker's ack
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]: ...


_RECEIVER: Final = web.AppKey("webhook_receiver", WebhookReceiver)


async def _producer_lifecycle(
    producer: WebhookProducer, app: web.Application
) -> AsyncIterator[None]:
    """Start the producer with the app and stop it with the app."""
    receiver = app[_RECEIVER]
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise PublishError(f"starting the Kafka producer failed: {exc}") from exc
    receiver.producer_started = True
    try:
        yield
    finally:
        receiver.producer_started = False
        await producer.stop()


def create_webhook_app(
    settings: Settings,
    credentials: Credentials,
    producer: WebhookProducer,
    redis: Redis,
    metrics: Metrics | None = None,
) -> web.Application:
    """The receiver's aiohttp app. It starts and stops `producer`; `redis` stays the caller's.

    Routes: `POST /webhooks/{provider}` (the credential identifies the tenant),
    `POST /webhooks/{provider}/{tenant}` (only that tenant's credential is tried),
    `POST /unsubscribe/{token}` (RFC 8058 one-click, docs/MAIL.md) and `GET /healthz`. With
    `metrics`, answers are counted by provider and status (served on the metrics port, never
    on this public one).
    """

    async def send(topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        return await producer.send(topic, value=value, key=key)

    topics = {
        TopicRole.DELIVERY_EVENTS.value: settings.topic(TopicRole.DELIVERY_EVENTS),
        TopicRole.DEAD_LETTER.value: settings.topic(TopicRole.DEAD_LETTER),
        TopicRole.CONTACT_UPDATES.value: settings.topic(TopicRole.CONTACT_UPDATES),
        RAW_ROLE: raw_topic_name(settings),
    }
    calls = None if metrics is None else PrometheusRedisCalls(metrics)
    tokens = WebhookTokens(
        redis, Keys(settings.redis_key_prefix), ttl_s=token_ttl_s(settings), calls=calls
    )
    publisher = ConfirmedPublisher(send, topics)
    receiver = WebhookReceiver(settings, credentials, tokens, publisher)
    middlewares = [] if metrics is None else [_counted(metrics)]
    app = web.Application(client_max_size=settings.webhook_max_body_bytes, middlewares=middlewares)
    app[_RECEIVER] = receiver
    app.cleanup_ctx.append(partial(_producer_lifecycle, producer))
    app.router.add_get("/healthz", receiver.healthz)
    app.router.add_post("/webhooks/{provider}", receiver.webhook)
    app.router.add_post("/webhooks/{provider}/{tenant}", receiver.webhook)
    app.router.add_post("/unsubscribe/{token}", OneClickUnsubscribe(settings, publisher).handle)
    return app


_PROVIDER_LABELS: Final = frozenset(p.value for p in Provider)


def _counted(metrics: Metrics) -> Middleware:
    """Count webhook answers by provider and status (unknown provider names as `unknown`)."""

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith("/webhooks/"):
            return await handler(request)
        name = request.match_info.get("provider", "")
        provider = name if name in _PROVIDER_LABELS else "unknown"  # URL text: bound the labels
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.webhook_requests.labels(provider, str(exc.status)).inc()
            raise
        metrics.webhook_requests.labels(provider, str(response.status)).inc()
        return response

    return count


async def run_webhooks(
    settings: Settings,
    credentials: Credentials,
    producer: WebhookProducer,
    redis: Redis,
    *,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or `stop` is set), then drain requests and stop Kafka.

    Raises:
        PublishError: the Kafka producer could not start.
        OSError: the address cannot be bound.
    """
    runner = web.AppRunner(
        create_webhook_app(settings, credentials, producer, redis, metrics),
        access_log_class=RedactingAccessLogger,
    )
    await runner.setup()
    loop = asyncio.get_running_loop()
    stopping = stop or asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    try:
        await web.TCPSite(runner, host, port).start()
        log.info(
            "webhook receiver listening",
            extra={
                "addresses": [str(a) for a in runner.addresses],
                "tenants": len(credentials.tenant_ids),
            },
        )
        for sig in signals:
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("webhook receiver stopping")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await runner.cleanup()
