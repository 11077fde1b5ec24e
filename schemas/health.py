"""Campaign health snapshots for ops dashboards (compacted topic, latest per campaign)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import Identifier, OutputMessage, UtcDatetime
from schemas.control import DetectionRule, Metric


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
