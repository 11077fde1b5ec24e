"""How sendguard creates its topics: bounded retention where raw input with addresses lands."""

from __future__ import annotations

import base64
import json

import pytest

from processor.adapters.kafka import topic_config
from processor.config.settings import Settings
from schemas.topics import TOPIC_CONTRACTS, TopicRole
from schemas.webhooks import RawWebhook


@pytest.mark.parametrize("role", [TopicRole.WEBHOOKS_RAW, TopicRole.DEAD_LETTER])
def test_raw_input_topics_get_the_audit_retention(role: TopicRole) -> None:
    """webhooks-raw and dead-letter hold addresses: 7 days by default, or as configured."""
    assert topic_config(Settings(), role)["retention.ms"] == str(7 * 86400 * 1000)
    assert topic_config(Settings(audit_topic_retention_s=3600), role)["retention.ms"] == "3600000"


def test_other_topics_keep_the_brokers_retention() -> None:
    """Only the audit topics get a retention; compacted ones stay compacted."""
    for contract in TOPIC_CONTRACTS:
        config = topic_config(Settings(), contract.role)
        assert ("retention.ms" in config) is (
            contract.role in {TopicRole.WEBHOOKS_RAW, TopicRole.DEAD_LETTER}
        )
        assert (config.get("cleanup.policy") == "compact") is contract.compacted


def test_the_raw_topic_fits_the_raw_copy_of_the_largest_body() -> None:
    """A full-size body's raw record (base64, a third larger) fits the raw topic and producer."""
    settings = Settings(webhook_max_body_bytes=1024 * 1024)
    body = b"\xff" * settings.webhook_max_body_bytes
    record = RawWebhook(
        request_id="r" * 32,
        provider="sendgrid",
        tenant_id="acme",
        received_at="2026-11-24T10:00:00Z",  # type: ignore[arg-type]  # validated into a datetime
        headers={"x-twilio-email-event-webhook-signature": "s" * 200, "user-agent": "u" * 500},
        body=base64.b64encode(body),
    )
    size = len(record.model_dump_json().encode())
    limit = int(topic_config(settings, TopicRole.WEBHOOKS_RAW)["max.message.bytes"])
    assert size > 1024 * 1024  # over Kafka's 1 MB default: why the topic needs the setting
    assert size <= limit == settings.webhook_raw_record_max_bytes
    assert json.loads(record.model_dump_json())["tenant_id"] == "acme"
