"""The ops view of campaigns: health snapshots and control commands folded into one board.

Pure: it is fed the messages of the compacted health topic and of the control topic (by the
`status` and `explain` commands and the live status page) and keeps, per campaign, the latest
status with the rule behind it, since when, the pause in force and a short rate history.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from schemas.control import PauseCommand, PauseScope, ResumeCommand
from schemas.health import CampaignStatus, HealthSnapshot

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from schemas.control import Metric
    from schemas.health import StatusReason

TENANT_ROW = "*"
"""Campaign id of the row that stands for a tenant-scoped pause."""

HISTORY_POINTS = 240
"""Rate points kept per campaign for the status page's charts (a few hours of snapshots)."""


@dataclass(frozen=True, slots=True)
class RatePoint:
    """One snapshot's rates of one window, for a chart."""

    as_of: datetime
    rates: dict[Metric, float | None]


@dataclass(slots=True)
class CampaignRow:
    """What the board knows of one campaign (or, with campaign `*`, of a tenant pause)."""

    tenant_id: str
    campaign_id: str
    status: CampaignStatus = CampaignStatus.HEALTHY
    reason: StatusReason | None = None
    since: datetime | None = None
    """When the current status began, if the board saw it begin (compaction may hide it)."""
    as_of: datetime | None = None
    snapshot: HealthSnapshot | None = None
    pause: PauseCommand | None = None
    """The pause in force, while the status is paused."""
    resumed_by: ResumeCommand | None = None
    timeline: list[tuple[datetime, CampaignStatus]] = field(default_factory=list)
    """Status changes the board saw, in event-time order."""
    history: deque[RatePoint] = field(default_factory=lambda: deque(maxlen=HISTORY_POINTS))
    locked: bool | None = None
    """Operator lock on the pause: None when not looked up (it lives in Redis)."""

    @property
    def key(self) -> tuple[str, str]:
        """(tenant, campaign): the board's key and sort order."""
        return (self.tenant_id, self.campaign_id)


def rule_of(row: CampaignRow) -> tuple[Metric, str, float, float, float] | None:
    """(metric, window, rate, lower bound, threshold) of the rule behind the row's status."""
    evidence = row.pause.evidence if row.pause is not None else None
    if evidence is not None:
        return (
            evidence.metric,
            evidence.window,
            evidence.rate,
            evidence.wilson_lower_bound,
            evidence.threshold,
        )
    reason = row.reason
    if reason is None:
        return None
    return (reason.metric, reason.window, reason.rate, reason.wilson_lower_bound, reason.threshold)


def row_summary(row: CampaignRow) -> dict[str, Any]:
    """A row as JSON-able data (what `status --json` prints and the status page shows)."""
    rule = rule_of(row)
    return {
        "tenant_id": row.tenant_id,
        "campaign_id": row.campaign_id,
        "status": row.status.value,
        "rule": None if rule is None else f"{rule[0].value}/{rule[1]}",
        "rate": None if rule is None else rule[2],
        "wilson_lower_bound": None if rule is None else rule[3],
        "threshold": None if rule is None else rule[4],
        "reason": row.reason.model_dump(mode="json") if row.reason else None,
        "pause": row.pause.model_dump(mode="json") if row.pause else None,
        "since": row.since.isoformat() if row.since else None,
        "as_of": row.as_of.isoformat() if row.as_of else None,
        "locked": row.locked,
    }


class StatusBoard:
    """Latest view per campaign; feed it messages in topic order."""

    def __init__(self, chart_window: str = "1h") -> None:
        self._rows: dict[tuple[str, str], CampaignRow] = {}
        self._chart_window = chart_window

    def __len__(self) -> int:
        return len(self._rows)

    def row(self, tenant_id: str, campaign_id: str) -> CampaignRow | None:
        """One campaign's row, if the board has seen it."""
        return self._rows.get((tenant_id, campaign_id))

    def _row(self, tenant_id: str, campaign_id: str) -> CampaignRow:
        key = (tenant_id, campaign_id)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = CampaignRow(tenant_id, campaign_id)
        return row

    def apply_health(self, snapshot: HealthSnapshot) -> CampaignRow:
        """Take a campaign's health snapshot.

        The two topics are read side by side, so a snapshot older than the pause in force
        (by event time) may come after it: it adds to the chart but changes no status.
        """
        row = self._row(snapshot.tenant_id, snapshot.campaign_id)
        for window in snapshot.windows:
            if window.window == self._chart_window:
                row.history.append(RatePoint(snapshot.as_of, dict(window.rates)))
        if row.pause is not None and snapshot.as_of < row.pause.decided_at:
            return row
        # A first snapshot that did not report a change says nothing of when the status began.
        seen_before = row.snapshot is not None or row.pause is not None
        if snapshot.status_changed or (seen_before and snapshot.status is not row.status):
            row.since = snapshot.as_of
            bisect.insort(row.timeline, (snapshot.as_of, snapshot.status))
        row.status = snapshot.status
        row.reason = snapshot.reason
        row.as_of = snapshot.as_of
        row.snapshot = snapshot
        if snapshot.status is not CampaignStatus.PAUSED:
            row.pause = None
        return row

    def apply_control(self, command: PauseCommand | ResumeCommand) -> CampaignRow:
        """Take a pause or resume command (a tenant pause gets a row of its own)."""
        if isinstance(command, ResumeCommand):
            row = self._row(command.tenant_id, command.campaign_id)
            row.resumed_by = command
            row.pause = None
            if row.status is CampaignStatus.PAUSED:
                row.status = CampaignStatus.RESUMED
                row.since = command.decided_at
                bisect.insort(row.timeline, (command.decided_at, CampaignStatus.RESUMED))
            return row
        campaign = TENANT_ROW if command.scope is PauseScope.TENANT else command.campaign_id
        row = self._row(command.tenant_id, campaign or TENANT_ROW)
        row.pause = command
        if row.status is not CampaignStatus.PAUSED or row.since is None:
            row.since = command.decided_at
            bisect.insort(row.timeline, (command.decided_at, CampaignStatus.PAUSED))
        row.status = CampaignStatus.PAUSED
        return row

    def rows(
        self,
        *,
        tenant_id: str | None = None,
        statuses: Iterable[CampaignStatus] | None = None,
        locked_only: bool = False,
    ) -> list[CampaignRow]:
        """Rows by tenant and campaign, filtered."""
        wanted = frozenset(statuses) if statuses is not None else None
        chosen = [
            row
            for row in self._rows.values()
            if (tenant_id is None or row.tenant_id == tenant_id)
            and (wanted is None or row.status in wanted)
            and (not locked_only or row.locked)
        ]
        return sorted(chosen, key=lambda row: row.key)
