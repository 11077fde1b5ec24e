"""Unit and property tests of the sequential rules' CUSUM (processor.domain.sequential)."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.domain.campaign_state import CampaignState, Decision, EventFacts, PauseDecision
from processor.domain.codec import decode_state, encode_state
from processor.domain.detector import observe_run
from processor.domain.policy import (
    DEFAULT_RULES,
    DEFAULT_SEQUENTIAL,
    DEFAULT_WINDOWS,
    Policy,
    SequentialRule,
    Severity,
)
from processor.domain.sequential import (
    TAIL_LAGS,
    SequentialReading,
    SequentialState,
    count_numerators,
    enter_step,
    read,
)
from processor.domain.windows import Counter
from schemas.control import Metric

if TYPE_CHECKING:
    from collections.abc import Sequence

STEP_MS = 1_000
RULE = SequentialRule(Metric.HARD_BOUNCE, 0.02, 0.2, 6.0, 3.0, 20, 3, 1)
"""A CUSUM whose exposure matures within one step: one denominator event per step is one
Bernoulli trial, judged when the next step opens."""


class Stream:
    """Drives one rule's CUSUM with one denominator event per step, as the detector does."""

    def __init__(self, rule: SequentialRule = RULE) -> None:
        self.rule = rule
        self.state = SequentialState()
        self.lifetime = [0] * len(Counter)
        self.clock = 0
        self.numerator, self.denominator = (Counter.HARD_BOUNCE, Counter.SENT)
        if rule.metric is not Metric.HARD_BOUNCE:
            self.numerator = (
                Counter.COMPLAINT if rule.metric is Metric.COMPLAINT else (Counter.UNSUBSCRIBE)
            )
            self.denominator = Counter.DELIVERED
        self.trials = 0

    def trial(self, success: bool) -> SequentialReading:  # noqa: FBT001  # a test driver
        """One step: a denominator event, and a numerator event if `success`."""
        enter_step(self.state, self.clock, STEP_MS, self.lifetime, (self.rule,))
        self.lifetime[self.denominator] += 1
        if success:
            self.lifetime[self.numerator] += 1
            count_numerators(self.state, self.rule, 1, ("example.com",))
        self.clock += STEP_MS
        self.trials += 1
        return read(self.state, self.rule, self.lifetime)

    @property
    def statistic(self) -> float:
        """The current value."""
        return self.state.track(self.rule.metric).statistic(self.rule)


@settings(max_examples=200, deadline=None)
@given(outcomes=st.lists(st.booleans(), max_size=400))
def test_the_statistic_is_never_negative(outcomes: list[bool]) -> None:
    """Whatever the outcomes, the CUSUM stays at or above zero, and zero means no change point."""
    stream = Stream()
    for success in outcomes:
        reading = stream.trial(success)
        assert reading.statistic >= 0.0
        assert (reading.change_at_ms is None) == (reading.statistic == 0.0)


@settings(max_examples=50, deadline=None)
@given(
    prefix=st.integers(0, 5_000),
    noise=st.integers(0, 1 << 30),
    healthy_rate=st.floats(0.0, 0.02),
)
def test_an_abrupt_change_is_caught_within_a_bound_whatever_the_healthy_prefix(
    prefix: int, noise: int, healthy_rate: float
) -> None:
    """After any healthy prefix, every other trial failing alarms within h / drift trials.

    (Or once the floor on trials since the change point is met.) The bound does not grow with
    the prefix: the CUSUM forgets the healthy part of a send.
    """
    stream = Stream()
    rng = random.Random(noise)  # noqa: S311  # seeded simulation, not security
    for _ in range(prefix):
        if stream.trial(rng.random() < healthy_rate).severity is Severity.PAUSE:
            return  # a false alarm in the prefix is the ARL test's business
    drift_per_pair = RULE.up + 2 * RULE.down  # one success and one failure
    bound = max(2 * math.ceil(RULE.h / drift_per_pair), RULE.min_denominator) + 2
    for index in range(bound):
        if stream.trial(index % 2 == 0).severity is Severity.PAUSE:
            return
    pytest.fail(f"not caught within {bound} trials after a prefix of {prefix}")


def test_healthy_streams_at_p0_rarely_alarm() -> None:
    """200 seeded streams of 2,000 trials at p0 raise at most a couple of false alarms.

    The rule's in-control run length at p0 is far beyond 2,000 trials (e^h / |drift| ~ 10^4),
    and a healthy campaign runs below p0.
    """
    rule = SequentialRule(Metric.HARD_BOUNCE, 0.02, 0.2, 9.0, 5.0, 20, 3, 1)
    rng = random.Random(7)  # noqa: S311  # seeded simulation, not security
    alarms = 0
    for _ in range(200):
        stream = Stream(rule)
        for _ in range(2_000):
            if stream.trial(rng.random() < rule.p0).severity is Severity.PAUSE:
                alarms += 1
                break
    assert alarms <= 4


def _operations() -> st.SearchStrategy[list[tuple[int, int, int]]]:
    """(clock advance ms, denominator events, numerator events) per step of a stream."""
    return st.lists(
        st.tuples(st.integers(0, 5 * STEP_MS), st.integers(0, 30), st.integers(0, 4)),
        max_size=60,
    )


def _drive(state: SequentialState, operations: Sequence[tuple[int, int, int]]) -> None:
    lifetime = [0] * len(Counter)
    clock = 0
    rules = DEFAULT_SEQUENTIAL
    for advance, denominators, numerators in operations:
        clock += advance
        enter_step(state, clock, STEP_MS, lifetime, rules)
        lifetime[Counter.SENT] += denominators
        lifetime[Counter.DELIVERED] += denominators
        for rule in rules:
            counter = {
                Metric.HARD_BOUNCE: Counter.HARD_BOUNCE,
                Metric.COMPLAINT: Counter.COMPLAINT,
                Metric.UNSUBSCRIBE: Counter.UNSUBSCRIBE,
            }[rule.metric]
            lifetime[counter] += numerators
            domains = [f"d{n % 3}.example" for n in range(numerators)]
            count_numerators(state, rule, numerators, domains)


@settings(max_examples=200, deadline=None)
@given(operations=_operations())
def test_the_same_events_give_the_same_state(operations: list[tuple[int, int, int]]) -> None:
    """Replaying a stream gives a bit-identical state (floats included)."""
    first, second = SequentialState(), SequentialState()
    _drive(first, operations)
    _drive(second, operations)
    assert first == second


@settings(max_examples=200, deadline=None)
@given(operations=_operations())
def test_the_sequential_state_survives_the_codec(operations: list[tuple[int, int, int]]) -> None:
    """Encoding a campaign state and decoding it keeps every CUSUM exactly."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    _drive(state.sequential, operations)
    decoded = decode_state(encode_state(state), DEFAULT_WINDOWS)
    assert decoded.sequential == state.sequential
    assert encode_state(decoded) == encode_state(state)


def test_counting_numerators_at_once_equals_one_by_one() -> None:
    """Numerators of a step are counted, and enter the statistic at its end, in one sum."""
    one, many = SequentialState(), SequentialState()
    lifetime = [0] * len(Counter)
    enter_step(one, 0, STEP_MS, lifetime, (RULE,))
    enter_step(many, 0, STEP_MS, lifetime, (RULE,))
    for _ in range(7):
        count_numerators(one, RULE, 1, ("a.example",))
    count_numerators(many, RULE, 7, ["a.example"] * 7)
    assert one == many
    enter_step(one, STEP_MS, STEP_MS, [0, 0, 7, 0, 0], (RULE,))
    enter_step(many, STEP_MS, STEP_MS, [0, 0, 7, 0, 0], (RULE,))
    assert one == many
    assert one.track(Metric.HARD_BOUNCE).statistic(RULE) == 7 * RULE.up


def test_the_change_point_is_the_step_where_the_statistic_left_zero() -> None:
    """The estimate is the start of the step that took the statistic above zero.

    With the sends before it; a step ending at zero clears it.
    """
    stream = Stream()
    for _ in range(50):
        stream.trial(success=False)
    assert stream.trial(success=True).statistic == 0.0  # counted, not yet observed
    reading = stream.trial(success=False)  # the next step observes step 50
    assert reading.change_at_ms == 50 * STEP_MS
    assert reading.change_sends == 50
    assert (reading.numerator, reading.denominator) == (1, 2)
    assert stream.state.track(Metric.HARD_BOUNCE).domains == {"example.com": 1}
    while stream.statistic > 0:
        stream.trial(success=False)
    assert stream.state.track(Metric.HARD_BOUNCE).change_at_ms is None
    assert stream.state.track(Metric.HARD_BOUNCE).domains == {}


def _campaign(
    deliveries: int, complaint_every: int, complaint_delay_ms: int, per_second: int = 20
) -> list[EventFacts]:
    """Deliveries `per_second` a second; every `complaint_every`-th complains after a delay.

    Delays are lognormal around `complaint_delay_ms` (sigma 0.9, as the workload generator's).
    """
    rng = random.Random(3)  # noqa: S311  # seeded simulation, not security
    events = []
    start = 1_700_000_040_000
    for index in range(deliveries):
        at = start + index * 1000 // per_second
        events.append(EventFacts(f"s{index}", Counter.SENT, at, "gmail.com"))
        events.append(EventFacts(f"d{index}", Counter.DELIVERED, at + 1000, "gmail.com"))
        if index % complaint_every == 0:
            delay = int(complaint_delay_ms * math.exp(0.9 * rng.gauss()))
            events.append(EventFacts(f"c{index}", Counter.COMPLAINT, at + delay, "yahoo.com"))
    events.sort(key=lambda facts: facts.at_ms)
    return events


def _pauses(events: list[EventFacts], policy: Policy) -> list[PauseDecision]:
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    made: list[Decision] = []
    for start in range(0, len(events), 1000):
        made += observe_run(state, events[start : start + 1000], policy, policy.z)
    return [d for d in made if isinstance(d, PauseDecision)]


SEQUENTIAL_ONLY = Policy((), sequential=DEFAULT_SEQUENTIAL)


def _final_complaint_statistic(events: list[EventFacts], lag_ms: int) -> float:
    rule = SequentialRule(Metric.COMPLAINT, 0.001, 0.003, 10.0, 6.0, 1000, 5, lag_ms)
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    policy = Policy((), sequential=(rule,))
    list(observe_run(state, events, policy, policy.z))
    return state.sequential.track(Metric.COMPLAINT).statistic(rule)


def test_the_feedback_tail_of_a_healthy_send_does_not_alarm() -> None:
    """Complaints arriving 3 h after a healthy send ended meet their maturing deliveries.

    20,000 deliveries in 17 minutes, 0.05% complaining (10 complaints, all after the send):
    counting each delivery as a trial when it happens would meet those 10 complaints with
    nothing and end near h (10 * up > h); with the exposure maturing over the lag the
    statistic stays low, and the default policy does not pause.
    """
    events = _campaign(20_000, 2_000, 3 * 3_600_000)
    assert _pauses(events, SEQUENTIAL_ONLY) == []
    assert _final_complaint_statistic(events, 6 * 3_600_000) < 5.0


def test_far_past_its_last_send_a_campaign_s_late_feedback_moves_nothing() -> None:
    """TAIL_LAGS lags after the last step with sends, the test has ended.

    A send whose 10 complaints all come 3 h later, judged with a 10-minute lag: under the
    model its exposure matured within the hour, so the complaints would meet nothing (and
    their 10 * up exceeds h); the tail clock resets the statistic instead. The same
    complaints while the campaign is still sending do move it.
    """
    events = _campaign(20_000, 2_000, 3 * 3_600_000)
    assert _final_complaint_statistic(events, 10 * 60_000) == 0.0
    rule = SequentialRule(Metric.COMPLAINT, 0.001, 0.003, 10.0, 6.0, 1000, 5, 10 * 60_000)
    state, lifetime, minute = SequentialState(), [0] * len(Counter), 60_000
    track = state.track(Metric.COMPLAINT)

    def step(at: int, complaints: int) -> None:
        count_numerators(state, rule, complaints)
        lifetime[Counter.COMPLAINT] += complaints
        enter_step(state, at, minute, lifetime, (rule,))

    step(0, 0)
    lifetime[Counter.SENT] = lifetime[Counter.DELIVERED] = 20_000  # all in the first minute
    step(minute, 0)
    reach = TAIL_LAGS * rule.lag_ms  # the last step that began within reach of the sends' step
    step(reach, 0)
    step(reach + 3 * 3_600_000, 3)  # observed hours later: judged as of the step they came in
    assert track.at_step > 0.0  # within reach: they count (against what little still matures)
    step(reach + 4 * 3_600_000, 3)
    assert track.at_step == 0.0
    assert state.track(Metric.COMPLAINT).change_at_ms is None


def test_a_complaint_wave_pauses_with_its_change_point_and_domains() -> None:
    """A 1% complaint wave is paused by the sequential rule, with evidence since its change."""
    events = _campaign(30_000, 100, 20 * 60_000)
    pauses = _pauses(events, SEQUENTIAL_ONLY)
    assert len(pauses) == 1
    reading = pauses[0].reading
    assert isinstance(reading, SequentialReading)
    assert reading.rule.metric is Metric.COMPLAINT
    assert reading.statistic >= reading.rule.h
    assert reading.numerator >= reading.rule.min_numerator
    low, high = reading.interval(1.96)
    assert low <= reading.rate <= high
    assert pauses[0].top_domains[0][0] == "yahoo.com"


def test_windows_only_policies_leave_the_sequential_state_untouched() -> None:
    """Without sequential rules nothing is stepped, so old states and bytes stay as they were."""
    events = _campaign(2_000, 100, 60_000)
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    policy = Policy(DEFAULT_RULES)
    list(observe_run(state, events, policy, policy.z))
    assert state.sequential == SequentialState()


@pytest.mark.parametrize(
    ("p0", "p1", "h", "warn_h", "lag"),
    [(0.0, 0.1, 5, 3, 1), (0.1, 0.1, 5, 3, 1), (0.01, 0.1, 5, 6, 1), (0.01, 0.1, 5, 3, 0)],
)
def test_invalid_sequential_rules_are_refused(
    p0: float, p1: float, h: float, warn_h: float, lag: int
) -> None:
    """p0 < p1 strictly inside (0, 1), 0 < warn_h <= h and a positive lag."""
    with pytest.raises(ValueError, match="sequential"):
        SequentialRule(Metric.COMPLAINT, p0, p1, h, warn_h, 10, 2, lag)
