"""Resume requests, their outcomes, and the filtered recipient sets they publish."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.base import Identifier, InputMessage, OutputMessage, UtcDatetime
from schemas.events import Recipient


class OperatorAction(StrEnum):
    """What a request on the resume-requests topic asks for."""

    RESUME = "resume"
    """Send the paused campaign to its remaining recipients."""
    LOCK = "lock"
    """Lock the campaign's pause: only a signed (privileged) resume may lift it. Signed."""
    UNLOCK = "unlock"
    """Lift the operator lock (the pause itself stays). Signed."""


class OperatorSignature(BaseModel):
    """HMAC-SHA256 with an operator key over the request's canonical form (docs/SECURITY.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    hmac_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="Lowercase hex of the 32-byte MAC."
    )


class ResumeRequest(InputMessage):
    """An operator asks to resume, lock or unlock a paused campaign.

    Kafka key: `tenant:campaign`. The same `request_id` always gets the same outcome. A
    privileged resume, a lock and an unlock must be signed with an operator key; privilege comes
    from the signature, never from the `privileged` flag alone.
    """

    schema_version: Literal[1, 2] = 1
    request_id: str = Field(min_length=1, max_length=200)
    tenant_id: Identifier
    campaign_id: Identifier
    action: OperatorAction = OperatorAction.RESUME
    requested_by: str = Field(min_length=1, max_length=200)
    reason: str = Field(default="", max_length=2000)
    privileged: bool = Field(
        default=False,
        description="Asks to lift tenant-scoped and operator-locked pauses: needs `signature`.",
    )
    requested_at: UtcDatetime = Field(
        description="When it was signed: a signed request older (or newer) than the worker's "
        "freshness window is refused."
    )
    signature: OperatorSignature | None = None

    @model_validator(mode="after")
    def _lock_is_version_2(self) -> Self:
        """A lock or unlock says version 2.

        So a worker that knows only version 1 (and no `action`) dead-letters it instead of
        taking it for a resume.
        """
        if self.action is not OperatorAction.RESUME and self.schema_version != 2:  # noqa: PLR2004  # the version that introduced actions
            raise ValueError(f"an {self.action.value} request has schema_version 2")
        return self


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
    UNAUTHORIZED = "unauthorized"
    """A privileged request, a lock or an unlock without a valid, fresh operator signature."""


class ResumeOutcome(OutputMessage):
    """The answer to one resume request. Kafka key: `tenant:campaign`."""

    schema_version: Literal[1] = 1
    request_id: str
    tenant_id: Identifier
    campaign_id: Identifier
    action: OperatorAction = OperatorAction.RESUME
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
