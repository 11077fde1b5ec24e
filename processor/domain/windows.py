"""Event-time sliding windows: bucket arithmetic, watermark and lateness, per campaign.

Pure and synchronous. Time is an integer of milliseconds since the epoch, always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from schemas.control import Metric


class Counter(IntEnum):
    """What a window counts. The first five are windowed; all are kept for the lifetime."""

    SENT = 0
    DELIVERED = 1
    HARD_BOUNCE = 2
    COMPLAINT = 3
    UNSUBSCRIBE = 4
    SOFT_BOUNCE = 5
    BLOCK = 6
    DEFERRED = 7
    OPEN = 8
    CLICK = 9
    DROPPED_SUPPRESSED = 10


WINDOWED_COUNTERS = 5
"""Counters 0..4 feed the rates and are kept per bucket; the rest only for the lifetime."""

LIFETIME_COUNTERS = len(Counter)

RATE_TERMS: dict[Metric, tuple[Counter, Counter]] = {
    Metric.HARD_BOUNCE: (Counter.HARD_BOUNCE, Counter.SENT),
    Metric.COMPLAINT: (Counter.COMPLAINT, Counter.DELIVERED),
    Metric.UNSUBSCRIBE: (Counter.UNSUBSCRIBE, Counter.DELIVERED),
}
"""Each metric's (numerator, denominator). Bounces are per send, the rest per delivery."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A sliding window of `length_ms` kept as `buckets` buckets of equal width."""

    name: str
    length_ms: int
    buckets: int

    def __post_init__(self) -> None:
        if self.buckets < 1 or self.length_ms < self.buckets:
            raise ValueError(f"window {self.name!r}: need 1 <= buckets <= length_ms")
        if self.length_ms % self.buckets:
            raise ValueError(f"window {self.name!r}: length must be a multiple of buckets")

    @property
    def bucket_ms(self) -> int:
        """Width of one bucket."""
        return self.length_ms // self.buckets


class SlidingWindow:
    """Counts of the last `spec.buckets` buckets before the watermark, in a ring.

    Bucket b covers [b * width, (b + 1) * width). With the watermark in bucket h the window
    holds buckets h-B+1 .. h, so it spans between length - width and length of event time:

        bucket:  ... | h-B | h-B+1 | h-B+2 | ... | h-1 |  h  |
                       ^     ^-------------- counted ---------^
                  too old    (ring slot = b mod B)       watermark is in here

    When the watermark moves from bucket h to h' the slots of buckets h-B+1 .. h'-B are
    subtracted from the sums and zeroed: at most B slots per advance, whatever the event rate.
    An event in bucket b <= h-B is too old for this window and is not counted in it.
    """

    __slots__ = ("_counts", "head", "spec", "sums")

    def __init__(
        self, spec: WindowSpec, head: int | None = None, counts: list[int] | None = None
    ) -> None:
        self.spec = spec
        self.head = head
        """Bucket number of the watermark; None before the first event."""
        self._counts = counts if counts is not None else [0] * (spec.buckets * WINDOWED_COUNTERS)
        if len(self._counts) != spec.buckets * WINDOWED_COUNTERS:
            raise ValueError(f"window {spec.name!r}: wrong number of stored counts")
        self.sums = [0] * WINDOWED_COUNTERS
        for offset in range(0, len(self._counts), WINDOWED_COUNTERS):
            for counter in range(WINDOWED_COUNTERS):
                self.sums[counter] += self._counts[offset + counter]

    @property
    def counts(self) -> list[int]:
        """The ring's raw counts, slot-major (for storage)."""
        return self._counts

    def bucket_of(self, at_ms: int) -> int:
        """The bucket number holding an instant."""
        return at_ms // self.spec.bucket_ms

    def advance(self, watermark_ms: int) -> bool:
        """Move the window's end to the watermark; True if buckets were expired."""
        new_head = self.bucket_of(watermark_ms)
        if self.head is None:
            self.head = new_head
            return False
        if new_head <= self.head:
            return False
        size = self.spec.buckets
        if new_head - self.head >= size:
            self._counts = [0] * (size * WINDOWED_COUNTERS)
            self.sums = [0] * WINDOWED_COUNTERS
        else:
            counts, sums = self._counts, self.sums
            for bucket in range(self.head + 1, new_head + 1):
                base = (bucket % size) * WINDOWED_COUNTERS
                for counter in range(WINDOWED_COUNTERS):
                    sums[counter] -= counts[base + counter]
                    counts[base + counter] = 0
        self.head = new_head
        return True

    def add(self, counter: Counter, at_ms: int) -> bool:
        """Count one event at `at_ms` (call `advance` first); False if too old for the window."""
        if counter >= WINDOWED_COUNTERS or self.head is None:
            return False
        bucket = self.bucket_of(at_ms)
        size = self.spec.buckets
        if bucket <= self.head - size or bucket > self.head:
            return False
        self._counts[(bucket % size) * WINDOWED_COUNTERS + counter] += 1
        self.sums[counter] += 1
        return True

    def total(self, counter: Counter) -> int:
        """The window's count of one counter."""
        return self.sums[counter] if counter < WINDOWED_COUNTERS else 0


@dataclass(slots=True)
class Observation:
    """Where one event landed: counted, or too late for every window."""

    late: bool
    expired_windows: tuple[str, ...]


class CampaignWindows:
    """All windows of one campaign plus lifetime totals and the event-time watermark.

    The watermark is the latest `occurred_at` seen. An event older than the longest window
    (its bucket has left that window) is late: it counts in `late_events` only, so it can
    neither reopen expired history nor skew a rate. Out-of-order events inside a window count.
    """

    __slots__ = ("late_events", "lifetime", "longest", "watermark_ms", "windows")

    def __init__(
        self,
        specs: tuple[WindowSpec, ...],
        *,
        watermark_ms: int | None = None,
        windows: list[SlidingWindow] | None = None,
        lifetime: list[int] | None = None,
        late_events: int = 0,
    ) -> None:
        if not specs:
            raise ValueError("at least one sliding window is required")
        self.windows = windows if windows is not None else [SlidingWindow(s) for s in specs]
        self.longest = max(range(len(specs)), key=lambda i: specs[i].length_ms)
        self.watermark_ms = watermark_ms
        self.lifetime = lifetime if lifetime is not None else [0] * LIFETIME_COUNTERS
        self.late_events = late_events

    def is_late(self, at_ms: int) -> bool:
        """True if an event at `at_ms` is too old for the longest window."""
        longest = self.windows[self.longest]
        if longest.head is None:
            return False
        return longest.bucket_of(at_ms) <= longest.head - longest.spec.buckets

    def observe(self, counter: Counter, at_ms: int) -> Observation:
        """Count one event; advance the watermark if it is the newest seen."""
        if self.is_late(at_ms):
            self.late_events += 1
            return Observation(late=True, expired_windows=())
        expired: list[str] = []
        if self.watermark_ms is None or at_ms > self.watermark_ms:
            self.watermark_ms = at_ms
            expired = [window.spec.name for window in self.windows if window.advance(at_ms)]
        for window in self.windows:
            window.add(counter, at_ms)
        self.lifetime[counter] += 1
        return Observation(late=False, expired_windows=tuple(expired))

    def window(self, name: str) -> tuple[int, ...]:
        """Totals of every counter in a named window ('lifetime' for all time)."""
        if name == "lifetime":
            return tuple(self.lifetime)
        for window in self.windows:
            if window.spec.name == name:
                return tuple(window.total(Counter(c)) for c in range(LIFETIME_COUNTERS))
        raise KeyError(name)

    def rate_terms(self, metric: Metric, window_name: str) -> tuple[int, int]:
        """(numerator, denominator) of a metric in a window."""
        numerator, denominator = RATE_TERMS[metric]
        if window_name == "lifetime":
            return self.lifetime[numerator], self.lifetime[denominator]
        for window in self.windows:
            if window.spec.name == window_name:
                return window.sums[numerator], window.sums[denominator]
        raise KeyError(window_name)
