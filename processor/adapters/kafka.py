"""Kafka at the edge: topic declaration, client security options, and a confirmed publisher.

aiokafka and Faust producer errors are translated into PublishError here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import TYPE_CHECKING, Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from processor.config.settings import KafkaSecurityProtocol, Settings
from processor.errors import PublishError
from schemas.topics import TOPIC_CONTRACTS, TopicRole, contract_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from processor.ports.detection_store import OutboxMessage

PRODUCER_MAX_REQUEST_BYTES = 1_000_000
"""The largest request any sendguard producer sends, set explicitly (Faust's default; aiokafka's
is 1 MiB). Below the broker's and a topic's default `message.max.bytes` (1,048,588), so a
message the producer accepts is one the broker accepts. Every message sendguard builds is far
smaller: a dead letter is at most `schemas.dead_letter.MAX_DEAD_LETTER_BYTES` (40 KiB) whatever
it rejects, pause commands and health snapshots a few KiB. Only the webhook receiver's raw
records may be larger; it passes its own limit (`Settings.webhook_raw_record_max_bytes`)."""
PRODUCER_MAX_BATCH_BYTES = 256 * 1024
"""Records per partition sent in one batch (both clients default to 16 KiB). A dead letter
carrying a 16 KiB excerpt no longer fits the default and went out alone, in its own request:
with 5% poison, publishing the dead letters cost twice the CPU (bench.throughput
--poison-share). Batches still leave as soon as the previous request is answered (no linger)."""


def producer_options(
    settings: Settings,
    client_id: str | None = None,
    *,
    max_request_size: int = PRODUCER_MAX_REQUEST_BYTES,
) -> dict[str, Any]:
    """Keyword arguments of every aiokafka producer sendguard runs.

    Acks from all in-sync replicas, idempotent retries and the explicit limits above (the
    webhook receiver's request limit is larger: its raw records carry whole bodies, and its
    raw topic is declared to take them).
    """
    options = client_options(settings) | {
        "acks": "all",
        "enable_idempotence": True,
        "max_request_size": max_request_size,
        "max_batch_size": PRODUCER_MAX_BATCH_BYTES,
    }
    if client_id is not None:
        options["client_id"] = client_id
    return options


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of aiokafka clients for the configured bootstrap servers and security."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol.value,
    }
    if settings.kafka_security_protocol in {
        KafkaSecurityProtocol.SSL,
        KafkaSecurityProtocol.SASL_SSL,
    }:
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        if settings.kafka_ssl_certfile:
            key_password = settings.kafka_ssl_key_password
            context.load_cert_chain(
                str(settings.kafka_ssl_certfile),
                str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
                key_password.get_secret_value() if key_password else None,
            )
        options["ssl_context"] = context
    if settings.kafka_sasl_mechanism is not None:
        password = settings.kafka_sasl_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism.value
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def topic_names(settings: Settings) -> dict[str, str]:
    """Full topic name of every role, keyed by role value."""
    return {role.value: settings.topic(role) for role in TopicRole}


def topic_config(settings: Settings, role: TopicRole) -> dict[str, str]:
    """The configs sendguard creates a topic with.

    Compaction, a bounded retention for the topics that hold raw input (recipient addresses),
    and room for the raw copy of the largest webhook body.
    """
    contract = contract_for(role)
    config = {"cleanup.policy": "compact"} if contract.compacted else {}
    if contract.audit_retention:
        config["retention.ms"] = str(int(settings.audit_topic_retention_s * 1000))
    if role is TopicRole.WEBHOOKS_RAW:
        config["max.message.bytes"] = str(settings.webhook_raw_record_max_bytes)
    return config


async def declare_topics(settings: Settings, *, timeout_s: float = 30.0) -> list[str]:
    """Create every sendguard topic that does not exist yet; returns the ones created."""
    admin = AIOKafkaAdminClient(
        **client_options(settings), request_timeout_ms=int(timeout_s * 1000)
    )
    created: list[str] = []
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        wanted = []
        for contract in TOPIC_CONTRACTS:
            name = settings.topic(contract.role)
            if name in existing:
                continue
            config = topic_config(settings, contract.role)
            wanted.append(
                NewTopic(
                    name,
                    num_partitions=settings.topic_partitions,
                    replication_factor=settings.topic_replication_factor,
                    topic_configs=config,
                )
            )
        if wanted:
            # Another worker may win the race; the topic is then there, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
            created = [t.name for t in wanted]
    except KafkaError as exc:
        raise PublishError(
            f"declaring topics on {settings.kafka_bootstrap_servers} failed: {exc}"
        ) from exc
    finally:
        await admin.close()
    return created


class ConfirmedPublisher:
    """Publishes messages and waits until the broker acknowledged every one of them.

    `send` schedules one record and returns an awaitable of its delivery (the shape of both
    Faust's and aiokafka's producers), so a batch is pipelined and confirmed together.
    """

    def __init__(
        self,
        send: Callable[[str, bytes | None, bytes | None], Awaitable[Awaitable[Any]]],
        topics: dict[str, str],
    ) -> None:
        self._send = send
        self._topics = topics

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """See `Publisher.publish`."""
        try:
            deliveries = [
                await self._send(
                    self._topics[m.role], m.key.encode() if m.key else None, m.value.encode()
                )
                for m in messages
            ]
            await asyncio.gather(*deliveries)
        except KafkaError as exc:
            raise PublishError(f"publishing {len(messages)} messages failed: {exc}") from exc
