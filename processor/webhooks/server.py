"""The webhook receiver's HTTP app: authenticate each request, normalize it, publish it whole.

Kafka and Redis failures become 503 here, once (the provider retries; event ids are stable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol, assert_never

import msgspec
from aiohttp import web
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from processor.adapters.kafka import ConfirmedPublisher
from processor.adapters.keys import Keys
from processor.adapters.providers import NormalizeResult, Provider, normalize
from processor.adapters.providers.base import FieldError, parse_json
from processor.errors import PublishError
from processor.logs import address_hash
from processor.webhooks.auth import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    AuthenticationError,
    MissingCredentialsError,
    SendgridSignature,
    authenticate_basic,
    authenticate_mailgun,
    authenticate_sns,
    sendgrid_signature,
    verify_sendgrid,
)
from processor.webhooks.batch import (
    RAW_ROLE,
    Accepted,
    answer,
    build_messages,
    log_subscriptions,
    outcomes,
    raw_topic_name,
)
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping

    from redis.asyncio import Redis

    from processor.config.settings import Settings
    from processor.webhooks.credentials import Credentials

log = logging.getLogger(__name__)

_READ_CHUNK: Final = 64 * 1024
_BASIC: Final = frozenset({Provider.POSTMARK, Provider.SPARKPOST, Provider.KUMOMTA})
_BASIC_CHALLENGE: Final = 'Basic realm="sendguard webhooks"'


class WebhookProducer(Protocol):
    """What the receiver needs of a Kafka producer (aiokafka's AIOKafkaProducer)."""

    async def start(self) -> None: ...  # noqa: D102  # connect, once, when the app starts
    async def stop(self) -> None: ...  # noqa: D102  # flush and disconnect, once, at app cleanup
    async def send(  # noqa: D102  # queue a record; the awaitable resolves on the broker's ack
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]: ...


class RefusedError(Exception):
    """A request answered with an error status; the handler turns it into the JSON answer."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
        unreadable: bool = False,
        **details: Any,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers
        self.unreadable = unreadable
        """The rest of the body cannot or should not be read (broken, too slow, gone)."""
        self.details = details

    def response(self, request_id: str) -> web.Response:
        """The JSON error answer."""
        body = {"error": self.error, "reason": self.reason, "request_id": request_id}
        return web.json_response({**body, **self.details}, status=self.status, headers=self.headers)


async def _read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The body; refused when over `limit` bytes, unfinished after `timeout_s` or undecodable.

    The limit is checked by Content-Length and by what actually came (after decompression).
    """
    too_large = RefusedError(413, "too_large", f"the body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(_READ_CHUNK):
                size += len(chunk)  # decoded bytes: a gzip bomb stops at the limit too
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError as exc:
        reason = f"the body did not arrive within {timeout_s:g} s"
        raise RefusedError(408, "timeout", reason, unreadable=True) from exc
    except web.RequestPayloadError as exc:
        reason = "the body cannot be decoded (Content-Encoding or framing)"
        raise RefusedError(400, "invalid_body", reason, unreadable=True) from exc
    except ConnectionResetError as exc:  # the client went away: nobody reads the answer
        reason = "the client closed the connection"
        raise RefusedError(400, "connection_lost", reason, unreadable=True) from exc
    return b"".join(chunks)


_RECORDS: Final = msgspec.json.Decoder(list[msgspec.Raw])
"""Splits a JSON array into its records' bytes without building them: counts a batch cheaply."""


def _record_count(body: bytes) -> int | None:
    """How many records a JSON array body holds; None when it is not one (judged later)."""
    try:
        return len(_RECORDS.decode(body))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


async def _answer_and_hang_up(request: web.Request, response: web.Response) -> None:
    """Send the answer, then close the connection at once.

    Otherwise aiohttp lingers, reading up to 10 s more of a body we gave up on (a slow client
    keeps its connection), or logs a traceback when that body cannot be decoded.
    """
    with contextlib.suppress(ConnectionError):  # the client may be gone already
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()


def _parse(body: bytes, provider: Provider) -> Any:
    """The JSON body of a provider whose credentials are inside it."""
    try:
        return parse_json(body, provider.value)
    except FieldError as exc:
        raise RefusedError(400, "invalid_body", exc.problem) from exc


@contextlib.contextmanager
def _refusals(provider: Provider) -> Iterator[None]:
    """Authentication failures as answers: missing credentials 401, anything else wrong 403."""
    try:
        yield
    except MissingCredentialsError as exc:
        challenge = {"WWW-Authenticate": _BASIC_CHALLENGE} if provider in _BASIC else None
        raise RefusedError(401, "unauthenticated", exc.reason, headers=challenge) from exc
    except AuthenticationError as exc:
        raise RefusedError(403, "forbidden", exc.reason) from exc


@dataclass
class _Receiver:
    """The request handlers and everything they share."""

    settings: Settings
    credentials: Credentials
    producer: WebhookProducer
    redis: Redis
    keys: Keys
    publisher: ConfirmedPublisher
    producer_started: bool = False

    @property
    def token_ttl_s(self) -> int:
        """How long a Mailgun token is remembered: past the freshness window on both sides."""
        return math.ceil(2 * self.settings.webhook_max_age_s) + 60

    async def healthz(self, _request: web.Request) -> web.Response:
        """`GET /healthz`: ok once the Kafka producer is started."""
        if self.producer_started:
            return web.json_response({"status": "ok"})
        return web.json_response(
            {"status": "unavailable", "reason": "the Kafka producer is not started"}, status=503
        )

    async def webhook(self, request: web.Request) -> web.Response:
        """`POST /webhooks/{provider}[/{tenant}]`."""
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        context = {
            "request_id": request_id,
            "provider": request.match_info["provider"],
            "url_tenant": request.match_info.get("tenant"),
            "remote": request.remote,
        }
        try:
            reply = await self._process(request, request_id)
        except RefusedError as exc:
            level = logging.ERROR if exc.status >= 500 else logging.WARNING  # noqa: PLR2004  # 5xx
            log.log(
                level,
                "webhook refused: %s",
                exc.reason,
                extra={**context, "status": exc.status, "error": exc.error, **exc.details},
            )
            response = exc.response(request_id)
            response.force_close()  # no keep-alive after a refusal
            if exc.unreadable:
                await _answer_and_hang_up(request, response)
            return response
        log.info(
            "webhook accepted",
            extra={**context, **reply, "duration_ms": round(1000 * (time.monotonic() - started))},
        )
        return web.json_response(reply)

    async def _process(self, request: web.Request, request_id: str) -> dict[str, Any]:
        try:
            provider = Provider(request.match_info["provider"])
        except ValueError as exc:
            raise RefusedError(404, "unknown_provider", "no such provider") from exc
        url_tenant = request.match_info.get("tenant")
        now = time.time()
        # Whatever the headers alone can refuse is refused before a byte of the body is read.
        early = self._before_body(provider, url_tenant, request, now)
        body = await _read_body(
            request, self.settings.webhook_max_body_bytes, self.settings.webhook_body_timeout_s
        )
        tenant_id, token_key = await self._authenticate(provider, url_tenant, body, now, early)
        try:
            return await self._accept(
                provider, tenant_id, request=request, body=body, now=now, request_id=request_id
            )
        except Exception:
            if token_key is not None:  # let the provider's retry of this very request through
                await self._release(token_key)
            raise

    def _candidates(self, provider: Provider, url_tenant: str | None) -> int:
        """How many credentials a request to this provider (and URL tenant) may verify against."""
        creds = self.credentials
        match provider:
            case Provider.SENDGRID:
                return len(creds.sendgrid_keys(url_tenant))
            case Provider.MAILGUN:
                return len(creds.mailgun_keys(url_tenant))
            case Provider.POSTMARK | Provider.SPARKPOST | Provider.KUMOMTA:
                return len(creds.basic_accounts(provider, url_tenant))
            case Provider.SES:
                return len(creds.sns_topics(url_tenant))
            case _:
                assert_never(provider)

    def _before_body(
        self, provider: Provider, url_tenant: str | None, request: web.Request, now: float
    ) -> str | SendgridSignature | None:
        """The checks the headers allow: the basic-auth tenant, SendGrid's decoded headers."""
        with _refusals(provider):
            if not self._candidates(provider, url_tenant):
                raise RefusedError(
                    403, "forbidden", f"no {provider.value} credential is configured for this URL"
                )
            match provider:
                case Provider.SENDGRID:
                    return sendgrid_signature(
                        signature=request.headers.get(SENDGRID_SIGNATURE_HEADER),
                        timestamp=request.headers.get(SENDGRID_TIMESTAMP_HEADER),
                        now=now,
                        max_age_s=self.settings.webhook_max_age_s,
                    )
                case Provider.POSTMARK | Provider.SPARKPOST | Provider.KUMOMTA:
                    return authenticate_basic(
                        request.headers.get("Authorization"),
                        self.credentials.basic_accounts(provider, url_tenant),
                    )
                case Provider.MAILGUN | Provider.SES:  # their credentials are in the body
                    return None
                case _:
                    assert_never(provider)

    async def _authenticate(
        self,
        provider: Provider,
        url_tenant: str | None,
        body: bytes,
        now: float,
        early: str | SendgridSignature | None,
    ) -> tuple[str, str | None]:
        """The tenant of the verified credential, and the Redis key of a claimed Mailgun token."""
        creds = self.credentials
        settings = self.settings
        with _refusals(provider):
            if isinstance(early, str):  # basic auth: verified from the header already
                return early, None
            if isinstance(early, SendgridSignature):
                return verify_sendgrid(early, body, creds.sendgrid_keys(url_tenant)), None
            if provider is Provider.MAILGUN:
                identity = authenticate_mailgun(
                    _parse(body, provider),
                    creds.mailgun_keys(url_tenant),
                    now=now,
                    max_age_s=settings.webhook_max_age_s,
                )
                key = self.keys.webhook_token(provider.value, identity.token)
                await self._claim(key)
                return identity.tenant_id, key
            if provider is Provider.SES:
                tenant_id = authenticate_sns(
                    _parse(body, provider),
                    creds.sns_topics(url_tenant),
                    now=now,
                    max_age_s=settings.webhook_sns_max_age_s,
                )
                return tenant_id, None
        raise AssertionError(provider)  # pragma: no cover  # _before_body covers every provider

    async def _claim(self, key: str) -> None:
        """Remember a Mailgun token; refuse it if it was already there (a replay)."""
        try:
            claimed = await self.redis.set(key, b"1", nx=True, ex=self.token_ttl_s)
        except RedisError as exc:
            raise RefusedError(
                503, "unavailable", "the replay store (Redis) is unavailable; retry later"
            ) from exc
        if not claimed:
            raise RefusedError(403, "forbidden", "this Mailgun token was already used (replay)")

    async def _release(self, key: str) -> None:
        try:
            await self.redis.delete(key)
        except RedisError as exc:
            log.warning("could not release a webhook token", extra={"error": str(exc)})

    def _normalize(self, provider: Provider, tenant_id: str, body: bytes) -> NormalizeResult:
        """The body's events, ignored and rejected records; more than the allowed records: 413.

        The cap bounds the work one request can cause (each record costs microseconds; a
        megabyte of `{}` is 350,000 records); it is checked before the records are built.
        A body that is not JSON is one rejection.
        """
        limit = self.settings.webhook_max_records
        count = _record_count(body)
        if count is not None and count > limit:
            raise RefusedError(
                413, "too_many_records", f"the batch has {count} records, over {limit}"
            )
        try:
            payload = parse_json(body, provider.value)
        except FieldError as exc:
            return NormalizeResult(rejected=(exc.rejection(None),))
        attribution = self.credentials.attribution(tenant_id)
        return normalize(provider, payload, tenant_id=tenant_id, attribution=attribution)

    async def _accept(
        self,
        provider: Provider,
        tenant_id: str,
        *,
        request: web.Request,
        body: bytes,
        now: float,
        request_id: str,
    ) -> dict[str, Any]:
        """Normalize, publish the whole batch with its raw record, and describe the outcome."""
        result = self._normalize(provider, tenant_id, body)
        if not result.events and result.rejected:
            raise RefusedError(
                400,
                "rejected",
                "no event of the payload could be used",
                tenant_id=tenant_id,
                rejected=outcomes(result.rejected),
                rejected_count=len(result.rejected),
            )
        accepted = Accepted(
            request_id=request_id,
            provider=provider,
            tenant_id=tenant_id,
            received_at=datetime.fromtimestamp(now, UTC),
            headers=request.headers,
            body=body,
            result=result,
        )
        messages = build_messages(accepted, raw_topic=raw_topic_name(self.settings))
        try:
            async with asyncio.timeout(self.settings.webhook_publish_timeout_s):
                await self.publisher.publish(messages)
        except (PublishError, TimeoutError) as exc:
            raise RefusedError(
                503, "unavailable", "Kafka did not acknowledge the batch; retry later"
            ) from exc
        for event in result.events:
            log.debug(
                "webhook event published",
                extra={
                    "request_id": request_id,
                    "event_id": event.event_id,
                    "type": event.type.value,
                    "campaign_id": event.campaign_id,
                    "recipient_hash": address_hash(event.recipient.address),
                },
            )
        log_subscriptions(accepted)
        return answer(accepted)


_RECEIVER: Final = web.AppKey("webhook_receiver", _Receiver)


async def _producer_lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Start the producer with the app and stop it with the app."""
    receiver = app[_RECEIVER]
    try:
        await receiver.producer.start()
    except KafkaError as exc:
        await receiver.producer.stop()
        raise PublishError(f"starting the Kafka producer failed: {exc}") from exc
    receiver.producer_started = True
    try:
        yield
    finally:
        receiver.producer_started = False
        await receiver.producer.stop()


def create_webhook_app(
    settings: Settings,
    credentials: Credentials,
    producer: WebhookProducer,
    redis: Redis,
) -> web.Application:
    """The receiver's aiohttp app. It starts and stops `producer`; `redis` stays the caller's.

    Routes: `POST /webhooks/{provider}` (the credential identifies the tenant),
    `POST /webhooks/{provider}/{tenant}` (only that tenant's credential is tried) and
    `GET /healthz`.
    """

    async def send(topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        return await producer.send(topic, value=value, key=key)

    topics = {
        TopicRole.DELIVERY_EVENTS.value: settings.topic(TopicRole.DELIVERY_EVENTS),
        TopicRole.DEAD_LETTER.value: settings.topic(TopicRole.DEAD_LETTER),
        RAW_ROLE: raw_topic_name(settings),
    }
    receiver = _Receiver(
        settings,
        credentials,
        producer,
        redis,
        Keys(settings.redis_key_prefix),
        ConfirmedPublisher(send, topics),
    )
    app = web.Application(client_max_size=settings.webhook_max_body_bytes)
    app[_RECEIVER] = receiver
    app.cleanup_ctx.append(_producer_lifecycle)
    app.router.add_get("/healthz", receiver.healthz)
    app.router.add_post("/webhooks/{provider}", receiver.webhook)
    app.router.add_post("/webhooks/{provider}/{tenant}", receiver.webhook)
    return app


async def run_webhooks(
    settings: Settings,
    credentials: Credentials,
    producer: WebhookProducer,
    redis: Redis,
    *,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (or `stop` is set), then drain requests and stop Kafka.

    Raises:
        PublishError: the Kafka producer could not start.
        OSError: the address cannot be bound.
    """
    runner = web.AppRunner(create_webhook_app(settings, credentials, producer, redis))
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
