"""Pause policy: per-metric, per-window thresholds and floors, and the Wilson score test.

A rule pauses only when both floors are met AND the lower Wilson bound of the rate exceeds the
pause threshold, so small samples (1 bounce in 13 sends) never pause a campaign.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from statistics import NormalDist

from processor.domain.windows import RATE_TERMS, Counter, WindowSpec
from schemas.control import Metric

HOUR_MS = 3_600_000
MIN_CONFIDENCE = 0.5


class Severity(IntEnum):
    """How bad a rule's reading is; ordered so `max` picks the worst."""

    OK = 0
    WARN = 1
    PAUSE = 2


@dataclass(frozen=True, slots=True)
class Rule:
    """Thresholds of one metric in one window ('lifetime' is a window too)."""

    metric: Metric
    window: str
    warn: float
    pause: float
    min_denominator: int
    min_numerator: int
    denominator_lag_ms: int = 0
    """How much further back than the window the denominator reaches (feedback lags sends)."""

    def __post_init__(self) -> None:
        if self.denominator_lag_ms < 0:
            raise ValueError(f"{self.metric}/{self.window}: denominator lag must not be negative")
        if not 0 <= self.warn <= self.pause <= 1:
            raise ValueError(f"{self.metric}/{self.window}: need 0 <= warn <= pause <= 1")
        if self.min_denominator < 1 or self.min_numerator < 1:
            raise ValueError(f"{self.metric}/{self.window}: floors must be at least 1")


@dataclass(frozen=True, slots=True)
class Reading:
    """A rule evaluated against a window's counts."""

    rule: Rule
    numerator: int
    denominator: int
    rate: float
    wilson_lower_bound: float
    severity: Severity


@dataclass(frozen=True, slots=True)
class SequentialRule:
    """Page's CUSUM of a metric: "the rate is now p1" against "it is p0" (domain.sequential).

    Pauses when the statistic reaches `h`, warns from `warn_h`, both only once the floors on the
    events since the estimated change point are met. `lag_ms` is the mean delay of the metric's
    feedback after the denominator event it answers (the exposure's time constant).
    """

    metric: Metric
    p0: float
    p1: float
    h: float
    warn_h: float
    min_denominator: int
    min_numerator: int
    lag_ms: int
    up: float = field(init=False, repr=False, compare=False, hash=False)
    """What one numerator event adds: log(p1 (1 - p0) / (p0 (1 - p1)))."""
    down: float = field(init=False, repr=False, compare=False, hash=False)
    """What one unit of matured denominator adds (negative): log((1 - p1) / (1 - p0))."""

    def __post_init__(self) -> None:
        where = f"sequential {self.metric}"
        if not 0 < self.p0 < self.p1 < 1:
            raise ValueError(f"{where}: need 0 < p0 < p1 < 1")
        if not 0 < self.warn_h <= self.h:
            raise ValueError(f"{where}: need 0 < warn_h <= h")
        if self.min_denominator < 1 or self.min_numerator < 1:
            raise ValueError(f"{where}: floors must be at least 1")
        if self.lag_ms < 1:
            raise ValueError(f"{where}: lag must be positive")
        up = math.log(self.p1 * (1 - self.p0) / (self.p0 * (1 - self.p1)))
        object.__setattr__(self, "up", up)  # frozen: derived once here
        object.__setattr__(self, "down", math.log((1 - self.p1) / (1 - self.p0)))


@dataclass(frozen=True, slots=True)
class Escalation:
    """Pause a whole tenant after `campaign_pauses` campaign pauses within `within_ms`."""

    campaign_pauses: int = 3
    within_ms: int = 24 * HOUR_MS


@dataclass(frozen=True, slots=True)
class Policy:
    """The rules that apply to one campaign, and the statistics they use."""

    rules: tuple[Rule, ...]
    confidence: float = 0.95
    escalation: Escalation = field(default_factory=Escalation)
    sequential: tuple[SequentialRule, ...] = ()
    """At most one CUSUM per metric; empty: the windows alone decide."""
    _by_counter: dict[int, tuple[int, ...]] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )
    _sequential_by_numerator: dict[int, SequentialRule] = field(
        init=False, repr=False, compare=False, hash=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        if not MIN_CONFIDENCE <= self.confidence < 1:
            raise ValueError("confidence must be in [0.5, 1)")
        metrics = [rule.metric for rule in self.sequential]
        if len(set(metrics)) != len(metrics):
            raise ValueError("at most one sequential rule per metric")
        for sequential in self.sequential:
            self._sequential_by_numerator[RATE_TERMS[sequential.metric][0]] = sequential
        for counter in Counter:
            self._by_counter[counter] = tuple(
                index for index, rule in enumerate(self.rules) if counter in RATE_TERMS[rule.metric]
            )

    def rules_of_counter(self, counter: int) -> tuple[int, ...]:
        """Indices of the rules whose numerator or denominator is `counter`."""
        return self._by_counter[counter]

    def sequential_of_numerator(self, counter: int) -> SequentialRule | None:
        """The sequential rule whose numerator is `counter`, if any."""
        return self._sequential_by_numerator.get(counter)

    def without_sequential(self) -> Policy:
        """The same policy deciding with its windows alone."""
        return Policy(self.rules, self.confidence, self.escalation)

    @property
    def z(self) -> float:
        """Normal quantile of the two-sided interval at `confidence` (1.96 for 95%)."""
        return NormalDist().inv_cdf(1 - (1 - self.confidence) / 2)

    @property
    def version(self) -> str:
        """A short content hash, carried by every decision made under this policy."""
        content = {
            "rules": self.rules,
            "confidence": self.confidence,
            "escalation": self.escalation,
        }
        if self.sequential:  # a windows-only policy keeps the version it always had
            content["sequential"] = self.sequential
        payload = json.dumps(content, sort_keys=True, default=_jsonable).encode()
        return hashlib.sha256(payload).hexdigest()[:12]


def _jsonable(value: object) -> object:
    if isinstance(value, SequentialRule):
        return {name: getattr(value, name) for name in _SEQUENTIAL_FIELDS}
    return asdict(value) if hasattr(value, "__dataclass_fields__") else str(value)  # type: ignore[call-overload]  # asdict takes any dataclass instance


_SEQUENTIAL_FIELDS = ("metric", "p0", "p1", "h", "warn_h", "min_denominator", "min_numerator",
                      "lag_ms")  # fmt: skip


def wilson_lower_bound(numerator: int, denominator: int, z: float) -> float:
    """Lower bound of the Wilson score interval of numerator/denominator.

    A numerator above the denominator (complaints arriving after their deliveries left the
    window) is clamped: the rate cannot exceed 1.
    """
    if denominator <= 0 or numerator <= 0:
        return 0.0  # exact: centre - margin cancels to 0 only up to rounding
    successes = min(numerator, denominator)
    p = successes / denominator
    z2 = z * z
    centre = p + z2 / (2 * denominator)
    margin = z * math.sqrt(p * (1 - p) / denominator + z2 / (4 * denominator * denominator))
    return max(0.0, (centre - margin) / (1 + z2 / denominator))


def wilson_interval(numerator: int, denominator: int, z: float) -> tuple[float, float]:
    """The two-sided Wilson score interval of numerator/denominator ((0, 1) with no trials)."""
    if denominator <= 0:
        return 0.0, 1.0
    successes = min(max(numerator, 0), denominator)
    p = successes / denominator
    z2 = z * z
    centre = p + z2 / (2 * denominator)
    margin = z * math.sqrt(p * (1 - p) / denominator + z2 / (4 * denominator * denominator))
    scale = 1 + z2 / denominator
    low = 0.0 if successes == 0 else max(0.0, (centre - margin) / scale)
    return low, min(1.0, (centre + margin) / scale)


def evaluate(
    rule: Rule, numerator: int, denominator: int, z: float, active: int | None = None
) -> Reading:
    """Judge one rule on a window's numerator and denominator.

    Both floors must be met for anything but OK: the numerator's, and the denominator's on
    `active`, the denominator of the window proper (without the lag; it defaults to
    `denominator`). A window that has stopped seeing sends is thus not judged on the tail of
    its feedback: that tail is the lifetime rule's business. Then PAUSE when the Wilson lower
    bound exceeds the pause threshold, WARN when it exceeds the warn threshold.
    """
    rate = numerator / denominator if denominator else 0.0
    floor_denominator = denominator if active is None else min(active, denominator)
    if numerator < rule.min_numerator or floor_denominator < rule.min_denominator:
        return Reading(rule, numerator, denominator, rate, 0.0, Severity.OK)
    bound = wilson_lower_bound(numerator, denominator, z)
    if bound > rule.pause:
        severity = Severity.PAUSE
    elif bound > rule.warn:
        severity = Severity.WARN
    else:
        severity = Severity.OK
    return Reading(rule, numerator, denominator, rate, bound, severity)


FEEDBACK_LAG_MS: dict[Metric, int] = {
    Metric.HARD_BOUNCE: 15 * 60_000,
    Metric.COMPLAINT: 2 * HOUR_MS,
    Metric.UNSUBSCRIBE: 2 * HOUR_MS,
}
"""Default denominator lag per metric: bounces come within minutes, complaints and
unsubscribes mostly within hours of the delivery they answer."""

DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    WindowSpec("1h", HOUR_MS, 60),
    # 7 h of history behind the 24 h window serve the lagged denominators of every rule.
    WindowSpec("24h", 24 * HOUR_MS, 60, history_ms=7 * HOUR_MS),
)

# Sources for the defaults (README, "Policy"): Gmail/Yahoo bulk-sender rules (complaints
# under 0.1%, never 0.3%), SES account review at a 5% bounce / 0.1% complaint rate, and
# common ESP guidance on unsubscribes (2% is a warning sign). The 24 h and lifetime complaint
# rules warn at 0.05% but pause at 0.15% with at least 8 complaints: healthy sends run at up to
# 0.08% (weekend mail), and a 95% Wilson bound over 0.1% on a few thousand deliveries is noise
# that often (up to one healthy campaign in 40 at 0.08%, at ~2,000 deliveries); 0.15% and 8
# complaints bring that to one in 900 (docs/BENCHMARKS.md, section 6). A wave at 0.3% is the
# sequential rule's to catch.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(Metric.HARD_BOUNCE, "1h", 0.025, 0.05, 200, 10, FEEDBACK_LAG_MS[Metric.HARD_BOUNCE]),
    Rule(Metric.HARD_BOUNCE, "24h", 0.025, 0.05, 200, 10, FEEDBACK_LAG_MS[Metric.HARD_BOUNCE]),
    Rule(Metric.HARD_BOUNCE, "lifetime", 0.025, 0.05, 200, 10),
    Rule(Metric.COMPLAINT, "1h", 0.0005, 0.003, 1000, 5, FEEDBACK_LAG_MS[Metric.COMPLAINT]),
    Rule(Metric.COMPLAINT, "24h", 0.0005, 0.0015, 1000, 8, FEEDBACK_LAG_MS[Metric.COMPLAINT]),
    Rule(Metric.COMPLAINT, "lifetime", 0.0005, 0.0015, 1000, 8),
    Rule(Metric.UNSUBSCRIBE, "1h", 0.02, 0.05, 500, 10, FEEDBACK_LAG_MS[Metric.UNSUBSCRIBE]),
    Rule(Metric.UNSUBSCRIBE, "24h", 0.02, 0.05, 500, 10, FEEDBACK_LAG_MS[Metric.UNSUBSCRIBE]),
    Rule(Metric.UNSUBSCRIBE, "lifetime", 0.02, 0.05, 500, 10),
)


DEFAULT_SEQUENTIAL: tuple[SequentialRule, ...] = (
    SequentialRule(Metric.HARD_BOUNCE, 0.03, 0.08, 15.0, 9.0, 200, 10, 2 * 60_000),
    SequentialRule(Metric.COMPLAINT, 0.001, 0.003, 10.0, 6.0, 1000, 5, 6 * HOUR_MS),
    SequentialRule(Metric.UNSUBSCRIBE, 0.01, 0.05, 13.0, 8.0, 200, 10, 90 * 60_000),
)
"""p0 is the acceptable rate (Gmail/Yahoo's 0.1% for complaints), p1 the pause level; h and
the lags are chosen by measurement (docs/BENCHMARKS.md, section 6, and bench.sequential_arl).
The unsubscribe floor is 200 matured deliveries, not the windows' 500: with its 10 events that
is already a rate of 5% (p1), and 500 held a wave's pause a median 500 sends past h."""


@dataclass(frozen=True, slots=True)
class PolicyBook:
    """The default policy plus per-tenant and per-campaign overrides, and the windows."""

    default: Policy = field(
        default_factory=lambda: Policy(DEFAULT_RULES, sequential=DEFAULT_SEQUENTIAL)
    )
    windows: tuple[WindowSpec, ...] = DEFAULT_WINDOWS
    tenants: dict[str, Policy] = field(default_factory=dict)
    campaigns: dict[tuple[str, str], Policy] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {w.name for w in self.windows} | {"lifetime"}
        if len(names) != len(self.windows) + 1:
            raise ValueError("window names must be unique and not 'lifetime'")
        lengths = {w.name: w.length_ms for w in self.windows}
        reach = max(w.length_ms + w.history_buckets * w.bucket_ms for w in self.windows)
        for policy in (self.default, *self.tenants.values(), *self.campaigns.values()):
            for rule in policy.rules:
                if rule.window not in names:
                    raise ValueError(
                        f"rule {rule.metric}/{rule.window}: unknown window, have {sorted(names)}"
                    )
                if (
                    rule.denominator_lag_ms
                    and lengths[rule.window] + rule.denominator_lag_ms > reach
                ):
                    raise ValueError(
                        f"rule {rule.metric}/{rule.window}: window plus denominator lag exceeds "
                        "every window's history; give a window more history"
                    )

    def for_campaign(self, tenant_id: str, campaign_id: str) -> Policy:
        """The most specific policy: campaign override, else tenant override, else default."""
        policy = self.campaigns.get((tenant_id, campaign_id))
        if policy is None:
            policy = self.tenants.get(tenant_id, self.default)
        return policy

    def for_tenant(self, tenant_id: str) -> Policy:
        """The policy of a tenant (its escalation settings apply to the tenant)."""
        return self.tenants.get(tenant_id, self.default)

    @property
    def longest_window_ms(self) -> int:
        """Length of the longest sliding window."""
        return max(w.length_ms for w in self.windows)
