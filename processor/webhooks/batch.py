"""The outcome of one accepted webhook request: its Kafka messages, HTTP answer and operator logs.

Messages are all built before anything is sent, so a batch never fails half-way through building.
Work and output are bounded per request: one dead letter, at most REPORTED_MAX reasons listed.
"""

from __future__ import annotations

import logging
from base64 import b64encode
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from processor.ports.detection_store import OutboxMessage
from processor.webhooks.auth import SENDGRID_SIGNATURE_HEADER, SENDGRID_TIMESTAMP_HEADER
from schemas.dead_letter import ORIGINAL_EXCERPT_BYTES, DeadLetter
from schemas.topics import TopicRole
from schemas.webhooks import RawWebhook

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from processor.adapters.providers import NormalizeResult, Provider
    from processor.adapters.providers.base import Ignored, Rejection
    from processor.config.settings import Settings

log = logging.getLogger(__name__)

RAW_ROLE: Final = "webhooks-raw"
"""Role (and default name without the prefix) of the raw audit topic."""
DEAD_LETTER_ERROR_TYPE: Final = "invalid_webhook_event"
REPORTED_MAX: Final = 100
"""Rejected (or ignored) records listed in an answer, a log line or a dead letter; the rest are
counted. A body of 300,000 empty records must not become a 25 MB answer."""
PROBLEM_MAX_CHARS: Final = 200
"""Longest field path or problem text reported (paths may hold a provider's own keys)."""
DEAD_LETTER_EXCERPT_BYTES: Final = ORIGINAL_EXCERPT_BYTES
"""The dead letter carries the body up to this size; the raw record always has all of it."""
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


def _cut(text: str) -> str:
    return text if len(text) <= PROBLEM_MAX_CHARS else text[: PROBLEM_MAX_CHARS - 1] + "…"


def outcomes(items: Sequence[Rejection | Ignored]) -> list[dict[str, Any]]:
    """The first REPORTED_MAX rejected or ignored records as answered (paths and problems only)."""
    return [
        {"index": i.index, "field": _cut(i.field), "problem": _cut(i.problem)}
        for i in items[:REPORTED_MAX]
    ]


def rejection_summary(rejected: Sequence[Rejection]) -> str:
    """The first REPORTED_MAX reasons in one line, and how many more there were."""
    shown = "; ".join(f"{_cut(r.field)}: {_cut(r.problem)}" for r in rejected[:REPORTED_MAX])
    more = len(rejected) - REPORTED_MAX
    return shown + (f"; and {more} more" if more > 0 else "")


def dead_letter(accepted: Accepted, *, raw_topic: str) -> DeadLetter:
    """The request's one dead letter: why its records were rejected, and where the body is.

    `original` is the body, cut to DEAD_LETTER_EXCERPT_BYTES when longer; the whole body is the
    raw record of the same request id on `raw_topic` (the dead letter's `source_topic`). Its
    id comes from the request id, so a re-publish of the same request's letter can be dropped.
    """
    body, rejected = accepted.body, accepted.result.rejected
    cut = len(body) > DEAD_LETTER_EXCERPT_BYTES
    where = f"webhook request {accepted.request_id}, whole body in {raw_topic}"
    if cut:
        where += f"; original holds its first {DEAD_LETTER_EXCERPT_BYTES} of {len(body)} bytes"
    return DeadLetter.of_rejected(
        source_topic=raw_topic,
        source_partition=None,
        source_offset=None,
        key=accepted.tenant_id.encode(),
        value=body,
        error_type=DEAD_LETTER_ERROR_TYPE,
        error=f"{len(rejected)} record(s) rejected ({where}): {rejection_summary(rejected)}",
        failed_at=accepted.received_at,
        id_parts=(raw_topic, accepted.request_id),
    )


def build_messages(accepted: Accepted, *, raw_topic: str) -> list[OutboxMessage]:
    """Every event (key `tenant:campaign`), the request's dead letter if any, the raw record.

    The dead letter and the raw record are keyed by tenant.
    """
    tenant_id = accepted.tenant_id
    result = accepted.result
    messages = [
        OutboxMessage(TopicRole.DELIVERY_EVENTS.value, event.key, event.model_dump_json())
        for event in result.events
    ]
    if result.rejected:
        letter = dead_letter(accepted, raw_topic=raw_topic)
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
        "ignored_count": len(result.ignored),
        "rejected": outcomes(result.rejected),
        "rejected_count": len(result.rejected),
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
