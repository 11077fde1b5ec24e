"""Sequential change detection per campaign and metric: a Bernoulli CUSUM (Page's test).

Owns the statistic's state and its update; the rule (p0, p1, h, floors, lag) is
`processor.domain.policy.SequentialRule`, the judging of decisions `processor.domain.detector`.

What a trial is, given that feedback lags its denominator
------------------------------------------------------------
The statistic is the log-likelihood ratio of "the rate is p1" against "it is p0", reset at zero:
each numerator event (hard bounce, complaint, unsubscribe) adds `up` = log(p1(1-p0)/(p0(1-p1)))
and each denominator event (send, delivery) adds `down` = log((1-p1)/(1-p0)) < 0; summed without
resets that is exactly the log-likelihood ratio of x successes in n Bernoulli trials.

But a delivery's complaint arrives hours after it (unsubscribes tens of minutes, hard bounces
seconds to minutes). Counting a delivery as a failed trial the moment it happens would let the
reset absorb the deliveries of a healthy send while their complaints are still on their way, and
the complaints trickling in after the send ended would then meet no denominator and raise a false
alarm on every large healthy campaign. Waiting for the "outcome" of each delivery needs a queue
of them (not O(1)), and updating on each delivery with the numerators seen since fails the same
way at the end of a send (the last few deliveries would absorb the whole tail).

So a denominator event does not count as a failed trial at once: it is *exposure* that matures
as its feedback becomes due. Modelling the feedback delay as exponential with mean `lag_ms`, the
matured exposure is E(t) = D(t) - P(t), where D is the lifetime count of denominator events and
the pending part P decays by exp(-dt/lag): O(1) state (E alone; D is the windows' lifetime count)
and the exact expectation of "denominators whose feedback has arrived" under that model. Each
unit of matured exposure adds `down`. A healthy send's tail of complaints meets the tail of its
maturing exposure, and a wave's complaints meet the exposure of the deliveries they answer. The
model errs safe when `lag_ms` is at least the real mean delay (exposure outlasts the feedback).
The floor on denominators since the change point, and the rate since the change (with its Wilson
interval), are taken over the exposure matured since then: the trials whose outcome is in.

The statistic moves once per step (`STEP_MS`, 20 s, or the finest window's bucket if that is
shorter), at the first event of the next step: each step is one binomial observation, its
numerator events (an integer count, `bumps`) against the exposure that matured over it,
S = max(0, S + x up + m down). Updating within a step instead would count a fast send's
numerators of the step before their exposure, which overshoots (a campaign sending 800 a second
has hundreds of bounces a minute); and a batch of events within one step is counted at once by
the detector's quiet path (`observe_run`, whose stretches end at a step's end): with nothing
judged within a step, counting a stretch at once and event by event give bit-identical states
whatever the batch boundaries (replay and the worker agree). The price is up to a step of event
time before a decision: a minute's step cost a bad list sent at 400 a second some 25,000 sends
in the full quality mix; 10 s cost 20% more per event than the windows alone (a sparse
feedback tail is counted a step at a time), hence 20 s. The estimated change point is the
start of the step whose observation took the statistic above zero, with the campaign's sends
before that step.

The test ends with the feedback it models. Real feedback delays have heavier tails than an
exponential (the generator's are lognormal, and people open mail days later): far into a send's
tail, the last few complaints or unsubscribes meet exposure the model has all but matured, and
their local rate runs to several times the campaign's, enough to raise a false alarm on a large
healthy send hours after it ended (a 416k send at 0.74% unsubscribes, 11 h after its last
delivery, in the quality benchmark). So once `TAIL_LAGS` lags have passed since the last step
with sends (99.3% of their exposure matured), the statistic is reset and stays at zero until the
campaign sends again; the windows judge the rest of the tail. The clock is the sends', not the
deliveries': deferred mail keeps being delivered for hours after a send, a straggler at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from processor.domain.policy import Severity, wilson_interval
from processor.domain.windows import RATE_TERMS, Counter
from schemas.control import Metric

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.domain.policy import SequentialRule

SEQUENTIAL_WINDOW = "sequential"
"""The 'window' name of a sequential rule in warned-rule keys and evidence."""
METRICS: tuple[Metric, ...] = tuple(Metric)
MAX_TRACKED_DOMAINS = 64
OTHER_DOMAIN = "(other)"
_RATE_COUNTERS = 5
"""Lifetime counters 0..4 (sent, delivered and the three numerators) snapshotted per step."""
STEP_MS = 20_000
"""The longest step the statistic moves by (see the module docstring)."""
TAIL_LAGS = 5
"""Lags after the campaign's last send beyond which a metric's test has ended (see above)."""


@dataclass(slots=True)
class Track:
    """The CUSUM of one metric of one campaign."""

    at_step: float = 0.0
    """The statistic, as of the start of the current step."""
    bumps: int = 0
    """Numerator events counted in the current step (they enter the statistic at its end)."""
    exposure: float = 0.0
    """Matured denominator events (lifetime)."""
    change_at_ms: int | None = None
    """Start of the step in which the statistic last left zero; None while it is zero."""
    change_sends: int = 0
    """Sends counted before that step."""
    base_numerator: int = 0
    base_denominator: int = 0
    base_exposure: float = 0.0
    domains: dict[str, int] = field(default_factory=dict)
    """Recipient domains of the numerator events since the change point (and of the current
    step's: cleared at a step that ends with the statistic at zero)."""
    h: float = 0.0
    """h of the rule last applied (health snapshots show the statistic as a fraction of it)."""
    up: float = 0.0
    """`up` of the rule last applied (so the statistic can be shown without the policy)."""

    def statistic(self, rule: SequentialRule) -> float:  # noqa: ARG002  # one call shape
        """The current value of the CUSUM."""
        return self.at_step

    @property
    def last_statistic(self) -> float:
        """The current value (for health snapshots, which have no policy at hand)."""
        return self.at_step

    @property
    def active(self) -> bool:
        """Whether the statistic is above zero (a change point is estimated)."""
        return self.change_at_ms is not None

    def count_domain(self, domain: str) -> None:
        """Count a numerator event since the change point against its recipient domain."""
        counts = self.domains
        if domain not in counts and len(counts) >= MAX_TRACKED_DOMAINS:
            domain = OTHER_DOMAIN
        counts[domain] = counts.get(domain, 0) + 1


@dataclass(slots=True)
class SequentialState:
    """Every metric's CUSUM of one campaign, and the step they mature exposure in."""

    step_start_ms: int | None = None
    step_base: list[int] = field(default_factory=lambda: [0] * _RATE_COUNTERS)
    """Lifetime counts 0..4 before the first event of the current step."""
    tracks: list[Track] = field(default_factory=lambda: [Track() for _ in METRICS])
    sent_step_ms: int | None = None
    """Start of the last step with sends (None: none since this was kept; a state written
    before it was kept starts its tail clock at its next send)."""

    def track(self, metric: Metric) -> Track:
        """The CUSUM of a metric."""
        return self.tracks[_INDEX[metric]]


_INDEX = {metric: index for index, metric in enumerate(METRICS)}


def enter_step(
    state: SequentialState,
    at_ms: int,
    step_ms: int,
    lifetime: Sequence[int],
    rules: Sequence[SequentialRule],
) -> bool:
    """Before an event at `at_ms` is counted: mature exposure if it opens a new step.

    True if it did (every rule is then judged again: statistics only fall at a step). The first
    event ever opens the first step without maturing anything.
    """
    step = at_ms - at_ms % step_ms
    previous = state.step_start_ms
    if previous is not None and step <= previous:
        return False
    base = state.step_base
    state.step_start_ms = step
    state.step_base = list(lifetime[:_RATE_COUNTERS])
    if previous is None:
        return False
    elapsed = step - previous
    if lifetime[Counter.SENT] > base[Counter.SENT]:
        state.sent_step_ms = previous
    last_sent = state.sent_step_ms
    for rule in rules:
        track = state.tracks[_INDEX[rule.metric]]
        numerator, denominator = RATE_TERMS[rule.metric]
        matured = (lifetime[denominator] - track.exposure) * -math.expm1(-elapsed / rule.lag_ms)
        value = track.at_step + track.bumps * rule.up + matured * rule.down
        track.bumps = 0
        track.h, track.up = rule.h, rule.up
        # The step just observed began this long after the last step with sends (0 if it had
        # some): its numerators are judged as of then, even if the next event came much later.
        if last_sent is not None and previous - last_sent > TAIL_LAGS * rule.lag_ms:
            value = 0.0  # the feedback tail's far end: the test has ended (module docstring)
        if value <= 0.0:
            track.at_step = 0.0
            track.change_at_ms = None
            track.domains.clear()
        elif track.change_at_ms is None:
            # Leaving zero: the change point is the start of the step just observed.
            track.at_step = value
            track.change_at_ms = previous
            track.change_sends = base[Counter.SENT]
            track.base_numerator = base[numerator]
            track.base_denominator = base[denominator]
            track.base_exposure = track.exposure
        else:
            track.at_step = value
        track.exposure += matured
    return True


def count_numerators(
    state: SequentialState, rule: SequentialRule, count: int, domains: Sequence[str] = ()
) -> None:
    """Count `count` numerator events of the rule's metric in the current step.

    The same whether they come one by one or at once (they enter the statistic at the step's
    end). `domains` are their recipient domains, in event order.
    """
    if count <= 0:
        return
    track = state.tracks[_INDEX[rule.metric]]
    track.bumps += count
    for domain in domains:
        track.count_domain(domain)


@dataclass(frozen=True, slots=True)
class SequentialReading:
    """A sequential rule judged on a campaign's CUSUM."""

    rule: SequentialRule
    statistic: float
    severity: Severity
    change_at_ms: int | None
    change_sends: int
    numerator: int
    """Numerator events since the change point."""
    denominator: int
    """Denominator events (sends or deliveries) since the change point."""
    exposure: float
    """Of those, and of earlier ones, how many have matured (see the module docstring)."""

    @property
    def rate(self) -> float:
        """Numerator events per matured denominator event since the change point."""
        return min(1.0, self.numerator / self.exposure) if self.exposure > 0 else 0.0

    def interval(self, z: float) -> tuple[float, float]:
        """Wilson interval of the rate since the change point (over the matured exposure)."""
        trials = max(self.numerator, math.ceil(self.exposure))
        return wilson_interval(self.numerator, trials, z)

    @property
    def fraction_of_h(self) -> float:
        """How close the statistic is to pausing (1.0 and above: at the pause bound)."""
        return self.statistic / self.rule.h


def read(
    state: SequentialState, rule: SequentialRule, lifetime: Sequence[int]
) -> SequentialReading:
    """Judge a sequential rule: PAUSE at h, WARN at warn_h, both only once the floors are met."""
    track = state.tracks[_INDEX[rule.metric]]
    track.h, track.up = rule.h, rule.up
    statistic = track.at_step
    if track.change_at_ms is None:
        return SequentialReading(rule, statistic, Severity.OK, None, 0, 0, 0, 0.0)
    numerator_counter, denominator_counter = RATE_TERMS[rule.metric]
    numerator = lifetime[numerator_counter] - track.base_numerator
    denominator = lifetime[denominator_counter] - track.base_denominator
    exposure = track.exposure - track.base_exposure
    severity = Severity.OK
    # The denominator floor is on the exposure matured since the change point: the trials
    # whose outcome has come in. In a send's feedback tail no denominator event happens, but
    # the tail's complaints answer deliveries whose exposure is maturing now.
    if numerator >= rule.min_numerator and exposure >= rule.min_denominator:
        if statistic >= rule.h:
            severity = Severity.PAUSE
        elif statistic >= rule.warn_h:
            severity = Severity.WARN
    return SequentialReading(
        rule,
        statistic,
        severity,
        track.change_at_ms,
        track.change_sends,
        numerator,
        denominator,
        exposure,
    )


def top_domains(state: SequentialState, metric: Metric, limit: int) -> tuple[tuple[str, int], ...]:
    """Recipient domains behind a metric's numerator events since its change point, most first."""
    counts = state.tracks[_INDEX[metric]].domains
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return tuple(ranked[:limit])
