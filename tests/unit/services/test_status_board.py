"""The ops board folds health snapshots and control commands (processor.services.status_board)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processor.services.status_board import TENANT_ROW, StatusBoard
from schemas.control import Metric, PauseCommand, PauseScope, ResumeCommand
from schemas.health import CampaignStatus, HealthSnapshot, StatusReason, WindowHealth

T0 = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def _snapshot(
    campaign: str, status: CampaignStatus, minutes: int, *, changed: bool = False
) -> HealthSnapshot:
    reason = None
    if status is not CampaignStatus.HEALTHY:
        reason = StatusReason(
            metric=Metric.HARD_BOUNCE,
            window="1h",
            rate=0.08,
            wilson_lower_bound=0.06,
            threshold=0.05,
        )
    return HealthSnapshot(
        tenant_id="acme",
        campaign_id=campaign,
        status=status,
        status_changed=changed,
        reason=reason,
        as_of=T0 + timedelta(minutes=minutes),
        windows=[
            WindowHealth(
                window="1h",
                counts={"sent": 100},
                rates={Metric.HARD_BOUNCE: 0.01 * minutes, Metric.COMPLAINT: None},
            )
        ],
        late_events=0,
        duplicate_events=0,
    )


def _pause(campaign: str | None, minutes: int) -> PauseCommand:
    return PauseCommand(
        command_id=f"p-{campaign}",
        scope=PauseScope.CAMPAIGN if campaign else PauseScope.TENANT,
        tenant_id="acme",
        campaign_id=campaign,
        episode=1,
        policy_version="v1",
        decided_at=T0 + timedelta(minutes=minutes),
        trigger=None,
        evidence=None,
    )


def test_a_pause_sets_status_and_since_and_a_later_snapshot_keeps_them() -> None:
    """Paused at minute 10; the snapshot of minute 12 (still paused) keeps since at 10."""
    board = StatusBoard()
    board.apply_health(_snapshot("c1", CampaignStatus.HEALTHY, 5))
    board.apply_control(_pause("c1", 10))
    row = board.apply_health(_snapshot("c1", CampaignStatus.PAUSED, 12))
    assert row.status is CampaignStatus.PAUSED
    assert row.since == T0 + timedelta(minutes=10)
    assert row.pause is not None
    assert [s for _, s in row.timeline] == [CampaignStatus.PAUSED]


def test_a_snapshot_older_than_the_pause_read_after_it_changes_nothing() -> None:
    """The topics are read side by side: a stale healthy snapshot must not unpause the row."""
    board = StatusBoard()
    board.apply_control(_pause("c1", 10))
    row = board.apply_health(_snapshot("c1", CampaignStatus.HEALTHY, 3, changed=True))
    assert row.status is CampaignStatus.PAUSED
    assert row.pause is not None
    assert len(row.history) == 1  # the chart still gets the point


def test_a_resume_ends_the_pause() -> None:
    """A resume command turns the paused row into resumed, since the resume."""
    board = StatusBoard()
    board.apply_control(_pause("c1", 10))
    resume = ResumeCommand(
        command_id="r1",
        tenant_id="acme",
        campaign_id="c1",
        clone_campaign_id="c1-r",
        request_id="q",
        requested_by="ops",
        recipient_count=10,
        decided_at=T0 + timedelta(minutes=30),
    )
    row = board.apply_control(resume)
    assert row.status is CampaignStatus.RESUMED
    assert row.pause is None
    assert row.since == T0 + timedelta(minutes=30)


def test_a_tenant_pause_has_its_own_row() -> None:
    """A tenant-scoped pause shows as campaign `*` of its tenant."""
    board = StatusBoard()
    board.apply_control(_pause(None, 20))
    row = board.row("acme", TENANT_ROW)
    assert row is not None
    assert row.status is CampaignStatus.PAUSED


def test_a_first_snapshot_without_a_change_has_no_since() -> None:
    """After compaction only the latest snapshot is left: when the warning began is unknown."""
    board = StatusBoard()
    row = board.apply_health(_snapshot("c1", CampaignStatus.WARNING, 40))
    assert row.status is CampaignStatus.WARNING
    assert row.since is None


def test_rows_filter_by_tenant_and_status_in_key_order() -> None:
    """Filters combine; rows come sorted by tenant and campaign."""
    board = StatusBoard()
    board.apply_health(_snapshot("b", CampaignStatus.WARNING, 1, changed=True))
    board.apply_health(_snapshot("a", CampaignStatus.HEALTHY, 1))
    board.apply_control(_pause("c", 2))
    assert [r.campaign_id for r in board.rows()] == ["a", "b", "c"]
    warned = board.rows(statuses=[CampaignStatus.WARNING, CampaignStatus.PAUSED])
    assert [r.campaign_id for r in warned] == ["b", "c"]
    assert board.rows(tenant_id="globex") == []
