"""The SMTP and LMTP listener of the bounce domain and the feedback-loop address.

Each recipient is checked at RCPT (a signed VERP token or a configured plain address, else
550 5.1.1); each message is normalized and its events published before the 250 (451 when Kafka
does not acknowledge, so the sending MTA retries; event ids are stable, so a retry dedups).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiokafka.errors import KafkaError
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP

from processor.adapters.kafka import ConfirmedPublisher
from processor.adapters.mail import Envelope, MailAttribution, MailKind, normalize_mail
from processor.adapters.metrics import PrometheusMessageOutcomes
from processor.domain.signed_tokens import TokenError, read_verp_token, verp_token_of
from processor.errors import PublishError
from processor.logs import address_hash
from processor.ports.detection_store import OutboxMessage
from schemas.dead_letter import DeadLetter
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

    from aiosmtpd.smtp import Envelope as SmtpEnvelope
    from aiosmtpd.smtp import Session

    from processor.adapters.mail import MailResult
    from processor.adapters.metrics import Metrics
    from processor.config.settings import Settings

log = logging.getLogger(__name__)

DEAD_LETTER_SOURCE: Final = "smtp"
DEAD_LETTER_ERROR_TYPE: Final = "invalid_mail_report"
ACCEPTED: Final = "250 2.0.0 OK: report taken"
UNKNOWN_RECIPIENT: Final = "550 5.1.1 Recipient address rejected: no such bounce address"
TOO_MANY_RECIPIENTS: Final = "452 4.5.3 Too many recipients"
KAFKA_DOWN: Final = "451 4.3.0 Temporary failure: the event log is unavailable, try again later"
LOCAL_ERROR: Final = "451 4.3.0 Temporary local error, try again later"
REPORTED_MAX: Final = 20
"""Rejections named in one dead letter; the rest are counted."""


class MailProducer(Protocol):
    """What the listener needs of a Kafka producer (aiokafka's AIOKafkaProducer)."""

    async def start(self) -> None: ...  # noqa: D102  # connect, once, before listening
    async def stop(self) -> None: ...  # noqa: D102  # flush and disconnect, after listening
    async def send(  # noqa: D102  # queue a record; the awaitable resolves on the broker's ack
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> Awaitable[Any]: ...


def mail_attribution(settings: Settings) -> MailAttribution:
    """The attribution settings of the listener and of `sendguard normalize`."""
    return MailAttribution(
        keys=tuple(settings.token_keys()),
        verp_prefix=settings.mail_verp_prefix,
        bounce_domains=settings.mail_bounce_domains,
        tenant_headers=settings.mail_tenant_headers,
        campaign_headers=settings.mail_campaign_headers,
        contact_headers=settings.mail_contact_headers,
    )


@dataclass
class MailHandler:
    """aiosmtpd's handler: RCPT and DATA hooks (one instance serves every session)."""

    settings: Settings
    publisher: ConfirmedPublisher
    lmtp: bool = False
    outcomes: PrometheusMessageOutcomes | None = None
    attribution: MailAttribution = field(init=False)
    plain: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        self.attribution = mail_attribution(self.settings)
        self.plain = frozenset(a.strip().lower() for a in self.settings.mail_plain_addresses)

    def accepts(self, address: str) -> bool:
        """A configured plain address, or a VERP return path whose token verifies."""
        if address.strip().strip("<>").lower() in self.plain:
            return True
        token = verp_token_of(
            address,
            prefix=self.attribution.verp_prefix,
            domains=self.attribution.bounce_domains,
        )
        if token is None or not self.attribution.keys:
            return False
        try:
            read_verp_token(token, self.attribution.keys)
        except TokenError:
            return False
        return True

    async def handle_RCPT(  # noqa: N802  # aiosmtpd's hook name
        self,
        server: SMTP,  # noqa: ARG002  # part of aiosmtpd's hook signature
        session: Session,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],  # noqa: ARG002  # part of aiosmtpd's hook signature
    ) -> str:
        """Accept a known bounce or feedback address; refuse any other with 550 5.1.1."""
        if len(envelope.rcpt_tos) >= self.settings.mail_max_recipients:
            self._count("rejected")
            return TOO_MANY_RECIPIENTS
        if not self.accepts(address):
            self._count("rejected")
            log.warning(
                "mail recipient refused",
                extra={"recipient_hash": address_hash(address), "peer": str(session.peer)},
            )
            return UNKNOWN_RECIPIENT
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802  # aiosmtpd's hook name
        self,
        server: SMTP,  # noqa: ARG002  # part of aiosmtpd's hook signature
        session: Session,
        envelope: SmtpEnvelope,
    ) -> str:
        """Normalize and publish; 250 once Kafka acknowledged, 451 when it did not."""
        started = time.monotonic()
        data = envelope.original_content or b""
        recipients = tuple(envelope.rcpt_tos)
        try:
            status, outcome = await self._take(data, recipients, session)
        except Exception:  # the one catch-all: a bug must defer the mail, never lose it
            log.critical("mail could not be handled; deferred", exc_info=True)
            status, outcome = LOCAL_ERROR, "deferred"
        self._count(outcome)
        log.debug(
            "mail answered", extra={"duration_ms": round(1000 * (time.monotonic() - started))}
        )
        # LMTP answers DATA once per recipient (RFC 2033); every recipient shares the outcome.
        return "\r\n".join([status] * len(recipients)) if self.lmtp else status

    def _count(self, outcome: str) -> None:
        if self.outcomes is not None:
            self.outcomes.count(outcome)

    async def _take(
        self, data: bytes, recipients: tuple[str, ...], session: Session
    ) -> tuple[str, str]:
        """The answer to a message and its outcome (see `PrometheusMessageOutcomes`)."""
        received_at = datetime.now(UTC)
        outcome = normalize_mail(data, Envelope(received_at, recipients), self.attribution)
        messages = _messages(outcome, data, received_at)
        if messages:
            try:
                async with asyncio.timeout(self.settings.mail_publish_timeout_s):
                    await self.publisher.publish(messages)
            except (PublishError, TimeoutError) as exc:
                log.error("mail deferred: Kafka did not acknowledge", extra={"error": str(exc)})  # noqa: TRY400  # the reason is the message; no traceback wanted
                return KAFKA_DOWN, "deferred"
        result = outcome.result
        log.info(
            "mail taken",
            extra={
                "kind": outcome.kind.value,
                "peer": str(session.peer),
                "published": len(result.events),
                "ignored": [i.reason for i in result.ignored[:10]],
                "rejected_count": len(result.rejected),
                "recipient_hashes": [address_hash(e.recipient.address) for e in result.events[:20]],
            },
        )
        if outcome.kind is MailKind.AUTOREPLY:
            return "250 2.0.0 OK: automatic reply ignored", "ignored"
        if result.events:
            return ACCEPTED, "accepted"
        return ACCEPTED, "rejected" if result.rejected else "ignored"


def _messages(outcome: MailResult, data: bytes, received_at: datetime) -> list[OutboxMessage]:
    """The events of a message, and one dead letter when some of it could not be used."""
    result = outcome.result
    messages = [
        OutboxMessage(TopicRole.DELIVERY_EVENTS.value, event.key, event.model_dump_json())
        for event in result.events
    ]
    if result.rejected:
        letter = DeadLetter.of_rejected(
            source_topic=DEAD_LETTER_SOURCE,
            source_partition=None,
            source_offset=None,
            key=None,
            value=data,
            error_type=DEAD_LETTER_ERROR_TYPE,
            error=f"{len(result.rejected)} part(s) of a {outcome.kind.value} mail rejected: "
            + "; ".join(r.reason for r in result.rejected[:REPORTED_MAX]),
            failed_at=received_at,
            # The same message redelivered (after a 451) is the same rejection.
            id_parts=(DEAD_LETTER_SOURCE, hashlib.sha256(data).hexdigest()),
        )
        messages.append(OutboxMessage(TopicRole.DEAD_LETTER.value, "", letter.model_dump_json()))
    return messages


@dataclass(frozen=True, slots=True)
class MailServers:
    """The listening sockets' actual ports (0 asks for a free one)."""

    smtp_port: int | None
    lmtp_port: int | None


def _publisher(settings: Settings, producer: MailProducer) -> ConfirmedPublisher:
    async def send(topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        return await producer.send(topic, value=value, key=key)

    topics = {
        TopicRole.DELIVERY_EVENTS.value: settings.topic(TopicRole.DELIVERY_EVENTS),
        TopicRole.DEAD_LETTER.value: settings.topic(TopicRole.DEAD_LETTER),
    }
    return ConfirmedPublisher(send, topics)


@contextlib.asynccontextmanager
async def serve_mail(
    settings: Settings,
    producer: MailProducer,
    *,
    host: str,
    smtp_port: int | None,
    lmtp_port: int | None,
    metrics: Metrics | None = None,
) -> AsyncIterator[MailServers]:
    """Start the producer and listen; on exit stop listening, then flush and stop Kafka.

    With `metrics`, messages are counted by listener (smtp, lmtp) and outcome.

    Raises:
        PublishError: the Kafka producer could not start.
        OSError: an address cannot be bound.
    """
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise PublishError(f"starting the Kafka producer failed: {exc}") from exc
    loop = asyncio.get_running_loop()
    publisher = _publisher(settings, producer)
    servers: list[asyncio.Server] = []
    ports: dict[str, int | None] = {"smtp": None, "lmtp": None}
    try:
        for name, port, kind in (("smtp", smtp_port, SMTP), ("lmtp", lmtp_port, LMTP)):
            if port is None:
                continue
            outcomes = None if metrics is None else PrometheusMessageOutcomes(metrics, name)
            handler = MailHandler(settings, publisher, lmtp=kind is LMTP, outcomes=outcomes)

            def protocol(handler: MailHandler = handler, kind: type[SMTP] = kind) -> SMTP:
                return kind(
                    handler,
                    data_size_limit=settings.mail_max_message_bytes,
                    timeout=settings.mail_idle_timeout_s,
                    ident="sendguard mail",
                    loop=loop,
                )

            server = await loop.create_server(protocol, host, port)
            servers.append(server)
            ports[name] = server.sockets[0].getsockname()[1]
        log.info("mail listener listening", extra={"host": host, **ports})
        yield MailServers(ports["smtp"], ports["lmtp"])
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        await producer.stop()


async def run_mail(
    settings: Settings,
    producer: MailProducer,
    *,
    host: str,
    smtp_port: int | None,
    lmtp_port: int | None,
    stop: asyncio.Event,
    metrics: Metrics | None = None,
) -> None:
    """Serve until `stop` is set (the CLI sets it on SIGTERM and SIGINT)."""
    async with serve_mail(
        settings,
        producer,
        host=host,
        smtp_port=smtp_port,
        lmtp_port=lmtp_port,
        metrics=metrics,
    ):
        await stop.wait()
        log.info("mail listener stopping")
