"""Unit and property tests of campaign detection (processor.domain.detector)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.domain.campaign_state import (
    MAX_TRACKED_DOMAINS,
    OTHER_DOMAIN,
    TOP_BOUNCE_CATEGORIES,
    TOP_DOMAINS,
    CampaignState,
    Decision,
    EventFacts,
    PauseDecision,
    StatusChange,
    counter_for,
)
from processor.domain.codec import decode_state, encode_state
from processor.domain.detector import HEADROOM_CAP, observe, observe_run, ok_headroom, still_warned
from processor.domain.policy import (
    DEFAULT_RULES,
    DEFAULT_WINDOWS,
    Policy,
    Reading,
    Rule,
    SequentialRule,
    Severity,
    evaluate,
    wilson_lower_bound,
)
from processor.domain.windows import Counter, WindowSpec
from schemas.control import Metric
from schemas.events import BounceCategory, BounceClass, EventType
from schemas.health import CampaignStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
T0 = 1_700_000_040_000
"""A realistic event time, aligned to a minute."""

DEFAULT = Policy(DEFAULT_RULES)

# Small windows and low floors, so that short generated streams warn, pause and expire.
SPECS = (WindowSpec("short", 600, 6), WindowSpec("long", 3_000, 10, history_ms=900))
SMALL = Policy(
    (
        Rule(Metric.HARD_BOUNCE, "short", 0.05, 0.2, 5, 2),
        Rule(Metric.HARD_BOUNCE, "long", 0.05, 0.15, 10, 3),
        Rule(Metric.HARD_BOUNCE, "lifetime", 0.05, 0.15, 20, 3),
        Rule(Metric.COMPLAINT, "short", 0.05, 0.2, 5, 2),
        Rule(Metric.COMPLAINT, "long", 0.05, 0.15, 10, 2),
        Rule(Metric.UNSUBSCRIBE, "short", 0.05, 0.2, 5, 2),
        Rule(Metric.UNSUBSCRIBE, "long", 0.05, 0.2, 8, 2),
        Rule(Metric.UNSUBSCRIBE, "lifetime", 0.05, 0.2, 8, 2),
    )
)
"""Rules without denominator lag."""
LAGGED = Policy(
    tuple(
        dataclasses.replace(rule, denominator_lag_ms=lag)
        for rule, lag in zip(SMALL.rules, (300, 600, 0, 500, 300, 4_000, 300, 0), strict=True)
    )
)
"""SMALL with lagged denominators, served by the long ring's history (or, for the 4 s lag,
by the lifetime). Each lagged span starts on a bucket boundary of its own rule's window, so
the denominator only changes when an event touches it or that window's head moves."""
WARY = Policy(tuple(dataclasses.replace(rule, pause=0.6) for rule in LAGGED.rules))
"""LAGGED with pause thresholds so high that generated streams mostly warn."""
POLICIES = st.sampled_from([SMALL, LAGGED, WARY])
CUSUM = Policy(
    LAGGED.rules,
    sequential=(
        SequentialRule(Metric.HARD_BOUNCE, 0.05, 0.3, 3.0, 2.0, 3, 2, 150),
        SequentialRule(Metric.COMPLAINT, 0.05, 0.3, 3.0, 1.5, 2, 2, 400),
        SequentialRule(Metric.UNSUBSCRIBE, 0.05, 0.4, 2.5, 2.5, 4, 2, 50),
    ),
)
"""LAGGED with sequential rules on SPECS-scale times (steps of the short window's 100 ms)."""
CUSUM_ONLY = Policy((), sequential=CUSUM.sequential)
"""The sequential rules alone, so that they decide on generated streams."""
WITH_SEQUENTIAL = st.sampled_from([SMALL, LAGGED, WARY, CUSUM, CUSUM_ONLY])

Step = EventFacts | None
"""One step of a generated stream: an event, or None for a resume (`rearm`)."""


def _facts(
    counter: Counter,
    at_ms: int,
    domain: str = "example.com",
    *,
    source: str | None = None,
    offset: int | None = None,
    category: BounceCategory | None = None,
) -> EventFacts:
    event_id = f"{counter.name}@{at_ms}/{source}:{offset}"
    return EventFacts(event_id, counter, at_ms, domain, source, offset, category)


def _run(
    state: CampaignState, events: Iterable[EventFacts], policy: Policy = DEFAULT
) -> list[Decision]:
    decisions: list[Decision] = []
    for facts in events:
        decisions.extend(observe(state, facts, policy, policy.z))
    return decisions


def _pauses(decisions: Iterable[Decision]) -> list[PauseDecision]:
    return [d for d in decisions if isinstance(d, PauseDecision)]


def _statuses(decisions: Iterable[Decision]) -> list[CampaignStatus]:
    return [d.status for d in decisions if isinstance(d, StatusChange)]


def _sends_with_bounces(
    start_ms: int,
    sends: int,
    *,
    every: int,
    spacing_ms: int = SECOND_MS,
    bounce_delay_ms: int = 5 * SECOND_MS,
    domains: Sequence[str] = ("gmail.com",),
) -> list[EventFacts]:
    """Sends `spacing_ms` apart; every `every`-th hard-bounces `bounce_delay_ms` later.

    Returned in event-time order, as a provider would mostly deliver them.
    """
    events = []
    for i in range(1, sends + 1):
        at_ms = start_ms + i * spacing_ms
        events.append(_facts(Counter.SENT, at_ms, domains[i % len(domains)]))
        if i % every == 0:
            bounce_at = at_ms + bounce_delay_ms
            events.append(_facts(Counter.HARD_BOUNCE, bounce_at, domains[i % len(domains)]))
    return sorted(events, key=lambda f: f.at_ms)


# --- counter_for -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "bounce_class", "counter"),
    [
        (EventType.SENT, None, Counter.SENT),
        (EventType.DELIVERED, None, Counter.DELIVERED),
        (EventType.DEFERRED, None, Counter.DEFERRED),
        (EventType.BOUNCE, BounceClass.HARD, Counter.HARD_BOUNCE),
        (EventType.BOUNCE, BounceClass.SOFT, Counter.SOFT_BOUNCE),
        (EventType.BOUNCE, BounceClass.BLOCK, Counter.BLOCK),
        (EventType.COMPLAINT, None, Counter.COMPLAINT),
        (EventType.UNSUBSCRIBE, None, Counter.UNSUBSCRIBE),
        (EventType.OPEN, None, Counter.OPEN),
        (EventType.CLICK, None, Counter.CLICK),
        (EventType.DROPPED_SUPPRESSED, None, Counter.DROPPED_SUPPRESSED),
    ],
)
def test_counter_for_maps_each_event_type_and_bounce_class(
    event_type: EventType, bounce_class: BounceClass | None, counter: Counter
) -> None:
    """Every event type (and each bounce class) increments its own counter."""
    assert counter_for(event_type, bounce_class) is counter


def test_counter_for_covers_every_event_type() -> None:
    """No event type is left without a counter."""
    for event_type in EventType:
        bounce_class = BounceClass.HARD if event_type is EventType.BOUNCE else None
        assert isinstance(counter_for(event_type, bounce_class), Counter)


def test_counter_for_a_bounce_without_class_is_refused() -> None:
    """A bounce must say whether it is hard, soft or a block."""
    with pytest.raises(ValueError, match="bounce class"):
        counter_for(EventType.BOUNCE, None)


def test_dropped_suppressed_counts_in_neither_numerator_nor_denominator() -> None:
    """Suppressed drops show in the lifetime only and leave every rate's terms unchanged."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    _run(state, [_facts(Counter.SENT, T0 + i) for i in range(100)])
    before = {
        (m, w): state.windows.rate_terms(m, w) for m in Metric for w in ("1h", "24h", "lifetime")
    }
    decisions = _run(state, [_facts(Counter.DROPPED_SUPPRESSED, T0 + i) for i in range(500)])
    assert decisions == []
    after = {(m, w): state.windows.rate_terms(m, w) for m, w in before}
    assert after == before
    assert state.windows.lifetime[Counter.DROPPED_SUPPRESSED] == 500


@pytest.mark.parametrize("counter", [Counter.SOFT_BOUNCE, Counter.BLOCK])
def test_soft_bounces_and_blocks_never_trigger(counter: Counter) -> None:
    """Even one soft bounce or block per send neither warns nor pauses."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    events = []
    for i in range(400):
        events += [_facts(Counter.SENT, T0 + i * 100), _facts(counter, T0 + i * 100 + 50)]
    assert _run(state, events) == []
    assert state.status is CampaignStatus.HEALTHY
    assert state.windows.rate_terms(Metric.HARD_BOUNCE, "1h") == (0, 400)
    assert state.domains == {}


# --- pausing -----------------------------------------------------------------------------------


def test_ten_percent_hard_bounces_pause_at_or_soon_after_200_sends() -> None:
    """With the default policy a 10% bounce rate pauses as soon as the 200-send floor is met."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    decisions: list[Decision] = []
    sends_at_pause = None
    domains = ("gmail.com", "yahoo.com", "outlook.com")
    for facts in _sends_with_bounces(T0, 400, every=10, domains=domains):
        decisions += observe(state, facts, DEFAULT, DEFAULT.z)
        if sends_at_pause is None and _pauses(decisions):
            sends_at_pause = state.windows.lifetime[Counter.SENT]
    assert sends_at_pause is not None
    assert 200 <= sends_at_pause <= 220
    (pause,) = _pauses(decisions)
    assert isinstance(pause.reading, Reading)
    assert pause.episode == 1
    assert pause.reading.rule.metric is Metric.HARD_BOUNCE
    assert pause.reading.severity is Severity.PAUSE
    assert pause.reading.denominator >= 200
    assert pause.reading.wilson_lower_bound > pause.reading.rule.pause
    assert {domain for domain, _ in pause.top_domains} == set(domains)
    assert _statuses(decisions) == [CampaignStatus.PAUSED]


def test_pause_decision_is_followed_by_a_paused_status_change_at_the_trigger() -> None:
    """A pause emits the PauseDecision, then a StatusChange to PAUSED at the trigger's time."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    decisions = _run(state, _sends_with_bounces(T0, 250, every=5))
    pause_index = next(i for i, d in enumerate(decisions) if isinstance(d, PauseDecision))
    pause = decisions[pause_index]
    change = decisions[pause_index + 1]
    assert isinstance(pause, PauseDecision)
    assert change == StatusChange(CampaignStatus.PAUSED, pause.reading, pause.trigger.at_ms)
    assert state.status_reading == pause.reading


def test_paused_campaign_is_paused_once_per_episode_and_keeps_counting() -> None:
    """More bad events after a pause count but give no second PauseDecision."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    decisions = _run(state, _sends_with_bounces(T0, 300, every=10))
    assert len(_pauses(decisions)) == 1
    bounces_before = state.windows.lifetime[Counter.HARD_BOUNCE]
    more = [_facts(Counter.HARD_BOUNCE, T0 + 400 * SECOND_MS + i) for i in range(500)]
    more += _sends_with_bounces(T0 + 500 * SECOND_MS, 1000, every=2)
    assert _run(state, more) == []
    assert state.status is CampaignStatus.PAUSED
    assert state.episode == 1
    assert state.windows.lifetime[Counter.HARD_BOUNCE] == bounces_before + 1000


def test_rearm_then_a_new_spike_starts_episode_two() -> None:
    """After a resume the detector watches afresh and pauses again as episode 2."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    first = _pauses(_run(state, _sends_with_bounces(T0, 300, every=10)))
    assert [p.episode for p in first] == [1]
    state.rearm(DEFAULT_WINDOWS)
    assert state.status is CampaignStatus.RESUMED
    assert state.windows.lifetime == [0] * len(Counter)
    assert state.warned_rules == set()
    assert state.domains == {}
    assert state.status_reading is None
    resumed_at = T0 + 2 * HOUR_MS
    healthy = _run(state, _sends_with_bounces(resumed_at, 300, every=100))
    assert healthy == []
    assert state.status is CampaignStatus.RESUMED
    spike = _run(state, _sends_with_bounces(resumed_at + 400 * SECOND_MS, 400, every=5))
    assert [p.episode for p in _pauses(spike)] == [2]
    assert _statuses(spike)[-1] is CampaignStatus.PAUSED  # possibly after some warnings
    assert state.episode == 2


def test_complaints_hours_after_their_deliveries_pause_on_the_24h_window() -> None:
    """8 complaints 3h after 1000 deliveries pause on complaints/24h at the eighth (its floor)."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    deliveries = [_facts(Counter.SENT, T0 + i * 300) for i in range(1000)]
    deliveries += [_facts(Counter.DELIVERED, T0 + i * 300 + 200) for i in range(1000)]
    assert _run(state, sorted(deliveries, key=lambda f: f.at_ms)) == []
    complaints = [
        _facts(Counter.COMPLAINT, T0 + 3 * HOUR_MS + i * MINUTE_MS, f"d{int(i >= 5)}.example")
        for i in range(8)
    ]
    assert _run(state, complaints[:7]) == []
    decisions = _run(state, complaints[7:])
    (pause,) = _pauses(decisions)
    assert isinstance(pause.reading, Reading)
    assert pause.trigger == complaints[7]
    assert (pause.reading.rule.metric, pause.reading.rule.window) == (Metric.COMPLAINT, "24h")
    assert (pause.reading.numerator, pause.reading.denominator) == (8, 1000)
    assert state.windows.rate_terms(Metric.COMPLAINT, "1h") == (8, 0)
    assert pause.top_domains == (("d0.example", 5), ("d1.example", 3))


def test_late_events_never_trigger_and_count_as_late_only() -> None:
    """A burst of bounces older than the 24h window is counted late and decides nothing."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    _run(state, [_facts(Counter.SENT, T0 + i) for i in range(1000)])
    _run(state, [_facts(Counter.SENT, T0 + 25 * HOUR_MS)])
    late = [_facts(Counter.HARD_BOUNCE, T0 + i, source="events:0", offset=i) for i in range(500)]
    assert _run(state, late) == []
    assert state.windows.late_events == 500
    assert state.windows.lifetime[Counter.HARD_BOUNCE] == 0
    assert state.domains == {}
    assert state.status is CampaignStatus.HEALTHY
    assert state.already_applied("events:0", 499)  # their offsets are still recorded


def test_healthy_two_percent_bounce_campaign_never_warns_over_25_hours() -> None:
    """600 sends an hour with 2% hard bounces for 25h raise no decision at all."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    events = _sends_with_bounces(T0, 15_000, every=50, spacing_ms=6_000, bounce_delay_ms=90_000)
    assert _run(state, events) == []
    assert state.status is CampaignStatus.HEALTHY
    assert state.windows.rate_terms(Metric.HARD_BOUNCE, "lifetime") == (300, 15_000)
    numerator, denominator = state.windows.rate_terms(Metric.HARD_BOUNCE, "1h")
    assert numerator >= 10  # the 1h floors are met: the Wilson test itself kept it OK
    assert denominator >= 200


def _old_sends_then_trickling_bounces() -> tuple[CampaignState, int]:
    """A healthy campaign whose early sends dwarf its later ones; returns it and its start S.

    10 000 sends at the start S of a 24-minute bucket, 300 more 50 min later (bucket 2), and 30 hard
    bounces from S+1.5h on, 36 min apart (never 10 within an hour: the 1h rule stays OK).
    """
    width = 24 * MINUTE_MS
    start = (T0 // width) * width
    events = [_facts(Counter.SENT, start + i) for i in range(10_000)]
    events += [_facts(Counter.SENT, start + 50 * MINUTE_MS + i) for i in range(300)]
    events += [
        _facts(Counter.HARD_BOUNCE, start + 90 * MINUTE_MS + i * 36 * MINUTE_MS) for i in range(30)
    ]
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    assert _run(state, sorted(events, key=lambda f: f.at_ms)) == []
    return state, start


def _hard_bounce_24h_severity(state: CampaignState) -> Severity:
    (rule,) = [r for r in DEFAULT_RULES if (r.metric, r.window) == (Metric.HARD_BOUNCE, "24h")]
    terms = state.windows.rate_terms(rule.metric, rule.window, rule.denominator_lag_ms)
    active = state.windows.rate_terms(rule.metric, rule.window)[1]
    return evaluate(rule, *terms, DEFAULT.z, active).severity


def test_old_sends_leaving_a_lagged_denominator_can_raise_the_24h_bounce_rate() -> None:
    """At S+24h24m the first 10 000 sends leave the 24h rule's lagged denominator.

    24h15m is 61 whole buckets of 24 min ending at the head: bucket 0 drops out when the head
    reaches bucket 61, at S+24h24m.
    """
    state, start = _old_sends_then_trickling_bounces()
    _run(state, [_facts(Counter.OPEN, start + (24 * 60 + 23) * MINUTE_MS)])
    assert _hard_bounce_24h_severity(state) is Severity.OK
    _run(state, [_facts(Counter.OPEN, start + (24 * 60 + 24) * MINUTE_MS)])
    assert state.windows.rate_terms(Metric.HARD_BOUNCE, "24h", 15 * MINUTE_MS) == (30, 300)
    assert _hard_bounce_24h_severity(state) is Severity.PAUSE


def test_a_window_that_no_longer_sees_sends_is_not_judged_on_its_feedback_tail() -> None:
    """A send's feedback tail does not pause it once its own window holds no sends.

    10 300 sends in the first 2 h, a hard bounce every 10 min for 30 h (1.7% overall). At
    25h42m the lagged 24h denominator still reaches the last ~2 000 sends, over which the
    bounces of the day would read 7%; but the window proper holds no send, so its floor is
    unmet and only the lifetime rule (OK) judges.
    """
    start = (T0 // (24 * MINUTE_MS)) * 24 * MINUTE_MS
    events = [_facts(Counter.SENT, start + i * 699) for i in range(10_300)]
    events += [_facts(Counter.HARD_BOUNCE, start + i * 10 * MINUTE_MS) for i in range(1, 181)]
    events.sort(key=lambda f: f.at_ms)
    cut = (
        start + (25 * 60 + 42) * MINUTE_MS
    )  # head in bucket 64: lagged from bucket 4, proper from 5
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    assert _pauses(_run(state, [f for f in events if f.at_ms <= cut])) == []
    assert state.windows.rate_terms(Metric.HARD_BOUNCE, "24h")[1] == 0
    numerator, lagged = state.windows.rate_terms(Metric.HARD_BOUNCE, "24h", 15 * MINUTE_MS)
    (rule,) = [r for r in DEFAULT_RULES if (r.metric, r.window) == (Metric.HARD_BOUNCE, "24h")]
    assert evaluate(rule, numerator, lagged, DEFAULT.z).severity is Severity.PAUSE  # tail alone
    assert _pauses(_run(state, [f for f in events if f.at_ms > cut])) == []


def test_a_breach_caused_by_the_lagged_denominator_pauses_at_that_event() -> None:
    """The event that moves old sends out of a lagged denominator is judged on that change."""
    state, start = _old_sends_then_trickling_bounces()
    _run(state, [_facts(Counter.OPEN, start + (24 * 60 + 23) * MINUTE_MS)])
    crossing = _facts(Counter.OPEN, start + (24 * 60 + 24) * MINUTE_MS)
    assert [p.trigger for p in _pauses(_run(state, [crossing]))] == [crossing]


# --- warnings ----------------------------------------------------------------------------------

WARN_ONLY = Policy((Rule(Metric.HARD_BOUNCE, "lifetime", 0.05, 0.9, 10, 1),))


def test_warning_then_recovery_emits_warning_and_healthy_status_changes() -> None:
    """Crossing the warn threshold and falling back emits WARNING then HEALTHY, once each."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    events = [_facts(Counter.SENT, T0 + i) for i in range(10)]
    events += [_facts(Counter.HARD_BOUNCE, T0 + 10 + i) for i in range(3)]
    events += [_facts(Counter.SENT, T0 + 20 + i) for i in range(300)]
    decisions = _run(state, events, WARN_ONLY)
    assert _statuses(decisions) == [CampaignStatus.WARNING, CampaignStatus.HEALTHY]
    assert _pauses(decisions) == []
    warning, healthy = decisions
    assert isinstance(warning, StatusChange)
    assert isinstance(healthy, StatusChange)
    assert warning.reading is not None
    assert warning.reading.severity is Severity.WARN
    assert warning.reading.rule is WARN_ONLY.rules[0]
    assert healthy.reading is None
    assert warning.at_ms < healthy.at_ms
    assert state.status is CampaignStatus.HEALTHY
    assert state.warned_rules == set()
    assert state.status_reading is None


def test_a_rate_hovering_at_the_warn_threshold_warns_once_and_clears_well_below_it() -> None:
    """Hysteresis: dipping just under the warn threshold keeps WARNING; clearing needs 80% of it.

    Without it, every send and bounce around 5% would flip the health topic between WARNING
    and HEALTHY.
    """
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    rule = WARN_ONLY.rules[0]
    events = [_facts(Counter.SENT, T0 + i) for i in range(255)]
    events += [_facts(Counter.HARD_BOUNCE, T0 + 300 + i) for i in range(20)]  # bound 0.051
    at = T0 + 400
    # Then alternately dilute the bound to just under 5% (0.0499) and push it back over.
    for _round in range(5):
        events += [_facts(Counter.SENT, at + i) for i in range(16)]
        events.append(_facts(Counter.HARD_BOUNCE, at + 20))
        at += 30
    decisions = _run(state, events, WARN_ONLY)
    assert _statuses(decisions) == [CampaignStatus.WARNING]
    numerator, denominator = state.windows.rate_terms(rule.metric, rule.window)
    assert evaluate(rule, numerator, denominator, WARN_ONLY.z).wilson_lower_bound > rule.warn * 0.8

    lows = _run(state, [_facts(Counter.SENT, at + i) for i in range(2000)], WARN_ONLY)
    assert _statuses(lows) == [CampaignStatus.HEALTHY]
    numerator, denominator = state.windows.rate_terms(rule.metric, rule.window)
    assert evaluate(rule, numerator, denominator, WARN_ONLY.z).wilson_lower_bound <= rule.warn * 0.8


def test_resumed_campaign_goes_through_warning_to_healthy() -> None:
    """After a resume the status stays RESUMED until a warning, then returns to HEALTHY."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    state.rearm(DEFAULT_WINDOWS)
    assert _run(state, [_facts(Counter.SENT, T0 + i) for i in range(20)], WARN_ONLY) == []
    assert state.status is CampaignStatus.RESUMED
    events = [_facts(Counter.HARD_BOUNCE, T0 + 30 + i) for i in range(3)]
    events += [_facts(Counter.SENT, T0 + 40 + i) for i in range(400)]
    decisions = _run(state, events, WARN_ONLY)
    assert _statuses(decisions) == [CampaignStatus.WARNING, CampaignStatus.HEALTHY]


# --- offsets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "offset", "applied"),
    [
        ("events:3", 41, True),
        ("events:3", 0, True),
        ("events:3", 42, False),
        ("events:4", 41, False),
        ("events:4", 0, False),
        (None, 41, False),
        ("events:3", None, False),
    ],
)
def test_already_applied_after_observing_a_source_offset(
    source: str | None, offset: int | None, *, applied: bool
) -> None:
    """A position is applied iff its source's highest observed offset is at or after it."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    observe(state, _facts(Counter.SENT, T0, source="events:3", offset=41), DEFAULT, DEFAULT.z)
    observe(state, _facts(Counter.SENT, T0, source="events:3", offset=7), DEFAULT, DEFAULT.z)
    observe(state, _facts(Counter.SENT, T0, source=None, offset=99), DEFAULT, DEFAULT.z)
    assert state.offsets == {"events:3": 41}
    assert state.already_applied(source, offset) is applied


def test_fresh_state_has_applied_nothing() -> None:
    """A campaign never seen has no applied position."""
    assert not CampaignState.fresh(DEFAULT_WINDOWS).already_applied("events:0", 0)


# --- domains -----------------------------------------------------------------------------------


def test_top_domains_are_ordered_most_first_then_by_name_and_capped() -> None:
    """At most TOP_DOMAINS domains, by descending count, ties broken by name."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    counts = {"a.com": 1, "b.com": 5, "c.com": 3, "d.com": 5, "e.com": 2, "f.com": 4, "g.com": 1}
    events = [
        _facts(Counter.HARD_BOUNCE, T0 + i, domain)
        for i, domain in enumerate(d for d, n in counts.items() for _ in range(n))
    ]
    _run(state, events)
    assert TOP_DOMAINS == 5
    assert state.top_domains(Metric.HARD_BOUNCE) == (
        ("b.com", 5),
        ("d.com", 5),
        ("f.com", 4),
        ("c.com", 3),
        ("e.com", 2),
    )
    assert state.top_domains(Metric.COMPLAINT) == ()


def test_domains_beyond_the_tracking_cap_fold_into_other() -> None:
    """After MAX_TRACKED_DOMAINS distinct domains, new ones count as OTHER_DOMAIN."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    tracked = [f"d{i:02}.example" for i in range(MAX_TRACKED_DOMAINS)]
    events = [_facts(Counter.COMPLAINT, T0, d) for d in tracked]
    events += [_facts(Counter.COMPLAINT, T0, f"new{i}.example") for i in range(10)]
    events += [_facts(Counter.COMPLAINT, T0, tracked[0]) for _ in range(2)]
    _run(state, events)
    counts = state.domains[Metric.COMPLAINT]
    assert len(counts) == MAX_TRACKED_DOMAINS + 1
    assert counts[OTHER_DOMAIN] == 10
    assert counts[tracked[0]] == 3  # an already tracked domain keeps counting itself
    assert not any(d.startswith("new") for d in counts)
    assert state.top_domains(Metric.COMPLAINT)[:2] == ((OTHER_DOMAIN, 10), (tracked[0], 3))


def test_only_numerator_events_are_counted_by_domain() -> None:
    """Sends and deliveries are not attributed to domains; each metric keeps its own."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    events = [
        _facts(Counter.SENT, T0, "a.com"),
        _facts(Counter.DELIVERED, T0, "a.com"),
        _facts(Counter.UNSUBSCRIBE, T0, "b.com"),
        _facts(Counter.HARD_BOUNCE, T0, "c.com"),
        _facts(Counter.SOFT_BOUNCE, T0, "d.com"),
    ]
    _run(state, events)
    assert state.domains == {Metric.UNSUBSCRIBE: {"b.com": 1}, Metric.HARD_BOUNCE: {"c.com": 1}}


def test_bounces_are_counted_by_class_and_category_and_uncategorized_ones_are_not() -> None:
    """Each categorized bounce counts under its class; other events and bare bounces do not."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    bad, gone, spam, full = (
        BounceCategory.BAD_MAILBOX,
        BounceCategory.BAD_DOMAIN,
        BounceCategory.SPAM_BLOCK,
        BounceCategory.MAILBOX_FULL,
    )
    events = [
        _facts(Counter.SENT, T0),
        _facts(Counter.HARD_BOUNCE, T0 + 1, category=bad),
        _facts(Counter.HARD_BOUNCE, T0 + 2, category=gone),
        _facts(Counter.HARD_BOUNCE, T0 + 3, category=bad),
        _facts(Counter.HARD_BOUNCE, T0 + 4),
        _facts(Counter.BLOCK, T0 + 5, category=spam),
        _facts(Counter.SOFT_BOUNCE, T0 + 6, category=full),
        _facts(Counter.COMPLAINT, T0 + 7, category=bad),  # not a bounce: never counted
    ]
    _run(state, events)
    assert state.bounce_categories == {
        BounceClass.HARD: {bad: 2, gone: 1},
        BounceClass.BLOCK: {spam: 1},
        BounceClass.SOFT: {full: 1},
    }
    assert state.top_bounce_categories(Metric.HARD_BOUNCE) == ((bad, 2), (gone, 1))
    assert state.top_bounce_categories(Metric.COMPLAINT) == ()


def test_top_bounce_categories_are_most_first_then_by_name_and_capped() -> None:
    """Ties are broken by name, and at most TOP_BOUNCE_CATEGORIES are named."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    categories = list(BounceCategory)
    for rank, category in enumerate(categories):
        for _ in range(1 + rank % 3):
            state.count_bounce_category(Counter.HARD_BOUNCE, category)
    top = state.top_bounce_categories(Metric.HARD_BOUNCE)
    assert len(top) == TOP_BOUNCE_CATEGORIES
    expected = sorted(
        ((c, 1 + r % 3) for r, c in enumerate(categories)), key=lambda x: (-x[1], x[0])
    )
    assert top == tuple(expected[:TOP_BOUNCE_CATEGORIES])


def test_a_late_bounce_is_not_counted_by_category() -> None:
    """A bounce too old for any window counts as late only, its category included."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    _run(state, [_facts(Counter.SENT, T0 + 40 * 24 * HOUR_MS)])
    _run(state, [_facts(Counter.HARD_BOUNCE, T0, category=BounceCategory.BAD_MAILBOX)])
    assert state.windows.late_events == 1
    assert state.bounce_categories == {}


def test_a_hard_bounce_pause_names_its_bounce_categories_and_a_resume_forgets_them() -> None:
    """The pause carries the hard bounces' categories (not the blocks'); rearm clears them."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    events = []
    for n, sent_or_bounced in enumerate(_sends_with_bounces(T0, 300, every=10)):
        facts = sent_or_bounced
        if facts.counter is Counter.HARD_BOUNCE:
            category = BounceCategory.BAD_DOMAIN if n % 3 == 0 else BounceCategory.BAD_MAILBOX
            facts = facts._replace(bounce_category=category)
        events.append(facts)
        if n % 40 == 0:
            blocked = _facts(Counter.BLOCK, facts.at_ms, category=BounceCategory.SPAM_BLOCK)
            events.append(blocked)
    (pause,) = _pauses(_run(state, events))
    named = dict(pause.top_bounce_categories)
    assert set(named) == {BounceCategory.BAD_MAILBOX, BounceCategory.BAD_DOMAIN}
    assert sum(named.values()) == pause.reading.numerator
    assert pause.top_bounce_categories[0][0] is BounceCategory.BAD_MAILBOX
    assert BounceClass.BLOCK in state.bounce_categories
    state.rearm(DEFAULT_WINDOWS)
    assert state.bounce_categories == {}


# --- generated streams -------------------------------------------------------------------------

COUNTER_CHOICES = (
    [Counter.SENT] * 4
    + [Counter.DELIVERED] * 3
    + [Counter.HARD_BOUNCE] * 2
    + [Counter.COMPLAINT, Counter.UNSUBSCRIBE, Counter.SOFT_BOUNCE, Counter.DROPPED_SUPPRESSED]
    + [Counter.BLOCK]
)
BOUNCES = {Counter.HARD_BOUNCE, Counter.SOFT_BOUNCE, Counter.BLOCK}
CATEGORY_CHOICES = (None, *BounceCategory)
DOMAIN_CHOICES = ("gmail.com", "yahoo.com", "corp.example", "mail.ru")
SOURCE_CHOICES = (None, "events:0", "events:1")
BURSTS = st.lists(st.binary(min_size=8, max_size=8), min_size=6, max_size=40)
"""Eight bytes per burst, one byte per field: a single draw per burst keeps generation fast,
bytes come out near uniform, and shrinking a byte towards 0 simplifies its field."""


@st.composite
def streams(draw: st.DrawFn, *, resumes: bool = True, pace: int = 1) -> list[Step]:
    """Bursts of events on SPECS-scale times: mostly forward, some out of order, some late.

    Each burst moves the clock 0..510 ms and repeats 1..6 identical events, arriving 0..255
    or 0..4080 ms behind the clock (the long window is 3000 ms, so some are late). Events
    from a Kafka source carry increasing offsets; others have none. With `resumes`, about
    one burst in 20 is preceded by a None step, a `rearm` after a resume. A `pace` above 1
    divides the clock's moves, so that more events share a bucket.
    """
    steps: list[Step] = []
    offsets = itertools.count()
    clock = 10_000
    for burst in draw(BURSTS):
        kind, advance, lateness, lag, domain, repeat, source, resume = burst
        counter = COUNTER_CHOICES[kind % len(COUNTER_CHOICES)]
        clock += 2 * advance // pace
        lag *= 1 if lateness < 192 else 16
        if resumes and resume < 12:
            steps.append(None)
        origin = SOURCE_CHOICES[source % len(SOURCE_CHOICES)]
        category = CATEGORY_CHOICES[(domain + advance) % len(CATEGORY_CHOICES)]
        for _ in range(1 + repeat % 6):
            offset = None if origin is None else next(offsets)
            steps.append(
                _facts(
                    counter,
                    clock - lag,
                    DOMAIN_CHOICES[domain % len(DOMAIN_CHOICES)],
                    source=origin,
                    offset=offset,
                    category=category if counter in BOUNCES else None,
                )
            )
    return steps


def _apply(state: CampaignState, steps: Iterable[Step], policy: Policy = SMALL) -> list[Decision]:
    """Apply steps the way the detection service does: skip replays, rearm on a resume."""
    decisions: list[Decision] = []
    for step in steps:
        if step is None:
            state.rearm(SPECS)
        elif not state.already_applied(step.source, step.offset):
            decisions += observe(state, step, policy, policy.z)
    return decisions


def _final_full_readings(state: CampaignState, policy: Policy) -> dict[tuple[Metric, str], Reading]:
    readings = {}
    for rule in policy.rules:
        numerator, denominator = state.windows.rate_terms(
            rule.metric, rule.window, rule.denominator_lag_ms
        )
        active = state.windows.rate_terms(rule.metric, rule.window)[1]
        readings[rule.metric, rule.window] = evaluate(
            rule, numerator, denominator, policy.z, active
        )
    return readings


def _final_readings(state: CampaignState, policy: Policy) -> dict[tuple[Metric, str], Severity]:
    return {key: r.severity for key, r in _final_full_readings(state, policy).items()}


def _warned_by_final_counts(
    state: CampaignState, policy: Policy
) -> tuple[set[tuple[Metric, str]], set[tuple[Metric, str]]]:
    """The rules the final counts warn, and those a warning may still hold (hysteresis)."""
    readings = _final_full_readings(state, policy)
    must = {key for key, r in readings.items() if r.severity is not Severity.OK}
    may = must | {key for key, r in readings.items() if still_warned(r)}
    return must, may


@settings(max_examples=200, deadline=None)
@given(steps=streams(), data=st.data(), policy=WITH_SEQUENTIAL)
def test_decisions_and_state_do_not_depend_on_batch_boundaries(
    steps: list[Step], data: st.DataObject, policy: Policy
) -> None:
    """Batches with a stored-and-reloaded state (and replays) match one pass over the stream.

    Each batch decodes the previous batch's bytes, first re-applies the previous batch's
    Kafka events (at-least-once redelivery, which must be skipped), then its own steps.
    """
    whole = CampaignState.fresh(SPECS)
    expected = _apply(whole, steps, policy)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(steps)), max_size=6)))
    bounds = [0, *cuts, len(steps)]
    blob: bytes | None = None
    decisions: list[Decision] = []
    previous: list[Step] = []
    for start, end in itertools.pairwise(bounds):
        state = CampaignState.fresh(SPECS) if blob is None else decode_state(blob, SPECS)
        replays = [s for s in previous if s is not None and s.source is not None]
        assert _apply(state, replays, policy) == []
        decisions += _apply(state, steps[start:end], policy)
        blob = encode_state(state)
        previous = steps[start:end]
    assert decisions == expected
    assert blob == encode_state(whole)


@settings(max_examples=200, deadline=None)
@given(steps=streams(), resume_after=st.integers(0, 15), policy=WITH_SEQUENTIAL)
def test_pause_episodes_are_consecutive_and_at_most_one_per_resume(
    steps: list[Step], resume_after: int, policy: Policy
) -> None:
    """Each stretch between resumes pauses at most once; episodes number 1, 2, 3, ...

    Besides the stream's own resumes, an operator resumes a paused campaign after
    `resume_after` more steps, so that streams reach several episodes.
    """
    state = CampaignState.fresh(SPECS)
    episodes: list[int] = []
    stretch_pauses = 0
    paused_for = 0
    for step in steps:
        if step is None or paused_for > resume_after:
            state.rearm(SPECS)
            stretch_pauses = paused_for = 0
        if step is not None:
            pauses = _pauses(_apply(state, [step], policy))
            stretch_pauses += len(pauses)
            assert stretch_pauses <= 1
            episodes += [p.episode for p in pauses]
        paused_for += state.status is CampaignStatus.PAUSED
    assert episodes == list(range(1, len(episodes) + 1))
    assert state.episode == len(episodes)


@settings(max_examples=200, deadline=None)
@given(steps=streams(resumes=False), policy=POLICIES)
def test_status_agrees_with_a_fresh_evaluation_of_the_final_counts(
    steps: list[Step], policy: Policy
) -> None:
    """No breach is missed, and without a pause the status is what the final counts give.

    If the final counts breach a pause rule the campaign is paused; if it never paused, its
    warned rules and status are exactly those of a fresh evaluation of the final counts.
    This needs lagged spans aligned to their rule window's buckets, as in LAGGED; see
    `test_a_breach_caused_by_the_lagged_denominator_pauses_at_that_event` for a misaligned one.
    """
    state = CampaignState.fresh(SPECS)
    decisions = _apply(state, steps, policy)
    final = _final_readings(state, policy)
    if Severity.PAUSE in final.values():
        assert state.status is CampaignStatus.PAUSED
    if not _pauses(decisions):
        must, may = _warned_by_final_counts(state, policy)
        assert must <= state.warned_rules <= may
        warned = state.warned_rules
        assert state.status is (CampaignStatus.WARNING if warned else CampaignStatus.HEALTHY)


@st.composite
def in_window_events(draw: st.DrawFn, *, shortest: bool) -> list[EventFacts]:
    """Events none of which can be late in any order.

    All lie in the longest window's range at the final watermark (with `shortest`, in every
    window's range at it); the first event is at the final watermark.
    """
    final_ms = draw(st.integers(10_000, 20_000))
    spec = min(SPECS, key=lambda s: s.length_ms) if shortest else SPECS[-1]
    oldest_bucket = final_ms // spec.bucket_ms - spec.buckets + 1
    if shortest:  # every window must still hold that bucket's start
        for other in SPECS:
            assert oldest_bucket * spec.bucket_ms // other.bucket_ms > (
                final_ms // other.bucket_ms - other.buckets
            )
    oldest_ms = oldest_bucket * spec.bucket_ms
    span = final_ms - oldest_ms + 1
    events = [_facts(Counter.SENT, final_ms)]
    for burst in draw(BURSTS):
        kind, high, low, domain, repeat = burst[:5]
        counter = COUNTER_CHOICES[kind % len(COUNTER_CHOICES)]
        at_ms = oldest_ms + (high * 256 + low) * span // 65_536
        domain_name = DOMAIN_CHOICES[domain % len(DOMAIN_CHOICES)]
        events += [_facts(counter, at_ms, domain_name)] * (1 + repeat % 6)
    return events


def _check_permutation(
    events: list[EventFacts], shuffled: list[EventFacts], policy: Policy
) -> CampaignState:
    first, second = CampaignState.fresh(SPECS), CampaignState.fresh(SPECS)
    first_decisions = _apply(first, events, policy)
    second_decisions = _apply(second, shuffled, policy)
    for state in (first, second):
        assert state.windows.late_events == 0
    assert first.windows.lifetime == second.windows.lifetime
    assert first.windows.watermark_ms == second.windows.watermark_ms
    for one, other in zip(first.windows.windows, second.windows.windows, strict=True):
        assert one.sums == other.sums
    first_pauses, second_pauses = _pauses(first_decisions), _pauses(second_decisions)
    if Severity.PAUSE in _final_readings(first, policy).values():
        assert len(first_pauses) == len(second_pauses) == 1
    if not first_pauses and not second_pauses:
        # Beyond the final counts, a warning may hold in the hysteresis band on one path only.
        must, may = _warned_by_final_counts(first, policy)
        for state in (first, second):
            assert must <= state.warned_rules <= may
            expected = CampaignStatus.WARNING if state.warned_rules else CampaignStatus.HEALTHY
            assert state.status is expected
    return second


@settings(max_examples=200, deadline=None)
@given(data=st.data(), policy=POLICIES, shortest=st.booleans())
def test_final_counts_do_not_depend_on_order_when_no_event_can_be_late(
    data: st.DataObject, policy: Policy, *, shortest: bool
) -> None:
    """Reordering events that cannot be late leaves the final counts unchanged.

    Precisely: any permutation of events all within the longest window's range at the final
    watermark (so none is late in any order) gives the same final window sums, lifetime and
    watermark; a shorter window holds the same subset in both orders, and when all events
    are within the shortest window's range every window holds all of them. Pauses
    themselves depend on the moment a threshold is crossed, so only this is claimed of
    them: if the final counts breach a pause rule both orders pause exactly once, and if
    neither order paused, both end with the same status and warned rules.
    """
    events = data.draw(in_window_events(shortest=shortest))
    state = _check_permutation(events, data.draw(st.permutations(events)), policy)
    if shortest:
        for window in state.windows.windows:
            assert window.sums == state.windows.lifetime[: len(window.sums)]


def test_a_pause_can_depend_on_the_order_of_events_in_one_window() -> None:
    """Same events, same window: bounces early pause, bounces after the dilution do not.

    So "a pause in one order implies a pause in every order" does not hold in general; only
    a breach by the final counts is order-independent.
    """
    policy = Policy((Rule(Metric.HARD_BOUNCE, "lifetime", 0.05, 0.2, 20, 3),))
    sends = [_facts(Counter.SENT, 10_000 + i) for i in range(220)]
    bounces = [_facts(Counter.HARD_BOUNCE, 10_000 + i) for i in range(10)]
    early = CampaignState.fresh(SPECS)
    late = CampaignState.fresh(SPECS)
    assert len(_pauses(_run(early, sends[:20] + bounces + sends[20:], policy))) == 1
    assert _pauses(_run(late, sends + bounces, policy)) == []
    assert early.windows.lifetime == late.windows.lifetime
    assert _final_readings(late, policy)[Metric.HARD_BOUNCE, "lifetime"] is Severity.OK


def _decisions_with_states(
    state: CampaignState, steps: Iterable[Step], policy: Policy, *, run: bool
) -> list[tuple[Decision, bytes]]:
    """Each decision with the state it was made in.

    Stretches between resumes go through `observe_run` (as the detection service folds a
    batch), or event by event through `observe`.
    """
    made: list[tuple[Decision, bytes]] = []
    stretch: list[EventFacts] = []

    def flush() -> None:
        made.extend((d, encode_state(state)) for d in observe_run(state, stretch, policy, policy.z))
        stretch.clear()

    for step in steps:
        if step is None:
            flush()
            state.rearm(SPECS)
        elif state.already_applied(step.source, step.offset):
            continue
        elif run:
            stretch.append(step)
        else:
            made.extend((d, encode_state(state)) for d in observe(state, step, policy, policy.z))
    flush()
    return made


@settings(max_examples=300, deadline=None)
@given(
    steps=st.one_of(streams(), streams(pace=16), streams(pace=256)),
    policy=st.sampled_from([SMALL, LAGGED, WARY, Policy(SMALL.rules[:3]), CUSUM, CUSUM_ONLY]),
)
def test_observe_run_decides_exactly_as_observe_one_by_one(
    steps: list[Step], policy: Policy
) -> None:
    """Counting quiet stretches at once changes nothing.

    Same decisions, made in the same state, and the same final state.
    """
    one_by_one, run = CampaignState.fresh(SPECS), CampaignState.fresh(SPECS)
    expected = _decisions_with_states(one_by_one, steps, policy, run=False)
    assert _decisions_with_states(run, steps, policy, run=True) == expected
    assert encode_state(run) == encode_state(one_by_one)
    assert run.status is one_by_one.status
    assert run.warned_rules == one_by_one.warned_rules


@pytest.mark.parametrize("every", [50, 20, 8])
def test_observe_run_matches_observe_on_a_realistic_campaign(every: int) -> None:
    """Default policy and windows: healthy stretches counted at once, pauses unchanged.

    20,000 sends a second apart with a hard bounce every `every`-th (2%, 5%, 12.5%), in
    batches of 500: a bad list still pauses at the very same event.
    """
    events = _sends_with_bounces(T0, 20_000, every=every, domains=("gmail.com", "yahoo.com"))
    one_by_one = CampaignState.fresh(DEFAULT_WINDOWS)
    expected = _run(one_by_one, events)
    run = CampaignState.fresh(DEFAULT_WINDOWS)
    made: list[Decision] = []
    for start in range(0, len(events), 500):  # batches, as the detection service folds them
        made += observe_run(run, events[start : start + 500], DEFAULT, DEFAULT.z)
    assert made == expected
    assert encode_state(run) == encode_state(one_by_one)
    assert bool(_pauses(made)) is (every < 20)


def _could_leave_ok(rule: Rule, numerator: int, denominator: int, z: float) -> bool:
    """Whether a reading could be above OK: both floors met, bound over the warn threshold."""
    least = max(denominator, rule.min_denominator)
    if numerator < rule.min_numerator:
        return False
    return wilson_lower_bound(numerator, max(least, numerator), z) > rule.warn


@settings(max_examples=400, deadline=None)
@given(
    warn=st.floats(0.0005, 0.5),
    floors=st.tuples(st.integers(1, 500), st.integers(1, 20)),
    counts=st.tuples(st.integers(0, 5_000), st.integers(0, 200_000)),
    z=st.sampled_from([1.645, 1.96, 2.576]),
    later=st.tuples(st.floats(0, 1), st.integers(0, 100_000)),
)
def test_ok_headroom_is_safe_and_tight(
    warn: float,
    floors: tuple[int, int],
    counts: tuple[int, int],
    z: float,
    later: tuple[float, int],
) -> None:
    """Within the headroom no reading can leave OK, whatever denominator comes too.

    One more numerator event, with no more denominator, could: quiet stretches lose nothing.
    """
    rule = Rule(Metric.HARD_BOUNCE, "1h", warn, warn, *floors)
    numerator, denominator = counts
    taken, more_denominator = later
    room = ok_headroom(rule, numerator, denominator, z)

    assert (room == -1) is _could_leave_ok(rule, numerator, denominator, z)
    if room < 0:
        return
    used = round(room * taken)
    assert not _could_leave_ok(rule, numerator + used, denominator + more_denominator, z)
    if room < HEADROOM_CAP:
        assert _could_leave_ok(rule, numerator + room + 1, denominator, z)
