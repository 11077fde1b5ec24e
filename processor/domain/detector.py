"""How one event changes a campaign's state (domain.campaign_state): counts, status, decisions.

Pure: the same events in the same order give the same decisions whatever the batch boundaries,
because every event is judged on the state right after it (`observe_run` skips the judging only
where it provably cannot decide anything). Windowed rules and sequential rules (CUSUM,
`processor.domain.sequential`) are judged side by side; either can warn or pause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from processor.domain.campaign_state import (
    METRIC_OF_NUMERATOR,
    TOP_DOMAINS,
    WARNING_CLEARS_BELOW,
    CampaignState,
    Decision,
    EventFacts,
    PauseDecision,
    StatusChange,
)
from processor.domain.policy import (
    Policy,
    Reading,
    Rule,
    SequentialRule,
    Severity,
    evaluate,
    wilson_lower_bound,
)
from processor.domain.sequential import (
    SEQUENTIAL_WINDOW,
    SequentialReading,
    count_numerators,
    enter_step,
    read,
)
from processor.domain.sequential import top_domains as sequential_top_domains
from processor.domain.windows import RATE_TERMS, Counter
from schemas.health import CampaignStatus

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from processor.domain.windows import CountPlan, Observation


def _affected_rules(
    policy: Policy, counter: Counter, expired: tuple[str, ...]
) -> range | tuple[int, ...]:
    # When any window moves, every rule is judged: a lagged denominator may come from a ring
    # other than the rule's own. Moves happen once per bucket, so this stays cheap.
    if expired:
        return range(len(policy.rules))
    return policy.rules_of_counter(counter)


def observe(state: CampaignState, facts: EventFacts, policy: Policy, z: float) -> list[Decision]:
    """Apply one (deduplicated, not yet applied) event and judge the rules it touches.

    Returns the decisions it caused: a status change, and a pause at most once per episode
    (a paused campaign keeps counting but is not paused again until it is resumed).
    """
    kept, state.quiet_headroom = state.quiet_headroom, None
    state.note_offset(facts.source, facts.offset)
    stepped = bool(policy.sequential) and enter_step(
        state.sequential, facts.at_ms, state.step_ms, state.windows.lifetime, policy.sequential
    )
    seen = state.windows.observe(facts.counter, facts.at_ms)
    state.quiet_headroom = _kept_headroom(kept, policy, facts.counter, seen)
    if seen.late:
        return []
    if facts.bounce_category is not None:  # bounces only: a small share of events
        state.count_bounce_category(facts.counter, facts.bounce_category)
    metric = METRIC_OF_NUMERATOR.get(facts.counter)
    if metric is not None:
        state.count_domain(metric, facts.domain)
        numerator_rule = policy.sequential_of_numerator(facts.counter)
        if numerator_rule is not None:
            count_numerators(state.sequential, numerator_rule, 1, (facts.domain,))
    if state.status is CampaignStatus.PAUSED:
        return []
    worst: Reading | None = None
    settled = state.settled
    if seen.expired_windows:
        settled.clear()
    for index in _affected_rules(policy, facts.counter, seen.expired_windows):
        rule = policy.rules[index]
        key = (rule.metric, rule.window)
        if key in settled and facts.counter is not RATE_TERMS[rule.metric][0]:
            continue
        reading = _judge(state, rule, z)
        if worst is None or _more_severe(reading, worst):
            worst = reading
    return _transition(state, facts, _judge_sequential_rules(state, policy, worst, stepped=stepped))


def _kept_headroom(
    kept: tuple[Policy, list[int]] | None, policy: Policy, counter: Counter, seen: Observation
) -> tuple[Policy, list[int]] | None:
    """The quiet headroom after one event counted on its own; None: work it out again.

    If no window moved, the event only added to the counts, so the headroom still holds, less
    the numerator it drew. (Sequential steps open between window moves; working the headroom
    out again at each made a send's sparse feedback tail cost half as much again.)
    """
    if seen.expired_windows or kept is None or kept[0] is not policy:
        return None
    if not seen.late:
        headroom = kept[1]
        for index, rule in enumerate(policy.rules):
            if RATE_TERMS[rule.metric][0] == counter:
                headroom[index] -= 1
    return kept


def _judge_sequential_rules(
    state: CampaignState,
    policy: Policy,
    worst: Reading | SequentialReading | None,
    *,
    stepped: bool,
) -> Reading | SequentialReading | None:
    """The worst of `worst` and the sequential rules, judged when the event opened a step.

    Their readings change only there (see `sequential`): an event within a step only counts.
    """
    if not stepped:
        return worst
    for rule in policy.sequential:
        judged = _judge_sequential(state, rule)
        if worst is None or _more_severe(judged, worst):
            worst = judged
    return worst


def _judge_sequential(state: CampaignState, rule: SequentialRule) -> SequentialReading:
    """Evaluate a sequential rule now, and keep the warned set up to date (with hysteresis)."""
    reading = read(state.sequential, rule, state.windows.lifetime)
    key = (rule.metric, SEQUENTIAL_WINDOW)
    if reading.severity is not Severity.OK:
        state.warned_rules.add(key)
    elif key in state.warned_rules and reading.statistic < rule.warn_h * WARNING_CLEARS_BELOW:
        state.warned_rules.discard(key)
    return reading


def observe_run(
    state: CampaignState, events: Sequence[EventFacts], policy: Policy, z: float
) -> Iterator[Decision]:
    """`observe` each event in order, yielding its decisions while the state is as of it.

    Stretches that cannot decide anything are counted at once: up to the next event that moves
    a window, when the campaign is paused (nothing is judged) or warns of nothing and no rule
    could leave OK anywhere in the stretch, even counting every numerator event against the
    smallest denominator a judged reading can have. The counts end up exactly as with `observe`;
    that is the common case of a healthy campaign, and what keeps the cost per event small.
    """
    counters = [facts.counter for facts in events]
    times_ms = [facts.at_ms for facts in events]
    windows = state.windows
    start, total = 0, len(events)
    while start < total:
        # A plan ends at the sequential step's end too: the next step's first event is observed
        # on its own, and moves the statistics.
        step_start = state.sequential.step_start_ms if policy.sequential else None
        until_ms = None if step_start is None else step_start + state.step_ms
        plan, end = windows.plan_in_place(counters, times_ms, start, until_ms)
        if plan is not None and _quiet(state, plan, policy, z):
            windows.apply(plan)
            _note_quietly(state, events, start, end, plan.late_before_ms, policy=policy)
        else:
            for index in range(start, end):
                yield from observe(state, events[index], policy, z)
        if end < total:  # the event that moves a window (or the first one ever)
            yield from observe(state, events[end], policy, z)
        start = end + 1


def _quiet(state: CampaignState, plan: CountPlan, policy: Policy, z: float) -> bool:
    """Whether no rule could leave OK anywhere in the plan (then its events are counted at once).

    Within a plan numerators and denominators only grow, so it is quiet if, for every rule, the
    numerator events it adds fit the rule's `ok_headroom`, even all counted against the
    denominator of now. The headroom is worked out once and drawn down by each quiet stretch
    until the counts change otherwise (numerators and denominators only grow between window
    moves, and more denominator only lowers the bound): healthy campaigns skip the rules'
    arithmetic on most batches. A plan beyond it is judged on fresh headroom.
    """
    if state.status is CampaignStatus.PAUSED:
        state.quiet_headroom = None  # a paused campaign keeps counting without drawing it down
        return True
    if state.warned_rules or state.status is CampaignStatus.WARNING:
        return False
    totals = plan.added_by_counter()
    # Sequential rules need no check: within a step (a plan never crosses one) they only count.
    added = [totals.get(RATE_TERMS[rule.metric][0], 0) for rule in policy.rules]
    kept = state.quiet_headroom
    headroom = kept[1] if kept is not None and kept[0] is policy else None
    if headroom is None or any(a > room for a, room in zip(added, headroom, strict=True)):
        headroom = [_headroom(state, rule, z) for rule in policy.rules]
        state.quiet_headroom = (policy, headroom)
        if any(a > room for a, room in zip(added, headroom, strict=True)):
            return False
    for index, count in enumerate(added):
        headroom[index] -= count
    return True


HEADROOM_CAP = 1 << 20
"""The most headroom worked out per rule: beyond it, a stretch just gets it worked out again."""


def _headroom(state: CampaignState, rule: Rule, z: float) -> int:
    """`ok_headroom` of a rule on the campaign's current counts."""
    numerator, denominator = state.windows.rate_terms(
        rule.metric, rule.window, rule.denominator_lag_ms
    )
    return ok_headroom(rule, numerator, denominator, z)


def ok_headroom(rule: Rule, numerator: int, denominator: int, z: float) -> int:
    """How many more numerator events, with no more denominator, surely keep `rule` OK.

    Up to HEADROOM_CAP; -1 if a reading could already leave OK. A reading above OK needs both
    floors met, so its denominator is at least `min_denominator`; the bound of
    (n, max(least, n)) grows with n, so the largest count at or under the warn threshold is
    found by galloping, then bisection. More denominator only lowers the bound, so the
    headroom stays safe as the denominator grows.
    """
    least = max(denominator, rule.min_denominator)

    def stays_ok(more: int) -> bool:
        most = numerator + more
        return most < rule.min_numerator or wilson_lower_bound(most, max(least, most), z) <= (
            rule.warn
        )

    if not stays_ok(0):
        return -1
    good, step = 0, 1
    while step <= HEADROOM_CAP and stays_ok(step):
        good, step = step, step * 2
    if step > HEADROOM_CAP:
        return good
    bad = step
    while bad - good > 1:
        middle = (good + bad) // 2
        if stays_ok(middle):
            good = middle
        else:
            bad = middle
    return good


def _note_quietly(
    state: CampaignState,
    events: Sequence[EventFacts],
    start: int,
    end: int,
    late_before_ms: int,
    *,
    policy: Policy,
) -> None:
    """What `observe` notes besides the counts: offsets, domains behind numerators, bounces.

    Bounces by category, and the sequential rules' numerator events, all within one step (see
    `sequential`).
    """
    offsets = state.offsets
    sequential: dict[Counter, list[str]] | None = None
    if policy.sequential:
        sequential = {RATE_TERMS[rule.metric][0]: [] for rule in policy.sequential}
    for index in range(start, end):
        facts = events[index]
        source, offset = facts.source, facts.offset
        if source is not None and offset is not None and offset > offsets.get(source, -1):
            offsets[source] = offset
        if facts.bounce_category is not None and facts.at_ms >= late_before_ms:
            state.count_bounce_category(facts.counter, facts.bounce_category)
        metric = METRIC_OF_NUMERATOR.get(facts.counter)
        if metric is not None and facts.at_ms >= late_before_ms:
            state.count_domain(metric, facts.domain)
            if sequential is not None and facts.counter in sequential:
                sequential[facts.counter].append(facts.domain)
    if sequential is not None:
        for counter, domains in sequential.items():
            rule = policy.sequential_of_numerator(counter)
            if rule is not None and domains:
                count_numerators(state.sequential, rule, len(domains), domains)
    # Numerators grew without being judged: what `settled` says of them may no longer hold.
    state.settled.clear()


def _judge(state: CampaignState, rule: Rule, z: float) -> Reading:
    """Evaluate one rule now, and keep the warned and settled sets up to date."""
    key = (rule.metric, rule.window)
    numerator, denominator = state.windows.rate_terms(
        rule.metric, rule.window, rule.denominator_lag_ms
    )
    active = denominator
    if rule.denominator_lag_ms:
        active = state.windows.rate_terms(rule.metric, rule.window)[1]
    reading = evaluate(rule, numerator, denominator, z, active)
    if reading.severity is Severity.OK and key in state.warned_rules and still_warned(reading):
        state.settled.discard(key)
        return reading
    if reading.severity is Severity.OK:
        state.warned_rules.discard(key)
        # Only a denominator that is still short of its floor, under a numerator that has
        # met its own, can turn a denominator increment into a breach.
        if numerator < rule.min_numerator or min(active, denominator) >= rule.min_denominator:
            state.settled.add(key)
        else:
            state.settled.discard(key)
    else:
        state.warned_rules.add(key)
        state.settled.discard(key)
    return reading


def still_warned(reading: Reading) -> bool:
    """Whether an OK reading of a rule that was warned keeps it warned (hysteresis)."""
    # `evaluate` gives a bound of 0 when a floor is not met.
    return reading.wilson_lower_bound > reading.rule.warn * WARNING_CLEARS_BELOW


def _more_severe(
    candidate: Reading | SequentialReading, current: Reading | SequentialReading
) -> bool:
    if candidate.severity != current.severity:
        return candidate.severity > current.severity
    if isinstance(candidate, SequentialReading) or isinstance(current, SequentialReading):
        # A window explains itself best: a sequential reading wins a tie only over another
        # sequential one that is further from its bound.
        return (
            isinstance(candidate, SequentialReading)
            and isinstance(current, SequentialReading)
            and candidate.fraction_of_h > current.fraction_of_h
        )
    threshold = (
        candidate.rule.pause if candidate.severity is Severity.PAUSE else candidate.rule.warn
    )
    other = current.rule.pause if current.severity is Severity.PAUSE else current.rule.warn
    return candidate.wilson_lower_bound - threshold > current.wilson_lower_bound - other


def _transition(
    state: CampaignState, facts: EventFacts, worst: Reading | SequentialReading | None
) -> list[Decision]:
    if worst is not None and worst.severity is Severity.PAUSE:
        state.episode += 1
        state.status = CampaignStatus.PAUSED
        state.status_reading = worst
        metric = worst.rule.metric
        if isinstance(worst, SequentialReading):
            domains = sequential_top_domains(state.sequential, metric, TOP_DOMAINS)
        else:
            domains = state.top_domains(metric)
        return [
            PauseDecision(
                state.episode, worst, facts, domains, state.top_bounce_categories(metric)
            ),
            StatusChange(CampaignStatus.PAUSED, worst, facts.at_ms),
        ]
    if state.warned_rules:
        if state.status is CampaignStatus.WARNING:
            return []
        state.status = CampaignStatus.WARNING
        state.status_reading = worst if worst is not None and worst.severity else None
        return [StatusChange(CampaignStatus.WARNING, state.status_reading, facts.at_ms)]
    if state.status is CampaignStatus.WARNING:
        state.status = CampaignStatus.HEALTHY
        state.status_reading = None
        return [StatusChange(CampaignStatus.HEALTHY, None, facts.at_ms)]
    return []
