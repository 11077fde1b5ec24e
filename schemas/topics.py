"""The catalog of sendguard topics: default names, direction, key, message and compaction.

One table that the worker (to declare topics), the schema export and the AsyncAPI document all
read, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import TypeAdapter

from schemas.audience import AudienceChunk, ContactUpdate
from schemas.control import ControlCommand
from schemas.dead_letter import DeadLetter
from schemas.events import DeliveryEvent
from schemas.health import HealthMessage
from schemas.resume import RecipientSetMessage, ResumeOutcome, ResumeRequest
from schemas.webhooks import RawWebhook


class Direction(StrEnum):
    """Whether sendguard consumes or publishes a topic."""

    IN = "in"
    OUT = "out"


class TopicRole(StrEnum):
    """Each topic's role; the value is its default name without the prefix."""

    DELIVERY_EVENTS = "delivery-events"
    AUDIENCE = "audience"
    CONTACT_UPDATES = "contact-updates"
    RESUME_REQUESTS = "resume-requests"
    RESUME_OUTCOMES = "resume-outcomes"
    CONTROL = "control"
    RECIPIENT_SETS = "recipient-sets"
    HEALTH = "health"
    DEAD_LETTER = "dead-letter"
    WEBHOOKS_RAW = "webhooks-raw"


@dataclass(frozen=True, slots=True)
class TopicContract:
    """What flows on one topic."""

    role: TopicRole
    direction: Direction
    key: str
    message: TypeAdapter[Any]
    message_name: str
    compacted: bool
    summary: str
    audit_retention: bool
    """Holds raw input with recipient addresses: created with a bounded retention
    (`SENDGUARD_AUDIT_TOPIC_RETENTION_S`) instead of the broker's default."""


def _contract(
    role: TopicRole,
    direction: Direction,
    key: str,
    message: Any,
    *,
    name: str,
    summary: str,
    compacted: bool = False,
    audit_retention: bool = False,
) -> TopicContract:
    return TopicContract(
        role, direction, key, TypeAdapter(message), name, compacted, summary, audit_retention
    )


TOPIC_CONTRACTS: tuple[TopicContract, ...] = (
    _contract(
        TopicRole.DELIVERY_EVENTS,
        Direction.IN,
        "tenant:campaign",
        DeliveryEvent,
        name="DeliveryEvent",
        summary="Normalized delivery events from the MTA or the webhook receiver.",
    ),
    _contract(
        TopicRole.AUDIENCE,
        Direction.IN,
        "tenant:campaign",
        AudienceChunk,
        name="AudienceChunk",
        summary="Chunks of each campaign's planned recipients.",
    ),
    _contract(
        TopicRole.CONTACT_UPDATES,
        Direction.IN,
        "tenant:contact",
        ContactUpdate,
        name="ContactUpdate",
        summary="Consent, unsubscribes and deletions from systems of record.",
        compacted=True,
    ),
    _contract(
        TopicRole.RESUME_REQUESTS,
        Direction.IN,
        "tenant:campaign",
        ResumeRequest,
        name="ResumeRequest",
        summary="Operators' requests to resume a paused campaign.",
    ),
    _contract(
        TopicRole.RESUME_OUTCOMES,
        Direction.OUT,
        "tenant:campaign",
        ResumeOutcome,
        name="ResumeOutcome",
        summary="The answer to each resume request: accepted with counts, or rejected.",
    ),
    _contract(
        TopicRole.CONTROL,
        Direction.OUT,
        "tenant:campaign (tenant:* for a tenant-scoped pause)",
        ControlCommand,
        name="ControlCommand",
        summary="Pause and resume commands the sending pipeline obeys.",
    ),
    _contract(
        TopicRole.RECIPIENT_SETS,
        Direction.OUT,
        "tenant:clone_campaign",
        RecipientSetMessage,
        name="RecipientSetMessage",
        summary="Filtered remaining recipients in ordered chunks, then a manifest.",
    ),
    _contract(
        TopicRole.HEALTH,
        Direction.OUT,
        "tenant:campaign (*:state-lost for a StateLost ops message)",
        HealthMessage,
        name="HealthMessage",
        summary="Campaign health snapshots for dashboards, and ops messages (StateLost).",
        compacted=True,
    ),
    _contract(
        TopicRole.DEAD_LETTER,
        Direction.OUT,
        "source key",
        DeadLetter,
        name="DeadLetter",
        summary="Rejected input with its origin and reason.",
        audit_retention=True,
    ),
    _contract(
        TopicRole.WEBHOOKS_RAW,
        Direction.OUT,
        "tenant",
        RawWebhook,
        name="RawWebhook",
        summary="Every authenticated webhook body as received, for audit.",
        audit_retention=True,
    ),
)


def contract_for(role: TopicRole) -> TopicContract:
    """The contract of a topic role."""
    for contract in TOPIC_CONTRACTS:
        if contract.role is role:
            return contract
    raise KeyError(role)
