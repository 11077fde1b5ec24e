"""The outcome of one accepted webhook request: its Kafka messages, HTTP answer and operator logs.

Messages are all built before anything is sent, so a batch never fails half-way through building.
"""

from __future__ import annotations

import contextlib
import json
import logging
from base64 import b64encode
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from processor.ports.detection_store import OutboxMessage
from processor.webhooks.auth import SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER
from schemas.dead_letter import DeadLetter
from schemas.topics import TopicRole
from schemas.webhooks import RawWebhook

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

    from processor.adapters.providers import NormalizeResult, Provider
    from processor.adapters.providers.base import Ignored, Rejection
    from processor.config.settings import Settings

log = logging.getLogger(__name__)

RAW_ROLE: Final = "webhooks-raw"
"""Role (and default name without the prefix) of the raw audit topic."""
DEAD_LETTER_ERROR_TYPE: Final = "invalid_webhook_event"
RAW_HEADERS: Final = frozenset(
    {
        "content-type",
        "user-agent",
        SENDGRID_SIGNATURE_HEADER.lower(),
        SENDGRID_TIMESTAMP_HEADER.lower(),
        "x-amz-sns-message-type",
        "x-amz-sns-message-id",
        "x-amz-sns-topic-arn",
        "x-amz-sns-subscription-arn",
    }
)
"""Headers kept in the raw record: provider and signature headers, never Authorization."""


def raw_topic_name(settings: Settings) -> str:
    """The raw audit topic's full name."""
    return settings.topic(TopicRole.WEBHOOKS_RAW)


@dataclass(frozen=True, slots=True)
class Accepted:
    """One authenticated, normalized request that has at least one usable outcome."""

    request_id: str
    provider: Provider
    tenant_id: str
    received_at: datetime
    headers: Mapping[str, str]
    body: bytes
    result: NormalizeResult


def outcomes(items: Iterable[Rejection | Ignored]) -> list[dict[str, Any]]:
    """Rejected or ignored records as answered to the provider (paths and problems, no values)."""
    return [{"index": i.index, "field": i.field, "problem": i.problem} for i in items]


def _rejected_record(body: bytes, index: int | None) -> bytes:
    """The bytes of one rejected record of a batch (the whole body for a single object)."""
    if index is None:
        return body
    with contextlib.suppress(ValueError):
        payload = json.loads(body)
        if isinstance(payload, list) and 0 <= index < len(payload):
            return json.dumps(payload[index], separators=(",", ":")).encode()
    return body


def build_messages(accepted: Accepted, *, raw_topic: str) -> list[OutboxMessage]:
    """Every event (key `tenant:campaign`), a dead letter per rejected record, the raw record.

    Dead letters and the raw record are keyed by tenant; a dead letter's `source_topic` is the raw
    topic, where the whole request body is.
    """
    tenant_id = accepted.tenant_id
    result = accepted.result
    messages = [
        OutboxMessage(TopicRole.DELIVERY_EVENTS.value, event.key, event.model_dump_json())
        for event in result.events
    ]
    for rejection in result.rejected:
        letter = DeadLetter(
            source_topic=raw_topic,
            source_key=b64encode(tenant_id.encode()),
            original=b64encode(_rejected_record(accepted.body, rejection.index)),
            error_type=DEAD_LETTER_ERROR_TYPE,
            error=f"{rejection.reason} (webhook request {accepted.request_id})",
            failed_at=accepted.received_at,
        )
        messages.append(
            OutboxMessage(TopicRole.DEAD_LETTER.value, tenant_id, letter.model_dump_json())
        )
    raw = RawWebhook(
        request_id=accepted.request_id,
        provider=accepted.provider.value,
        tenant_id=tenant_id,
        received_at=accepted.received_at,
        headers={k.lower(): v for k, v in accepted.headers.items() if k.lower() in RAW_HEADERS},
        body=b64encode(accepted.body),
    )
    messages.append(OutboxMessage(RAW_ROLE, tenant_id, raw.model_dump_json()))
    return messages


def answer(accepted: Accepted) -> dict[str, Any]:
    """The 200 answer: what was published, ignored and rejected (dead-lettered)."""
    result = accepted.result
    return {
        "status": "accepted",
        "request_id": accepted.request_id,
        "tenant_id": accepted.tenant_id,
        "published": len(result.events),
        "ignored": outcomes(result.ignored),
        "rejected": outcomes(result.rejected),
        "subscription_confirmations": [
            {"type": s.kind, "topic_arn": s.topic_arn, "confirmed": False}
            for s in result.subscription_confirmations
        ],
    }


def log_subscriptions(accepted: Accepted) -> None:
    """SNS (un)subscription confirmations are never acted on silently: an operator does it."""
    for sub in accepted.result.subscription_confirmations:
        extra = {
            "request_id": accepted.request_id,
            "tenant_id": accepted.tenant_id,
            "sns_type": sub.kind,
            "topic_arn": sub.topic_arn,
            "sns_message_id": sub.message_id,
            "subscribe_url": sub.subscribe_url,
            "token": sub.token,
        }
        if sub.kind == "SubscriptionConfirmation":
            log.warning(
                "SNS subscription to %s is NOT confirmed: confirm it manually by opening "
                "subscribe_url once (or `aws sns confirm-subscription --topic-arn ARN "
                "--token TOKEN`); sendguard never visits it",
                sub.topic_arn,
                extra={**extra, "action": "confirm manually"},
            )
        else:
            log.warning(
                "SNS unsubscribed %s from this endpoint; subscribe_url re-subscribes it",
                sub.topic_arn,
                extra={**extra, "action": "none unless the unsubscribe was a mistake"},
            )
