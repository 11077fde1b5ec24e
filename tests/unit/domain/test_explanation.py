"""Every rule read against a campaign's windows and CUSUMs, with why (domain.explanation)."""

from __future__ import annotations

from processor.domain.campaign_state import CampaignState, EventFacts
from processor.domain.detector import observe_run
from processor.domain.explanation import explain, explain_sequential
from processor.domain.policy import DEFAULT_SEQUENTIAL, DEFAULT_WINDOWS, Policy, Rule
from processor.domain.windows import Counter
from schemas.control import Metric

AT_MS = 1_800_000_000_000


def _state(sent: int, hard: int) -> CampaignState:
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    for _ in range(sent):
        state.windows.observe(Counter.SENT, AT_MS)
    for _ in range(hard):
        state.windows.observe(Counter.HARD_BOUNCE, AT_MS)
    return state


POLICY = Policy(
    (
        Rule(Metric.HARD_BOUNCE, "lifetime", 0.025, 0.05, 200, 10),
        Rule(Metric.COMPLAINT, "lifetime", 0.0005, 0.001, 1000, 5),
    )
)


def test_a_breached_rule_comes_first_and_says_which_threshold() -> None:
    """40 hard bounces in 400 sends: the bound is above 5%, so the bounce rule pauses."""
    first, second = explain(_state(400, 40), POLICY)
    assert first.verdict == "pause"
    assert first.reading.rule.metric is Metric.HARD_BOUNCE
    assert "above the pause threshold 5.000%" in first.why
    assert second.verdict == "ok"


def test_a_rule_below_its_numerator_floor_says_so() -> None:
    """5 bounces in 20 sends is a 25% rate, but under the floor of 10 events: OK, and why."""
    (bounce, _) = explain(_state(20, 5), POLICY)
    assert bounce.verdict == "ok"
    assert bounce.why == "5 events, below the floor of 10"


def test_a_rule_below_its_denominator_floor_says_so() -> None:
    """12 bounces in 100 sends: the numerator floor is met, the denominator's (200) is not."""
    (bounce, _) = explain(_state(100, 12), POLICY)
    assert bounce.why == "denominator 100, below the floor of 200"


def test_explaining_changes_nothing_in_the_state() -> None:
    """Read-only: the warned rules and the counts are as before."""
    state = _state(400, 40)
    before = (set(state.warned_rules), state.windows.window("lifetime"))
    explain(state, POLICY)
    assert (state.warned_rules, state.windows.window("lifetime")) == before


SEQUENTIAL = Policy((), sequential=DEFAULT_SEQUENTIAL)


def _stream(sends: int, bounce_every: int, per_second: int = 10) -> CampaignState:
    """Sends `per_second` a second, every `bounce_every`-th hard-bouncing 5 s later."""
    events = []
    for index in range(sends):
        at = AT_MS + index * 1000 // per_second
        events.append(EventFacts(f"s{index}", Counter.SENT, at, "example.com"))
        if bounce_every and index % bounce_every == 0:
            events.append(EventFacts(f"b{index}", Counter.HARD_BOUNCE, at + 5000, "example.org"))
    events.sort(key=lambda facts: facts.at_ms)
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    list(observe_run(state, events, SEQUENTIAL, SEQUENTIAL.z))
    return state


def test_a_sequential_rule_at_its_bound_comes_first_with_the_statistic_against_h() -> None:
    """A bad list (20% hard bounces for 10 minutes): the bounce CUSUM is past h, and says so."""
    state = _stream(6000, 5)
    first, *others = explain_sequential(state, SEQUENTIAL)
    assert first.verdict == "pause"
    assert first.reading.rule.metric is Metric.HARD_BOUNCE
    assert first.reading.statistic >= first.reading.rule.h
    assert first.why.endswith(": at the pause bound")
    assert first.why.startswith(f"statistic {first.reading.statistic:.2f} of h 15 (")
    assert [o.verdict for o in others] == ["ok", "ok"]


def test_a_sequential_rule_at_zero_says_the_events_fit_p0() -> None:
    """No bounces at all: the statistic is zero and there is no change point."""
    (bounces, *_) = explain_sequential(_stream(3000, 0), SEQUENTIAL)
    assert bounces.reading.change_at_ms is None
    assert (
        bounces.why
        == "statistic 0.00 of h 15 (0%): at zero, the events so far fit p0 better than p1"
    )


def test_a_sequential_rule_below_its_numerator_floor_says_so() -> None:
    """Every 15th of 130 sends a second bounces: the statistic leaves zero on 9, not 10."""
    state = _stream(130, 15, per_second=1)
    bounces = next(
        e
        for e in explain_sequential(state, SEQUENTIAL)
        if e.reading.rule.metric is Metric.HARD_BOUNCE
    )
    assert bounces.verdict == "ok"
    assert bounces.reading.change_at_ms is not None
    assert bounces.why.endswith("events since the change, below 10")


def test_explaining_the_sequential_rules_changes_no_count() -> None:
    """Reading the CUSUMs leaves their statistic, pending events and exposure as they were."""
    state = _stream(6000, 5)
    tracks = state.sequential.tracks

    def counts() -> list[tuple[float, int, float]]:
        return [(t.at_step, t.bumps, t.exposure) for t in tracks]

    before = counts()
    explain_sequential(state, SEQUENTIAL)
    assert counts() == before
