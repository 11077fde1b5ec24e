"""Control commands as the worker publishes them, for the bridge tests (unit and integration)."""

from __future__ import annotations

from datetime import UTC, datetime

from processor.ports.records import RawRecord
from schemas.control import (
    DomainCount,
    Metric,
    PauseCommand,
    PauseEvidence,
    PauseScope,
    ResumeCommand,
    TriggerEvent,
)

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def campaign_pause(
    tenant: str = "acme", campaign: str = "spring-sale", command_id: str = "c" * 32
) -> PauseCommand:
    """A hard-bounce pause of one campaign."""
    return PauseCommand(
        command_id=command_id,
        scope=PauseScope.CAMPAIGN,
        tenant_id=tenant,
        campaign_id=campaign,
        episode=1,
        policy_version="p0l1cy",
        decided_at=AT,
        trigger=TriggerEvent(event_id="e-1", occurred_at=AT, topic="sendguard.delivery-events"),
        evidence=PauseEvidence(
            metric=Metric.HARD_BOUNCE,
            window="1h",
            numerator=45,
            denominator=600,
            rate=0.075,
            wilson_lower_bound=0.0565,
            confidence=0.95,
            threshold=0.05,
            top_domains=[DomainCount(domain="gmail.com", count=30)],
        ),
    )


def tenant_pause(tenant: str = "acme", command_id: str = "t" * 32) -> PauseCommand:
    """A tenant escalation after three campaign pauses."""
    return PauseCommand(
        command_id=command_id,
        scope=PauseScope.TENANT,
        tenant_id=tenant,
        campaign_id=None,
        episode=1,
        policy_version="p0l1cy",
        decided_at=AT,
        trigger=None,
        evidence=None,
        paused_campaigns=["a", "b", "c"],
    )


def resume(
    tenant: str = "acme", campaign: str = "spring-sale", command_id: str = "r" * 32
) -> ResumeCommand:
    """A resume of a paused campaign as a clone."""
    return ResumeCommand(
        command_id=command_id,
        tenant_id=tenant,
        campaign_id=campaign,
        clone_campaign_id=f"{campaign}-r1",
        request_id="req-1",
        requested_by="ops@example.com",
        recipient_count=120,
        decided_at=AT,
    )


def record(command: PauseCommand | ResumeCommand | bytes, offset: int = 0) -> RawRecord:
    """The control-topic record of a command (or of raw bytes)."""
    if isinstance(command, bytes):
        return RawRecord("sendguard.control", 0, offset, b"acme:x", command, None)
    key = f"{command.tenant_id}:{command.campaign_id or '*'}".encode()
    value = command.model_dump_json().encode()
    return RawRecord("sendguard.control", 0, offset, key, value, None)
