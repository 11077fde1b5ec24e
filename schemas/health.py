"""Campaign health snapshots for ops dashboards (compacted topic, latest per campaign)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag

from schemas.base import Identifier, OutputMessage, UtcDatetime
from schemas.control import DetectionRule, Metric
from schemas.events import BounceCategory, BounceClass


class CampaignStatus(StrEnum):
    """Where a campaign stands."""

    HEALTHY = "healthy"
    WARNING = "warning"
    PAUSED = "paused"
    RESUMED = "resumed"


class WindowHealth(OutputMessage):
    """Counts and rates of one window."""

    window: str = Field(description="'1h', '24h', ..., or 'lifetime'.")
    counts: dict[str, int] = Field(description="Event counts by kind within the window.")
    rates: dict[Metric, float | None] = Field(
        description="Rate per metric; None while its denominator is zero."
    )


class StatusReason(OutputMessage):
    """The rule behind a warning or pause (a sequential one: see `PauseEvidence`)."""

    metric: Metric
    window: str
    rate: float
    wilson_lower_bound: float
    threshold: float
    rule: DetectionRule = DetectionRule.WINDOW


class SequentialHealth(OutputMessage):
    """One metric's CUSUM: how close it is to pausing."""

    metric: Metric
    statistic: float = Field(ge=0)
    h: float = Field(ge=0, description="Pause bound (0 before the rule was first applied).")
    fraction_of_h: float = Field(ge=0, description="statistic / h: 1.0 pauses.")
    change_at: UtcDatetime | None = Field(
        description="Estimated change point; None while the statistic is zero."
    )


class HealthSnapshot(OutputMessage):
    """A campaign's health. Kafka key: `tenant:campaign`."""

    schema_version: Literal[1] = 1
    tenant_id: Identifier
    campaign_id: Identifier
    status: CampaignStatus
    status_changed: bool = Field(description="True when this snapshot reports a new status.")
    reason: StatusReason | None = Field(description="Rule behind a warning or pause.")
    as_of: UtcDatetime = Field(description="The campaign's event-time watermark.")
    windows: list[WindowHealth]
    late_events: int = Field(ge=0, description="Events too old for any window, not counted.")
    duplicate_events: int = Field(ge=0, description="Redelivered events ignored.")
    sequential: list[SequentialHealth] = Field(
        default_factory=list,
        description="The sequential rules' statistics (empty under a windows-only policy).",
    )
    bounce_categories: dict[BounceClass, dict[BounceCategory, int]] = Field(
        default_factory=dict,
        description="Bounces by class and category since the campaign started or was last "
        "resumed (bounces that came without a category are not counted).",
    )


STATE_LOST_KEY = "*:state-lost"
"""Kafka key of `StateLost` on the health topic (compacted: the latest loss stays readable)."""


class StateLost(OutputMessage):
    """Redis lost the detection state; sendguard is rebuilding it from delivery-events.

    An ops message on the health topic, Kafka key `*:state-lost`, published once per loss
    (`message_id` is the new state epoch: a republish after a crash carries the same id).
    Until the rebuild has read up to the present, campaigns' windows are partial; events older
    than `rebuild_from` (or deleted by the topic's retention) are not counted again.
    """

    schema_version: Literal[1] = 1
    kind: Literal["state_lost"] = "state_lost"
    message_id: str = Field(description="The new state epoch: same loss, same id.")
    reason: str = Field(description="How the loss was noticed.")
    previous_epoch: str | None = Field(description="The epoch lost, if the worker knew it.")
    detected_at: UtcDatetime = Field(description="Wall-clock time the loss was noticed.")
    rebuild_from: UtcDatetime = Field(
        description="Delivery events with a Kafka timestamp from here on are read again."
    )


def _health_kind(message: object) -> str:
    """A campaign's snapshot has no `kind`; an ops message says which it is."""
    if isinstance(message, dict):
        return str(message.get("kind", "campaign"))
    return str(getattr(message, "kind", "campaign"))


HealthMessage = Annotated[
    Annotated[HealthSnapshot, Tag("campaign")] | Annotated[StateLost, Tag("state_lost")],
    Discriminator(_health_kind),
]
"""Any message on the health topic: a campaign's snapshot (no `kind`), or an ops message."""
