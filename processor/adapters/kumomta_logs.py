"""KumoMTA log records read from the Kafka topics KumoMTA produces to -> delivery-events.

Each batch is normalized with the KumoMTA provider (tenant from the record's meta or queue name,
else the configured default), its events and dead letters published and acknowledged, and only
then committed (`BatchConsumer`). Event ids are deterministic, so a re-read batch dedups.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from processor.adapters.providers import AttributionConfig, Provider, normalize
from processor.adapters.providers.base import FieldError, parse_json
from processor.adapters.providers.kumomta import parse_queue
from processor.errors import PublishError
from processor.ports.dead_letters import dead_letter
from processor.ports.detection_store import OutboxMessage
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.adapters.kafka import ConfirmedPublisher
    from processor.adapters.metrics import PrometheusMessageOutcomes
    from processor.config.settings import Settings
    from processor.ports.records import RawRecord

log = logging.getLogger(__name__)

ROLE: Final = "mta-logs"
"""Consumer group suffix (`<app_id>-mta-logs`) of the relay."""
DEAD_LETTER_ERROR_TYPE: Final = "invalid_kumomta_log_record"


def record_tenant(record: Any, default: str | None) -> str | None:
    """The tenant a KumoMTA record names (meta.tenant, else its queue's), else `default`."""
    if isinstance(record, dict):
        meta = record.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("tenant"), str) and meta["tenant"]:
            return str(meta["tenant"])
        queue = record.get("queue")
        if isinstance(queue, str):
            tenant = parse_queue(queue).tenant
            if tenant:
                return tenant
        report = record.get("feedback_report")
        trace = report.get("supplemental_trace") if isinstance(report, dict) else None
        if isinstance(trace, dict) and isinstance(trace.get("tenant"), str) and trace["tenant"]:
            return str(trace["tenant"])
    return default


class KumoLogRelay:
    """The `handle` of the relay's BatchConsumer: normalize, publish, then let it commit."""

    def __init__(
        self,
        settings: Settings,
        publisher: ConfirmedPublisher,
        outcomes: PrometheusMessageOutcomes | None = None,
    ) -> None:
        self._outcomes = outcomes
        self._default_tenant = settings.kumomta_default_tenant
        self._attribution = AttributionConfig(
            fallback_campaign_id=settings.kumomta_fallback_campaign_id
        )
        self._publisher = publisher

    def messages(self, record: RawRecord) -> list[OutboxMessage]:
        """The events of one Kafka record, and its dead letter if some of it was unusable."""
        problems: list[str] = []
        events: list[OutboxMessage] = []
        try:
            payload = parse_json(record.value or b"", "kumomta")
        except FieldError as exc:
            return [self._dead_letter(record, "kumomta: " + exc.problem)]
        items = payload if isinstance(payload, list) else [payload]
        for index, item in enumerate(items):
            tenant = record_tenant(item, self._default_tenant)
            if tenant is None:
                problems.append(
                    f"[{index}]: names no tenant (meta.tenant or the queue name) and "
                    "SENDGUARD_KUMOMTA_DEFAULT_TENANT is not set"
                )
                continue
            try:
                result = normalize(
                    Provider.KUMOMTA, item, tenant_id=tenant, attribution=self._attribution
                )
            except ValueError as exc:  # the tenant named is not a valid identifier
                problems.append(f"[{index}]: {exc}")
                continue
            events += [
                OutboxMessage(TopicRole.DELIVERY_EVENTS.value, e.key, e.model_dump_json())
                for e in result.events
            ]
            problems += [f"[{index}] {r.reason}" for r in result.rejected]
        if problems:
            events.append(self._dead_letter(record, "; ".join(problems[:100])))
        return events

    def _dead_letter(self, record: RawRecord, reason: str) -> OutboxMessage:
        return dead_letter(record, DEAD_LETTER_ERROR_TYPE, reason, datetime.now(UTC))

    async def handle(self, records: Sequence[RawRecord]) -> None:
        """Publish a batch's events and dead letters; returns once Kafka acknowledged them.

        Raises:
            PublishError: Kafka did not acknowledge; the batch is not committed.
        """
        messages: list[OutboxMessage] = []
        tally = dict.fromkeys(("accepted", "rejected", "ignored"), 0)
        for record in records:
            of_record = self.messages(record)
            messages += of_record
            tally[_outcome(of_record)] += 1
        outcomes = self._outcomes
        if messages:
            try:
                await self._publisher.publish(messages)
            except PublishError:
                if outcomes is not None:
                    outcomes.count("deferred", len(records))  # the batch is read again
                raise
        if outcomes is not None:
            for outcome, count in tally.items():
                if count:
                    outcomes.count(outcome, count)
        letters = sum(m.role == TopicRole.DEAD_LETTER.value for m in messages)
        log.debug(
            "kumomta log batch relayed",
            extra={"records": len(records), "published": len(messages) - letters, "dead": letters},
        )


def _outcome(messages: list[OutboxMessage]) -> str:
    """A record's outcome: accepted if it had an event, rejected if only dead-lettered."""
    if any(m.role == TopicRole.DELIVERY_EVENTS.value for m in messages):
        return "accepted"
    return "rejected" if messages else "ignored"
