"""Commands on the control topic that the sending pipeline obeys: pause and resume."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from schemas.base import Identifier, OutputMessage, UtcDatetime
from schemas.events import BounceCategory


class Metric(StrEnum):
    """A reputation metric watched per campaign."""

    HARD_BOUNCE = "hard_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


class PauseScope(StrEnum):
    """What a pause stops: one campaign, or every campaign of a tenant."""

    CAMPAIGN = "campaign"
    TENANT = "tenant"


class DetectionRule(StrEnum):
    """Which kind of rule made a decision."""

    WINDOW = "window"
    """A windowed rate's Wilson bound over its threshold (see README, Policy)."""
    SEQUENTIAL = "sequential"
    """A CUSUM of the rate since an estimated change point reached its bound."""


class DomainCount(OutputMessage):
    """How many numerator events came from one recipient domain."""

    domain: str
    count: int = Field(ge=0)


class BounceCategoryCount(OutputMessage):
    """How many bounces had one category (see `schemas.events.BounceCategory`)."""

    category: BounceCategory
    count: int = Field(ge=0)


class TriggerEvent(OutputMessage):
    """The input event after which the rule was first breached."""

    event_id: str
    occurred_at: UtcDatetime = Field(description="Event time of the triggering event.")
    topic: str | None = Field(description="Kafka topic it came from (None in a file replay).")
    partition: int | None = None
    offset: int | None = None


class SequentialEvidence(OutputMessage):
    """What a sequential rule (Page's CUSUM of p1 against p0) saw when it paused a campaign."""

    p0: float = Field(gt=0, lt=1, description="The acceptable rate the test guards.")
    p1: float = Field(gt=0, lt=1, description="The rate it tests for (the pause level).")
    h: float = Field(gt=0, description="The statistic's pause bound.")
    statistic: float = Field(ge=0, description="Log-likelihood ratio statistic at the pause.")
    change_at: UtcDatetime = Field(
        description="Estimated change point: start of the step (20 s) the statistic last left zero."
    )
    change_sends: int = Field(ge=0, description="Sends of the campaign before the change point.")
    numerator: int = Field(ge=0, description="Events of the metric since the change point.")
    denominator: int = Field(
        ge=0, description="Sends (bounces) or deliveries since the change point."
    )
    exposure: float = Field(
        ge=0,
        description="Denominator events whose feedback was due since the change point "
        "(the rate's trials: feedback lags its sends).",
    )
    rate: float = Field(ge=0, le=1, description="numerator / exposure since the change point.")
    wilson_lower_bound: float = Field(ge=0, le=1)
    wilson_upper_bound: float = Field(ge=0, le=1)


class PauseEvidence(OutputMessage):
    """Why a campaign was paused: the breached rule and the numbers behind it.

    For a sequential rule, `window` is 'sequential', the counts, rate and Wilson bound are
    those since the estimated change point, `threshold` is p0, `top_domains` count since the
    change point, and `sequential` has the rest.
    """

    metric: Metric
    window: str = Field(description="Window name, e.g. '1h', '24h' or 'lifetime'.")
    numerator: int = Field(ge=0, description="Events of the metric in the window.")
    denominator: int = Field(ge=0, description="Sends (bounces) or deliveries in the window.")
    rate: float = Field(ge=0, description="numerator / denominator.")
    wilson_lower_bound: float = Field(ge=0, le=1, description="Lower Wilson score bound.")
    confidence: float = Field(gt=0, lt=1, description="Confidence of the Wilson bound.")
    threshold: float = Field(ge=0, le=1, description="The pause threshold that was exceeded.")
    top_domains: list[DomainCount] = Field(
        description="Recipient domains behind the numerator, most first (at most 5)."
    )
    rule: DetectionRule = Field(
        default=DetectionRule.WINDOW, description="Which kind of rule paused."
    )
    sequential: SequentialEvidence | None = Field(
        default=None, description="For a sequential rule: its test and change point."
    )
    top_bounce_categories: list[BounceCategoryCount] = Field(
        default_factory=list,
        description="For a hard-bounce pause: why the campaign's hard bounces bounced, most "
        "first (at most 5), counted since it started or was last resumed; bounces that came "
        "without a category are not counted. Empty for other metrics.",
    )


class PauseCommand(OutputMessage):
    """Stop sending a campaign (scope campaign) or all of a tenant's campaigns (scope tenant).

    Kafka key: `tenant:campaign` (`tenant:*` for a tenant-scoped pause). Decided once per
    episode; delivery is at-least-once (a crash may republish it), and `command_id` is
    deterministic, so a consumer drops redeliveries by it.
    """

    schema_version: Literal[1] = 1
    command: Literal["pause"] = "pause"
    command_id: str = Field(description="Deterministic id: same episode, same id.")
    scope: PauseScope
    tenant_id: Identifier
    campaign_id: Identifier | None = Field(description="None for a tenant-scoped pause.")
    episode: int = Field(ge=1, description="Pause episode number of this campaign or tenant.")
    policy_version: str = Field(description="Hash of the policy that made the decision.")
    decided_at: UtcDatetime = Field(description="Event time at which the rule was breached.")
    trigger: TriggerEvent | None = Field(
        description="The event that crossed the threshold (None for a tenant escalation)."
    )
    evidence: PauseEvidence | None = Field(
        description="The breached rule (None for a tenant escalation)."
    )
    paused_campaigns: list[str] = Field(
        default_factory=list,
        description="For a tenant escalation: the campaigns whose pauses caused it, oldest first.",
    )


class ResumeCommand(OutputMessage):
    """Resume a paused campaign by sending its filtered remaining recipients as a clone.

    Kafka key: `tenant:campaign` of the source campaign.
    """

    schema_version: Literal[1] = 1
    command: Literal["resume"] = "resume"
    command_id: str = Field(description="Deterministic id derived from the resume request.")
    tenant_id: Identifier
    campaign_id: Identifier = Field(description="The paused source campaign.")
    clone_campaign_id: Identifier = Field(description="The campaign to send the remainder as.")
    request_id: str
    requested_by: str
    recipient_count: int = Field(ge=0, description="Recipients in the published set.")
    decided_at: UtcDatetime = Field(description="When the resume request was answered.")


ControlCommand = Annotated[PauseCommand | ResumeCommand, Field(discriminator="command")]
"""Any message on the control topic."""
_CONTROL_COMMAND: TypeAdapter[PauseCommand | ResumeCommand] = TypeAdapter(ControlCommand)


def read_control(value: str | bytes) -> PauseCommand | ResumeCommand:
    """A control message read back as the command its `command` field names.

    Raises pydantic's ValidationError if it is neither.
    """
    return _CONTROL_COMMAND.validate_json(value)
