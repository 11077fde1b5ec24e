"""Why a campaign is (or is not) paused: every rule of its policy read against its state.

Pure: the same arithmetic as the detector's own judgement (the windowed rules on the windows,
the sequential rules on their CUSUMs), so an operator sees exactly the numbers the worker
decides on. Nothing is counted; reading a sequential rule only notes its h, as the detector does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from processor.domain.policy import Reading, Severity, evaluate
from processor.domain.sequential import SequentialReading, read

if TYPE_CHECKING:
    from processor.domain.campaign_state import CampaignState
    from processor.domain.policy import Policy, Rule, SequentialRule


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    """One rule's reading, with what held it back if it is OK."""

    reading: Reading
    active_denominator: int
    """The window's own denominator, without the lag (the floor is judged on it)."""

    @property
    def verdict(self) -> str:
        """`pause`, `warn` or `ok`."""
        return self.reading.severity.name.lower()

    @property
    def why(self) -> str:
        """One sentence on the verdict: which floor or threshold decided it."""
        reading, rule = self.reading, self.reading.rule
        if reading.numerator < rule.min_numerator:
            return f"{reading.numerator} events, below the floor of {rule.min_numerator}"
        denominator = min(self.active_denominator, reading.denominator)
        if denominator < rule.min_denominator:
            return f"denominator {denominator}, below the floor of {rule.min_denominator}"
        bound = f"lower bound {reading.wilson_lower_bound:.3%}"
        if reading.severity is Severity.PAUSE:
            return f"{bound} above the pause threshold {rule.pause:.3%}"
        if reading.severity is Severity.WARN:
            return f"{bound} above the warn threshold {rule.warn:.3%}"
        return f"{bound} at or below the warn threshold {rule.warn:.3%}"


def reading_of(state: CampaignState, rule: Rule, z: float) -> RuleExplanation:
    """The rule judged on the campaign's windows now (lagged denominator as the detector uses)."""
    windows = state.windows
    numerator, denominator = windows.rate_terms(rule.metric, rule.window, rule.denominator_lag_ms)
    active = denominator
    if rule.denominator_lag_ms:
        active = windows.rate_terms(rule.metric, rule.window)[1]
    return RuleExplanation(evaluate(rule, numerator, denominator, z, active), active)


def explain(state: CampaignState, policy: Policy) -> list[RuleExplanation]:
    """Every rule of `policy`, worst first, then in the policy's order."""
    return _worst_first([reading_of(state, rule, policy.z) for rule in policy.rules])


@dataclass(frozen=True, slots=True)
class SequentialExplanation:
    """One sequential rule's reading, with what held it back if it is OK."""

    reading: SequentialReading
    pending: int
    """Events of the metric counted in the current step: they move the statistic at its end."""

    @property
    def verdict(self) -> str:
        """`pause`, `warn` or `ok`."""
        return self.reading.severity.name.lower()

    @property
    def why(self) -> str:
        """One sentence on the verdict: the statistic against h, or the floor that held it."""
        reading, rule = self.reading, self.reading.rule
        against = f"statistic {reading.statistic:.2f} of h {rule.h:g} ({reading.fraction_of_h:.0%})"
        if reading.change_at_ms is None:
            return f"{against}: at zero, the events so far fit p0 better than p1"
        if reading.numerator < rule.min_numerator:
            floor = rule.min_numerator
            return f"{against}; {reading.numerator} events since the change, below {floor}"
        if reading.exposure < rule.min_denominator:
            return (
                f"{against}; {reading.exposure:.0f} matured since the change, below the floor "
                f"of {rule.min_denominator}"
            )
        if reading.severity is Severity.PAUSE:
            return f"{against}: at the pause bound"
        if reading.severity is Severity.WARN:
            return f"{against}: past the warn bound {rule.warn_h:g}"
        return f"{against}: below the warn bound {rule.warn_h:g}"


def sequential_reading_of(state: CampaignState, rule: SequentialRule) -> SequentialExplanation:
    """The sequential rule judged on the campaign's CUSUM now."""
    track = state.sequential.track(rule.metric)
    return SequentialExplanation(read(state.sequential, rule, state.windows.lifetime), track.bumps)


def explain_sequential(state: CampaignState, policy: Policy) -> list[SequentialExplanation]:
    """Every sequential rule of `policy`, worst first, then in the policy's order."""
    return _worst_first([sequential_reading_of(state, rule) for rule in policy.sequential])


_Explanation = TypeVar("_Explanation", "RuleExplanation", "SequentialExplanation")


def _worst_first(explanations: list[_Explanation]) -> list[_Explanation]:
    """Worst severity first; equal ones in the policy's order (the sort is stable)."""
    return sorted(explanations, key=lambda e: -e.reading.severity)
