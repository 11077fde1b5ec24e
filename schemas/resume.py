"""Resume requests, their outcomes, and the filtered recipient sets they publish."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from schemas.base import Identifier, InputMessage, OutputMessage, UtcDatetime
from schemas.events import Recipient


class ResumeRequest(InputMessage):
    """An operator asks to send a paused campaign to its remaining recipients.

    Kafka key: `tenant:campaign`. The same `request_id` always gets the same outcome.
    """

    schema_version: Literal[1] = 1
    request_id: str = Field(min_length=1, max_length=200)
    tenant_id: Identifier
    campaign_id: Identifier
    requested_by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)
    privileged: bool = Field(
        default=False, description="May lift tenant-scoped and operator-locked pauses."
    )
    requested_at: UtcDatetime


class ExclusionReason(StrEnum):
    """Why a remaining recipient was left out; the first that applies, in this order."""

    NO_CONSENT = "no_consent"
    UNSUBSCRIBED = "unsubscribed"
    HARD_BOUNCED = "hard_bounced"
    COMPLAINED = "complained"
    NOT_EMAILED_RECENTLY = "not_emailed_recently"
    UNENGAGED = "unengaged"


class RejectionReason(StrEnum):
    """Why a resume request was refused."""

    UNKNOWN_CAMPAIGN = "unknown_campaign"
    WRONG_TENANT = "wrong_tenant"
    """No longer given: a campaign id is the tenant's own (kept so older outcomes parse)."""
    NOT_PAUSED = "not_paused"
    PRIVILEGED_PAUSE = "privileged_pause"
    NO_RECIPIENTS_REMAIN = "no_recipients_remain"
    CONTACTS_BEHIND = "contacts_behind"
    """Transient: the contact merge had not caught up; the same request may be sent again."""
    AUDIENCE_INCOMPLETE = "audience_incomplete"
    """Transient: fewer audience chunks arrived than `total_chunks` stated; may be sent again."""


class ResumeOutcome(OutputMessage):
    """The answer to one resume request. Kafka key: `tenant:campaign`."""

    schema_version: Literal[1] = 1
    request_id: str
    tenant_id: Identifier
    campaign_id: Identifier
    accepted: bool
    rejection: RejectionReason | None = None
    detail: str = Field(description="Human-readable explanation.")
    clone_campaign_id: Identifier | None = None
    total_recipients: int = Field(default=0, ge=0)
    already_attempted: int = Field(default=0, ge=0)
    excluded: dict[ExclusionReason, int] = Field(default_factory=dict)
    chunk_count: int = Field(default=0, ge=0)


class RecipientChunk(OutputMessage):
    """Part of a filtered recipient set. Kafka key: `tenant:clone_campaign`."""

    schema_version: Literal[1] = 1
    kind: Literal["chunk"] = "chunk"
    request_id: str
    tenant_id: Identifier
    source_campaign_id: Identifier
    clone_campaign_id: Identifier
    chunk_index: int = Field(ge=0)
    recipients: list[Recipient]


class RecipientSetManifest(OutputMessage):
    """Published after the last chunk: what a consumer must have received."""

    schema_version: Literal[1] = 1
    kind: Literal["manifest"] = "manifest"
    request_id: str
    tenant_id: Identifier
    source_campaign_id: Identifier
    clone_campaign_id: Identifier
    total_recipients: int = Field(ge=0)
    chunk_count: int = Field(ge=0)
    chunk_size: int = Field(ge=1)
    already_attempted: int = Field(ge=0)
    excluded: dict[ExclusionReason, int]
    checksum: str = Field(
        description="sha256 hex over the contact ids in chunk order, each followed by '\\n'."
    )


RecipientSetMessage = Annotated[RecipientChunk | RecipientSetManifest, Field(discriminator="kind")]
"""Any message on the recipient-sets topic."""
