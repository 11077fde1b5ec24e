"""Normalized delivery events: the one input format of detection and contact state."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, model_validator

from schemas.base import ContactId, Identifier, InputMessage, UtcDatetime, campaign_key

_RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)")


def _rfc3339_only(value: object) -> object:
    """Refuse what pydantic would otherwise read as a time: epoch numbers, '-1', dates, no zone.

    An epoch number has no unit a producer could be held to (seconds? ms?), and read as
    seconds a stray 12345 lands in 1970; such a value is a broken producer, not a time.
    """
    if isinstance(value, datetime) or (isinstance(value, str) and _RFC3339.fullmatch(value)):
        return value
    raise ValueError("must be an RFC 3339 timestamp with a zone, e.g. '2026-03-02T08:00:00Z'")


Rfc3339Datetime = Annotated[UtcDatetime, BeforeValidator(_rfc3339_only)]
"""An RFC 3339 timestamp with a zone (`Z` or an offset), converted to UTC; nothing else."""


class EventType(StrEnum):
    """What happened to one message for one recipient."""

    SENT = "sent"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    OPEN = "open"
    CLICK = "click"
    DROPPED_SUPPRESSED = "dropped-suppressed"


class BounceClass(StrEnum):
    """Bounce severity: only hard bounces count towards the hard-bounce rate.

    hard: the address or its domain does not exist or is disabled; block: refused for policy,
    reputation, spam, authentication or content (a signal about the sender, not the address);
    soft: transient, mailbox full, message too large, unclassified.
    """

    HARD = "hard"
    SOFT = "soft"
    BLOCK = "block"


class BounceCategory(StrEnum):
    """Why a bounce happened, finer than its class (see `processor/domain/smtp_classifier.py`)."""

    BAD_MAILBOX = "bad_mailbox"
    """The mailbox does not exist (hard)."""
    BAD_DOMAIN = "bad_domain"
    """The domain does not exist or accepts no mail (hard)."""
    INACTIVE_MAILBOX = "inactive_mailbox"
    """The mailbox exists but is disabled, closed or has changed owner (hard)."""
    MAILBOX_FULL = "mailbox_full"
    """Over quota, or the message is over a size limit (soft)."""
    POLICY = "policy"
    """Refused by the receiver's local policy, sender not allowed (block)."""
    SPAM_BLOCK = "spam_block"
    """Refused as spam, for the sender's reputation or a blocklist listing (block)."""
    CONTENT = "content"
    """Refused for what the message contains: links, attachments, format (block)."""
    AUTH_FAILURE = "auth_failure"
    """SPF, DKIM, DMARC, reverse DNS or TLS requirements not met (block)."""
    ROUTING = "routing"
    """DNS failure, no route, relaying denied, routing loop (soft)."""
    TRANSIENT = "transient"
    """Temporary: try later, rate limited, greylisted, timed out, expired (soft)."""
    OTHER = "other"
    """Nothing more is known (soft)."""


class Recipient(InputMessage):
    """One addressee of a campaign."""

    contact_id: ContactId = Field(
        description="The sender's stable id of the contact (may equal the address).",
    )
    address: str = Field(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s]+@[^@\s]+$",
        description="The email address the message went to.",
    )

    @property
    def domain(self) -> str:
        """The recipient's mail domain, lower-cased (the mailbox provider behind it)."""
        return self.address.rsplit("@", 1)[1].lower()


class DeliveryEvent(InputMessage):
    """One delivery event for one recipient, in sendguard's provider-neutral form.

    Kafka key: `tenant:campaign`.
    """

    schema_version: Literal[1] = Field(default=1, description="Version of this contract.")
    event_id: str = Field(
        min_length=1,
        max_length=256,
        description="Stable id: the same provider event always maps to the same id.",
    )
    tenant_id: Identifier = Field(description="The sending organisation (account).")
    campaign_id: Identifier = Field(description="The campaign (email send) within the tenant.")
    recipient: Recipient
    type: EventType = Field(description="What happened.")
    bounce_class: BounceClass | None = Field(
        default=None, description="Severity, required when type is 'bounce', absent otherwise."
    )
    bounce_category: BounceCategory | None = Field(
        default=None,
        description="Why it bounced, when known; only when type is 'bounce'. Informational: "
        "detection counts by bounce_class.",
    )
    occurred_at: Rfc3339Datetime = Field(
        description=(
            "When it happened, per the provider: an RFC 3339 timestamp with a zone "
            "(e.g. '2026-03-02T08:00:00Z'); epoch numbers are rejected."
        )
    )
    provider: str = Field(
        default="sendguard", max_length=64, description="Source system, e.g. 'ses', 'sendgrid'."
    )
    provider_message_id: str | None = Field(
        default=None, max_length=512, description="The provider's id of the message."
    )
    provider_event_id: str | None = Field(
        default=None, max_length=512, description="The provider's id of this event, if any."
    )

    @model_validator(mode="after")
    def _bounce_class_matches_type(self) -> Self:
        if self.type is EventType.BOUNCE and self.bounce_class is None:
            raise ValueError("bounce_class is required when type is 'bounce'")
        if self.type is not EventType.BOUNCE and self.bounce_class is not None:
            raise ValueError("bounce_class is only allowed when type is 'bounce'")
        if self.type is not EventType.BOUNCE and self.bounce_category is not None:
            raise ValueError("bounce_category is only allowed when type is 'bounce'")
        return self

    @property
    def at_ms(self) -> int:
        """`occurred_at` in epoch milliseconds."""
        return int(self.occurred_at.timestamp() * 1000)

    @property
    def key(self) -> str:
        """The Kafka key this event is partitioned by."""
        return campaign_key(self.tenant_id, self.campaign_id)
