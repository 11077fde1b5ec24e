"""A campaign's detection state and the facts of one event: what detection keeps and reads.

The state is pure data with small bounded tallies (recipient domains, bounce categories);
`processor.domain.detector` decides how each event changes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from processor.domain.sequential import STEP_MS, SequentialReading, SequentialState
from processor.domain.windows import RATE_TERMS, CampaignWindows, Counter, WindowSpec
from schemas.events import BounceCategory, BounceClass, EventType
from schemas.health import CampaignStatus

if TYPE_CHECKING:
    from processor.domain.policy import Policy, Reading
    from schemas.control import Metric

MAX_TRACKED_DOMAINS = 64
"""Distinct recipient domains tracked per metric; the rest are folded into OTHER_DOMAIN."""
OTHER_DOMAIN = "(other)"
TOP_DOMAINS = 5
TOP_BOUNCE_CATEGORIES = 5
WARNING_CLEARS_BELOW = 0.8
"""A warned rule clears only once its Wilson bound falls below this share of its warn
threshold (or its floors stop being met): a rate hovering at the threshold would otherwise
flap WARNING/HEALTHY on the health topic at every other event."""

_COUNTER_OF_TYPE: dict[EventType, Counter] = {
    EventType.SENT: Counter.SENT,
    EventType.DELIVERED: Counter.DELIVERED,
    EventType.DEFERRED: Counter.DEFERRED,
    EventType.COMPLAINT: Counter.COMPLAINT,
    EventType.UNSUBSCRIBE: Counter.UNSUBSCRIBE,
    EventType.OPEN: Counter.OPEN,
    EventType.CLICK: Counter.CLICK,
    EventType.DROPPED_SUPPRESSED: Counter.DROPPED_SUPPRESSED,
}
_COUNTER_OF_BOUNCE: dict[BounceClass, Counter] = {
    BounceClass.HARD: Counter.HARD_BOUNCE,
    BounceClass.SOFT: Counter.SOFT_BOUNCE,
    BounceClass.BLOCK: Counter.BLOCK,
}
_CLASS_OF_COUNTER: dict[Counter, BounceClass] = {c: b for b, c in _COUNTER_OF_BOUNCE.items()}
METRIC_OF_NUMERATOR: dict[Counter, Metric] = {num: m for m, (num, _) in RATE_TERMS.items()}
_CLASS_OF_METRIC: dict[Metric, BounceClass] = {
    m: _CLASS_OF_COUNTER[num] for m, (num, _) in RATE_TERMS.items() if num in _CLASS_OF_COUNTER
}


def counter_for(event_type: EventType, bounce_class: BounceClass | None) -> Counter:
    """The counter an event type increments."""
    if event_type is EventType.BOUNCE:
        if bounce_class is None:
            raise ValueError("a bounce needs a bounce class")
        return _COUNTER_OF_BOUNCE[bounce_class]
    return _COUNTER_OF_TYPE[event_type]


class EventFacts(NamedTuple):
    """What detection needs to know of one delivery event.

    A NamedTuple rather than a frozen dataclass: one is built per event, and a frozen
    dataclass's __init__ (object.__setattr__ per field) cost more than what it describes.
    """

    event_id: str
    counter: Counter
    at_ms: int
    domain: str
    source: str | None = None
    """Kafka topic:partition it was read from, None outside Kafka."""
    offset: int | None = None
    bounce_category: BounceCategory | None = None
    """Why a bounce happened, when known (None for every other event)."""


@dataclass(frozen=True, slots=True)
class PauseDecision:
    """The campaign crossed a pause threshold at `trigger`."""

    episode: int
    reading: Reading | SequentialReading
    trigger: EventFacts
    top_domains: tuple[tuple[str, int], ...]
    top_bounce_categories: tuple[tuple[BounceCategory, int], ...] = ()
    """For a bounce metric: the categories of the campaign's bounces of its class."""


@dataclass(frozen=True, slots=True)
class StatusChange:
    """The campaign's status changed at `at_ms` (event time)."""

    status: CampaignStatus
    reading: Reading | SequentialReading | None
    at_ms: int


Decision = PauseDecision | StatusChange


@dataclass(slots=True)
class CampaignState:
    """Everything detection keeps per campaign."""

    windows: CampaignWindows
    status: CampaignStatus = CampaignStatus.HEALTHY
    episode: int = 0
    warned_rules: set[tuple[Metric, str]] = field(default_factory=set)
    """Windowed rules (metric, window) and sequential ones (metric, SEQUENTIAL_WINDOW)."""
    status_reading: Reading | SequentialReading | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    domains: dict[Metric, dict[str, int]] = field(default_factory=dict)
    bounce_categories: dict[BounceClass, dict[BounceCategory, int]] = field(default_factory=dict)
    """Bounces by class and category since the campaign started (or was resumed); bounces
    without a category are not in it. Bounded by the two enums, like `domains` by
    MAX_TRACKED_DOMAINS (empty in states stored before it existed)."""
    settled: set[tuple[Metric, str]] = field(default_factory=set)
    """Rules last judged OK that no denominator increment can breach, untouched since.

    More denominator can only lower a Wilson bound, so unless it is about to meet its floor
    under a numerator that met its own, such a rule need not be judged again until its
    numerator grows or a window moves (not stored: rebuilt after a reload).
    """
    quiet_headroom: tuple[Policy, list[int]] | None = field(default=None, compare=False)
    """Per rule of that policy, how many more numerator events surely keep it OK, given the
    counts since the windows last moved (see `_quiet`). Only quiet stretches change counts
    without dropping it. Not stored: rebuilt after a reload."""
    sequential: SequentialState = field(default_factory=SequentialState)
    """The CUSUM of each metric (zero in states stored before it existed)."""
    step_ms: int = field(init=False, compare=False, default=0)
    """Sequential exposure matures per step: `sequential.STEP_MS`, or the finest window's
    bucket if that is shorter (see `sequential`)."""

    def __post_init__(self) -> None:
        finest = min(window.spec.bucket_ms for window in self.windows.windows)
        self.step_ms = min(finest, STEP_MS)

    @classmethod
    def fresh(cls, specs: tuple[WindowSpec, ...]) -> CampaignState:
        """The state of a campaign never seen before."""
        return cls(windows=CampaignWindows(specs))

    def already_applied(self, source: str | None, offset: int | None) -> bool:
        """True if the Kafka record at this position was applied before (a replay)."""
        if source is None or offset is None:
            return False
        last = self.offsets.get(source)
        return last is not None and offset <= last

    def note_offset(self, source: str | None, offset: int | None) -> None:
        """Remember that the record at this position has been dealt with."""
        if source is not None and offset is not None:
            self.offsets[source] = max(offset, self.offsets.get(source, -1))

    def rearm(self, specs: tuple[WindowSpec, ...]) -> None:
        """Forget the counts after a resume: the detector watches afresh."""
        self.windows = CampaignWindows(specs)
        self.quiet_headroom = None  # worked out on counts that are gone
        self.warned_rules.clear()
        self.settled.clear()
        self.status_reading = None
        self.domains.clear()
        self.bounce_categories.clear()
        self.sequential = SequentialState()
        self.status = CampaignStatus.RESUMED

    def top_domains(self, metric: Metric) -> tuple[tuple[str, int], ...]:
        """Recipient domains behind a metric's numerator, most first."""
        counts = self.domains.get(metric, {})
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return tuple(ranked[:TOP_DOMAINS])

    def count_domain(self, metric: Metric, domain: str) -> None:
        """Count one numerator event of a metric against its recipient domain."""
        counts = self.domains.setdefault(metric, {})
        if domain not in counts and len(counts) >= MAX_TRACKED_DOMAINS:
            domain = OTHER_DOMAIN
        counts[domain] = counts.get(domain, 0) + 1

    def count_bounce_category(self, counter: Counter, category: BounceCategory) -> None:
        """Count one bounce (its counter says its class) against its category."""
        bounce_class = _CLASS_OF_COUNTER.get(counter)
        if bounce_class is None:  # only bounces carry a category (the contract says so)
            return
        counts = self.bounce_categories.setdefault(bounce_class, {})
        counts[category] = counts.get(category, 0) + 1

    def top_bounce_categories(self, metric: Metric) -> tuple[tuple[BounceCategory, int], ...]:
        """Categories of the bounces behind a bounce metric, most first (empty for others)."""
        bounce_class = _CLASS_OF_METRIC.get(metric)
        if bounce_class is None:
            return ()
        counts = self.bounce_categories.get(bounce_class, {})
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        return tuple(ranked[:TOP_BOUNCE_CATEGORIES])
