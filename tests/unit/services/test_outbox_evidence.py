"""The evidence of pause commands and health snapshots: sequential decisions, bounce categories."""

from __future__ import annotations

from processor.domain.campaign_state import CampaignState, EventFacts, PauseDecision
from processor.domain.detector import observe_run
from processor.domain.policy import DEFAULT_RULES, DEFAULT_SEQUENTIAL, DEFAULT_WINDOWS, Policy
from processor.domain.sequential import SequentialReading
from processor.domain.windows import Counter
from processor.services.outbox import health_snapshot, pause_command
from schemas.control import BounceCategoryCount, DetectionRule, Metric, PauseCommand
from schemas.events import BounceCategory, BounceClass
from schemas.health import HealthSnapshot

START_MS = 1_700_000_040_000
POLICY = Policy((), sequential=DEFAULT_SEQUENTIAL)
WINDOWED = Policy(DEFAULT_RULES)


def _unsubscribe_wave() -> list[EventFacts]:
    """5,000 healthy deliveries, then 5,000 with 10% unsubscribing 10 minutes later."""
    events = []
    for index in range(10_000):
        at = START_MS + index * 100
        events.append(EventFacts(f"s{index}", Counter.SENT, at, "gmail.com"))
        events.append(EventFacts(f"d{index}", Counter.DELIVERED, at + 500, "gmail.com"))
        if index >= 5_000 and index % 10 == 0:
            domain = "yahoo.com" if index % 20 else "aol.com"
            events.append(EventFacts(f"u{index}", Counter.UNSUBSCRIBE, at + 600_000, domain))
    return sorted(events, key=lambda facts: facts.at_ms)


def test_a_sequential_pause_carries_its_test_and_change_point() -> None:
    """The command names the rule, p0, p1, h, the statistic and the change point since onset."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    decisions = list(observe_run(state, _unsubscribe_wave(), POLICY, POLICY.z))
    (pause,) = [d for d in decisions if isinstance(d, PauseDecision)]
    assert isinstance(pause.reading, SequentialReading)
    message = pause_command("t", "c", pause, POLICY)
    command = PauseCommand.model_validate_json(message.value)
    evidence = command.evidence
    assert evidence is not None
    assert evidence.sequential is not None
    assert (evidence.rule, evidence.metric, evidence.window) == (
        DetectionRule.SEQUENTIAL,
        Metric.UNSUBSCRIBE,
        "sequential",
    )
    sequential = evidence.sequential
    assert (sequential.p0, sequential.p1) == (0.01, 0.05)
    assert sequential.statistic >= sequential.h
    assert sequential.change_sends >= 5_000  # the estimate lies after the healthy part
    assert sequential.wilson_lower_bound <= sequential.rate <= sequential.wilson_upper_bound
    assert sequential.wilson_lower_bound > sequential.p0
    assert {d.domain for d in evidence.top_domains} == {"yahoo.com", "aol.com"}
    assert evidence.top_bounce_categories == []  # not a bounce metric


def test_health_snapshots_show_each_statistic_as_a_fraction_of_h() -> None:
    """Every applied sequential rule is in the snapshot, with statistic / h."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    list(observe_run(state, _unsubscribe_wave()[:12_000], POLICY, POLICY.z))
    snapshot = HealthSnapshot.model_validate_json(
        health_snapshot("t", "c", state, status_changed=False).value
    )
    shown = {health.metric: health for health in snapshot.sequential}
    assert set(shown) == {Metric.HARD_BOUNCE, Metric.COMPLAINT, Metric.UNSUBSCRIBE}
    for health in shown.values():
        assert health.fraction_of_h == health.statistic / health.h


def _bad_list() -> list[EventFacts]:
    """400 sends: every 10th hard-bounces (bad_domain if a 30th, else bad_mailbox).

    And every 20th, offset by 5, is blocked as spam.
    """
    events = []
    for index in range(1, 401):
        at = START_MS + index * 1_000
        events.append(EventFacts(f"s{index}", Counter.SENT, at, "gmail.com"))
        if index % 10 == 0:
            category = BounceCategory.BAD_DOMAIN if index % 30 == 0 else BounceCategory.BAD_MAILBOX
            bounce = EventFacts(f"b{index}", Counter.HARD_BOUNCE, at + 1, "gmail.com")
            events.append(bounce._replace(bounce_category=category))
        if index % 20 == 5:
            block = EventFacts(f"k{index}", Counter.BLOCK, at + 2, "gmail.com")
            events.append(block._replace(bounce_category=BounceCategory.SPAM_BLOCK))
    return events


def test_a_hard_bounce_pause_lists_why_its_hard_bounces_bounced() -> None:
    """The evidence names the hard bounces' categories, most first; blocks are not among them."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    decisions = list(observe_run(state, _bad_list(), WINDOWED, WINDOWED.z))
    (pause,) = [d for d in decisions if isinstance(d, PauseDecision)]
    command = PauseCommand.model_validate_json(pause_command("t", "c", pause, WINDOWED).value)
    evidence = command.evidence
    assert evidence is not None
    assert evidence.metric is Metric.HARD_BOUNCE
    bounced = evidence.numerator  # every hard bounce so far came with a category
    assert evidence.top_bounce_categories == [
        BounceCategoryCount(category=BounceCategory.BAD_MAILBOX, count=bounced - bounced // 3),
        BounceCategoryCount(category=BounceCategory.BAD_DOMAIN, count=bounced // 3),
    ]


def test_health_snapshots_carry_the_campaigns_bounces_by_class_and_category() -> None:
    """Hard bounces and blocks each show their categories; an older snapshot reads as none."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    list(observe_run(state, _bad_list(), WINDOWED, WINDOWED.z))
    snapshot = HealthSnapshot.model_validate_json(
        health_snapshot("t", "c", state, status_changed=True).value
    )
    assert snapshot.bounce_categories == {
        BounceClass.HARD: {BounceCategory.BAD_MAILBOX: 27, BounceCategory.BAD_DOMAIN: 13},
        BounceClass.BLOCK: {BounceCategory.SPAM_BLOCK: 20},
    }
    older = snapshot.model_dump(mode="json", exclude={"bounce_categories"})
    assert HealthSnapshot.model_validate(older).bounce_categories == {}
