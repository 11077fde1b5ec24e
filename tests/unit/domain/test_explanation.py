"""Every rule read against a campaign's windows, with why (processor.domain.explanation)."""

from __future__ import annotations

from processor.domain.campaign_state import CampaignState
from processor.domain.explanation import explain
from processor.domain.policy import DEFAULT_WINDOWS, Policy, Rule
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
