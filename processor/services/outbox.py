"""Builds the messages sendguard publishes from domain decisions and states (pure).

Command ids are derived from what they decide, so replays and retries publish identical bytes.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from processor.domain.sequential import METRICS, SEQUENTIAL_WINDOW, SequentialReading
from processor.domain.windows import RATE_TERMS, Counter
from processor.ports.detection_store import OutboxMessage, TenantEscalation
from processor.ports.records import from_ms
from schemas.base import campaign_key
from schemas.control import (
    BounceCategoryCount,
    DetectionRule,
    DomainCount,
    PauseCommand,
    PauseEvidence,
    PauseScope,
    SequentialEvidence,
    TriggerEvent,
)
from schemas.health import (
    CampaignStatus,
    HealthSnapshot,
    SequentialHealth,
    StatusReason,
    WindowHealth,
)
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from processor.domain.campaign_state import CampaignState, EventFacts, PauseDecision
    from processor.domain.policy import Policy, Reading

_Z95 = 1.96
"""Health snapshots have no policy at hand: a sequential reason's bound is at 95%."""
TENANT_KEY_CAMPAIGN = "*"
"""Campaign part of the Kafka key of a tenant-scoped command: `tenant:*`."""


def deterministic_id(*parts: str | int) -> str:
    """A stable 32-hex id of the given parts."""
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:32]


def _trigger(facts: EventFacts) -> TriggerEvent:
    topic = partition = None
    if facts.source is not None:
        topic, _, partition_text = facts.source.rpartition(":")
        partition = int(partition_text)
    return TriggerEvent(
        event_id=facts.event_id,
        occurred_at=from_ms(facts.at_ms),
        topic=topic,
        partition=partition,
        offset=facts.offset,
    )


def pause_command(
    tenant_id: str, campaign_id: str, decision: PauseDecision, policy: Policy
) -> OutboxMessage:
    """The control message of a campaign pause."""
    reading = decision.reading
    domains = [DomainCount(domain=d, count=c) for d, c in decision.top_domains]
    categories = [
        BounceCategoryCount(category=category, count=count)
        for category, count in decision.top_bounce_categories
    ]
    if isinstance(reading, SequentialReading):
        evidence = _sequential_evidence(reading, policy, domains, categories)
    else:
        evidence = PauseEvidence(
            metric=reading.rule.metric,
            window=reading.rule.window,
            numerator=reading.numerator,
            denominator=reading.denominator,
            rate=reading.rate,
            wilson_lower_bound=reading.wilson_lower_bound,
            confidence=policy.confidence,
            threshold=reading.rule.pause,
            top_domains=domains,
            top_bounce_categories=categories,
        )
    command = PauseCommand(
        command_id=deterministic_id("pause", tenant_id, campaign_id, decision.episode),
        scope=PauseScope.CAMPAIGN,
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        episode=decision.episode,
        policy_version=policy.version,
        decided_at=from_ms(decision.trigger.at_ms),
        trigger=_trigger(decision.trigger),
        evidence=evidence,
    )
    return OutboxMessage(
        TopicRole.CONTROL.value, campaign_key(tenant_id, campaign_id), command.model_dump_json()
    )


def _sequential_evidence(
    reading: SequentialReading,
    policy: Policy,
    domains: list[DomainCount],
    categories: list[BounceCategoryCount],
) -> PauseEvidence:
    rule = reading.rule
    low, high = reading.interval(policy.z)
    return PauseEvidence(
        metric=rule.metric,
        window=SEQUENTIAL_WINDOW,
        numerator=reading.numerator,
        denominator=reading.denominator,
        rate=reading.rate,
        wilson_lower_bound=low,
        confidence=policy.confidence,
        threshold=rule.p0,
        top_domains=domains,
        top_bounce_categories=categories,
        rule=DetectionRule.SEQUENTIAL,
        sequential=SequentialEvidence(
            p0=rule.p0,
            p1=rule.p1,
            h=rule.h,
            statistic=reading.statistic,
            change_at=from_ms(reading.change_at_ms or 0),
            change_sends=reading.change_sends,
            numerator=reading.numerator,
            denominator=reading.denominator,
            exposure=max(0.0, reading.exposure),
            rate=reading.rate,
            wilson_lower_bound=low,
            wilson_upper_bound=high,
        ),
    )


def tenant_pause_command(
    tenant_id: str, escalation: TenantEscalation, at_ms: int, policy: Policy
) -> OutboxMessage:
    """The control message of a tenant-scoped pause."""
    command = PauseCommand(
        command_id=deterministic_id("pause-tenant", tenant_id, escalation.episode),
        scope=PauseScope.TENANT,
        tenant_id=tenant_id,
        campaign_id=None,
        episode=escalation.episode,
        policy_version=policy.version,
        decided_at=from_ms(at_ms),
        trigger=None,
        evidence=None,
        paused_campaigns=list(
            dict.fromkeys(member.rpartition("#")[0] or member for member in escalation.campaigns)
        ),
    )
    return OutboxMessage(
        TopicRole.CONTROL.value,
        campaign_key(tenant_id, TENANT_KEY_CAMPAIGN),
        command.model_dump_json(),
    )


def _reason(reading: Reading | SequentialReading | None) -> StatusReason | None:
    if reading is None:
        return None
    if isinstance(reading, SequentialReading):
        return StatusReason(
            metric=reading.rule.metric,
            window=SEQUENTIAL_WINDOW,
            rate=reading.rate,
            wilson_lower_bound=reading.interval(_Z95)[0],
            threshold=reading.rule.p0,
            rule=DetectionRule.SEQUENTIAL,
        )
    return StatusReason(
        metric=reading.rule.metric,
        window=reading.rule.window,
        rate=reading.rate,
        wilson_lower_bound=reading.wilson_lower_bound,
        threshold=reading.rule.pause if reading.severity >= 2 else reading.rule.warn,  # noqa: PLR2004  # Severity.PAUSE
    )


def health_snapshot(
    tenant_id: str, campaign_id: str, state: CampaignState, *, status_changed: bool
) -> OutboxMessage:
    """A campaign's health snapshot (key `tenant:campaign`, compacted topic)."""
    windows = state.windows
    names = [w.spec.name for w in windows.windows] + ["lifetime"]
    health = []
    for name in names:
        totals = windows.window(name)
        counted = len(totals) if name == "lifetime" else 5
        counts = {Counter(i).name.lower(): totals[i] for i in range(counted)}
        rates = {}
        for metric, (numerator, denominator) in RATE_TERMS.items():
            rates[metric] = totals[numerator] / totals[denominator] if totals[denominator] else None
        health.append(WindowHealth(window=name, counts=counts, rates=rates))
    snapshot = HealthSnapshot(
        tenant_id=tenant_id,
        campaign_id=campaign_id,
        status=state.status,
        status_changed=status_changed,
        reason=_reason(state.status_reading)
        if state.status is not CampaignStatus.HEALTHY
        else None,
        as_of=from_ms(windows.watermark_ms or 0),
        windows=health,
        late_events=windows.late_events,
        duplicate_events=state.duplicates,
        sequential=_sequential_health(state),
        bounce_categories={c: dict(counts) for c, counts in state.bounce_categories.items()},
    )
    return OutboxMessage(
        TopicRole.HEALTH.value, campaign_key(tenant_id, campaign_id), snapshot.model_dump_json()
    )


def _sequential_health(state: CampaignState) -> list[SequentialHealth]:
    """Each applied sequential rule's statistic (a track never applied has h 0: left out)."""
    shown = []
    for metric, track in zip(METRICS, state.sequential.tracks, strict=True):
        if track.h <= 0:
            continue
        statistic = track.last_statistic  # under the rule as last applied
        shown.append(
            SequentialHealth(
                metric=metric,
                statistic=statistic,
                h=track.h,
                fraction_of_h=statistic / track.h,
                change_at=None if track.change_at_ms is None else from_ms(track.change_at_ms),
            )
        )
    return shown
