"""Event-time sliding windows: bucket arithmetic, watermark and lateness, per campaign.

Pure and synchronous. Time is an integer of milliseconds since the epoch, always passed in.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from schemas.control import Metric

if TYPE_CHECKING:
    from collections.abc import Sequence


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
    """A sliding window of `length_ms` kept as `buckets` buckets of equal width.

    `history_ms` more of older buckets are kept in the ring, outside the window proper, so a
    rate can take its denominator from further back than its numerator (feedback lags sends).
    """

    name: str
    length_ms: int
    buckets: int
    history_ms: int = 0

    def __post_init__(self) -> None:
        if self.buckets < 1 or self.length_ms < self.buckets:
            raise ValueError(f"window {self.name!r}: need 1 <= buckets <= length_ms")
        if self.length_ms % self.buckets:
            raise ValueError(f"window {self.name!r}: length must be a multiple of buckets")
        if self.history_ms < 0:
            raise ValueError(f"window {self.name!r}: history must not be negative")

    @property
    def bucket_ms(self) -> int:
        """Width of one bucket."""
        return self.length_ms // self.buckets

    @property
    def history_buckets(self) -> int:
        """Buckets kept before the window proper (history rounded up to whole buckets)."""
        return -(-self.history_ms // self.bucket_ms)

    @property
    def ring_size(self) -> int:
        """Buckets in the ring: the window proper plus its history."""
        return self.buckets + self.history_buckets


class SlidingWindow:
    """Counts of the last `spec.buckets` buckets before the watermark, in a ring.

    Bucket b covers [b * width, (b + 1) * width). With the watermark in bucket h the window
    proper holds buckets h-B+1 .. h, so it spans between length - width and length of event
    time; the ring also keeps H history buckets before it (R = B + H slots):

        bucket:  ... | h-R | h-R+1 .. h-B | h-B+1 | ... | h-1 |  h  |
                       ^     ^- history -^  ^--------- window proper --^
                  dropped    (denominators)  (`sums`)     watermark is in here
                                                          ring slot = b mod R

    When the watermark moves from bucket h to h', buckets leaving the window proper are
    subtracted from `sums` and buckets leaving the history are zeroed: at most R slots per
    advance, whatever the event rate. An event in bucket b <= h-R is not kept at all, and one in
    the history is kept for `sum_since` but is not part of the window proper.
    """

    __slots__ = ("_counts", "_ring", "_since", "_width", "_window", "head", "spec", "sums")

    def __init__(
        self, spec: WindowSpec, head: int | None = None, counts: array[int] | None = None
    ) -> None:
        self.spec = spec
        self.head = head
        """Bucket number of the watermark; None before the first event."""
        self._width = spec.bucket_ms
        self._ring = spec.ring_size
        self._window = spec.buckets
        # Running sums of `sum_since` spans, keyed (counter, first bucket); they stay exact under
        # `add` and are dropped when the head moves, so a lagged denominator is O(1) per event.
        self._since: dict[tuple[int, int], int] = {}
        size = self._ring * WINDOWED_COUNTERS
        # Unsigned 32-bit counts, as the codec stores them: the ring is written with each
        # batch, and an array goes to bytes in one copy where a list is converted int by int.
        self._counts = counts if counts is not None else _zeros(size)
        if getattr(self._counts, "typecode", None) != _COUNT_TYPE:
            raise TypeError(f"window {spec.name!r}: counts must be array({_COUNT_TYPE!r})")
        if len(self._counts) != size:
            raise ValueError(f"window {spec.name!r}: wrong number of stored counts")
        self.sums = [0] * WINDOWED_COUNTERS if head is None else self._window_sums(head)

    def _window_sums(self, head: int) -> list[int]:
        """Per counter, the total of the window proper's buckets (slices: run once per load)."""
        ring, width = self._ring, WINDOWED_COUNTERS
        first = (head - self._window + 1) % ring
        end = first + self._window
        spans = [(first, end)] if end <= ring else [(first, ring), (0, end - ring)]
        counts = self._counts
        return [
            sum(
                sum(counts[start * width + counter : stop * width : width]) for start, stop in spans
            )
            for counter in range(width)
        ]

    @property
    def counts(self) -> array[int]:
        """The ring's raw counts, slot-major (for storage; don't change them)."""
        return self._counts

    def bucket_of(self, at_ms: int) -> int:
        """The bucket number holding an instant."""
        return at_ms // self._width

    def advance(self, watermark_ms: int) -> bool:
        """Move the window's end to the watermark; True if buckets left the window proper."""
        new_head = watermark_ms // self._width
        if self.head is None:
            self.head = new_head
            return False
        if new_head <= self.head:
            return False
        self._since.clear()
        ring, window = self._ring, self._window
        counts, sums = self._counts, self.sums
        if new_head - self.head >= ring:
            self._counts = _zeros(ring * WINDOWED_COUNTERS)
            self.sums = [0] * WINDOWED_COUNTERS
        else:
            # Buckets h-B+1 .. h'-B leave the window proper (still in the ring as history).
            for bucket in range(self.head - window + 1, min(new_head - window, self.head) + 1):
                base = (bucket % ring) * WINDOWED_COUNTERS
                for counter in range(WINDOWED_COUNTERS):
                    sums[counter] -= counts[base + counter]
            # Buckets h-R+1 .. h'-R leave the ring: their slots now hold h+1 .. h'.
            for bucket in range(self.head + 1, new_head + 1):
                base = (bucket % ring) * WINDOWED_COUNTERS
                for counter in range(WINDOWED_COUNTERS):
                    counts[base + counter] = 0
        self.head = new_head
        return True

    def add(self, counter: Counter, at_ms: int) -> bool:
        """Count one event at `at_ms` (call `advance` first); True if in the window proper."""
        return self.add_to_bucket(counter, at_ms // self._width, 1)

    def add_to_bucket(self, counter: int, bucket: int, count: int) -> bool:
        """Count `count` events in bucket number `bucket`; True if in the window proper."""
        head = self.head
        if counter >= WINDOWED_COUNTERS or head is None:
            return False
        ring = self._ring
        if bucket <= head - ring or bucket > head:
            return False
        self._counts[(bucket % ring) * WINDOWED_COUNTERS + counter] += count
        if self._since:
            for key in self._since:
                if key[0] == counter and bucket >= key[1]:
                    self._since[key] += count
        if bucket <= head - self._window:
            return False
        self.sums[counter] += count
        return True

    def total(self, counter: Counter) -> int:
        """The window's count of one counter."""
        return self.sums[counter] if counter < WINDOWED_COUNTERS else 0

    def covers(self, since_ms: int) -> bool:
        """True if the ring still holds every bucket from `since_ms` to the watermark."""
        return self.head is not None and since_ms // self._width > self.head - self._ring

    def sum_since(self, counter: Counter, since_ms: int) -> int:
        """Count of `counter` in the buckets from the one holding `since_ms` to the watermark."""
        if self.head is None or counter >= WINDOWED_COUNTERS:
            return 0
        ring = self._ring
        first = max(since_ms // self._width, self.head - ring + 1)
        cached = self._since.get((counter, first))
        if cached is not None:
            return cached
        counts = self._counts
        total = sum(
            counts[(bucket % ring) * WINDOWED_COUNTERS + counter]
            for bucket in range(first, self.head + 1)
        )
        self._since[counter, first] = total
        return total


_COUNT_TYPE = "I"
"""array typecode of the counts: unsigned 32-bit, as the codec stores them."""


def _zeros(size: int) -> array[int]:
    return array(_COUNT_TYPE, bytes(size * array(_COUNT_TYPE).itemsize))


@dataclass(frozen=True, slots=True)
class Observation:
    """Where one event landed: counted, or too late for every window."""

    late: bool
    expired_windows: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CountPlan:
    """Events counted at once: per (counter, bucket of `_unit_ms`), plus late ones."""

    counts: dict[tuple[int, int], int]
    late: int
    watermark_ms: int
    late_before_ms: int
    """Events before this instant are late (the same for every event of the plan)."""

    def added_by_counter(self) -> dict[int, int]:
        """How many of the plan's events count towards each counter it has events of."""
        totals: dict[int, int] = {}
        for (counter, _), n in self.counts.items():
            totals[counter] = totals.get(counter, 0) + n
        return totals


# Shared for the common outcomes (frozen, so sharing is safe): most events move no window.
_COUNTED = Observation(late=False, expired_windows=())
_LATE = Observation(late=True, expired_windows=())


class CampaignWindows:
    """All windows of one campaign plus lifetime totals and the event-time watermark.

    The watermark is the latest `occurred_at` seen. An event older than the longest window
    (its bucket has left that window) is late: it counts in `late_events` only, so it can
    neither reopen expired history nor skew a rate. Out-of-order events inside a window count.
    """

    __slots__ = (
        "_finest_first",
        "_unit_ms",
        "late_events",
        "lifetime",
        "longest",
        "watermark_ms",
        "windows",
    )

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
        self._finest_first = sorted(self.windows, key=lambda w: w.spec.bucket_ms)
        # The widest span that never straddles a bucket edge of any window.
        self._unit_ms = math.gcd(*(w.spec.bucket_ms for w in self.windows))

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
            return _LATE
        windows = self.windows
        observation = _COUNTED
        watermark_ms = self.watermark_ms
        if watermark_ms is None or at_ms > watermark_ms:
            self.watermark_ms = at_ms
            expired = tuple([window.spec.name for window in windows if window.advance(at_ms)])
            if expired:
                observation = Observation(late=False, expired_windows=expired)
        for window in windows:
            window.add(counter, at_ms)
        self.lifetime[counter] += 1
        return observation

    def plan_in_place(
        self,
        counters: Sequence[int],
        times_ms: Sequence[int],
        start: int,
        until_ms: int | None = None,
    ) -> tuple[CountPlan | None, int]:
        """How events from `start` on would count, up to the first that would move a window.

        Or the first at or after `until_ms` (the end of the sequential rules' current step).

        Returns the plan of events[start:end] and `end` (the index of that event, or the
        length); no plan before the first event ever. Nothing changes until `apply`: the caller
        first decides whether counting them at once is the same as counting them one by one
        (see detector.observe_run).
        """
        newest = self.watermark_ms
        if newest is None:
            return None, start
        edges: list[int] = []  # the first instant after each window's head bucket
        for window in self.windows:
            if window.head is None:
                return None, start
            edges.append((window.head + 1) * window.spec.bucket_ms)
        longest = self.windows[self.longest].spec
        late_before_ms = edges[self.longest] - longest.buckets * longest.bucket_ms
        move_from_ms = min(edges) if until_ms is None else min(*edges, until_ms)
        unit = self._unit_ms
        counts: dict[tuple[int, int], int] = {}
        late = 0
        end, total = start, len(times_ms)
        while end < total:
            at_ms = times_ms[end]
            if at_ms < late_before_ms:
                late += 1
            elif at_ms >= move_from_ms:
                break
            else:
                key = (counters[end], at_ms // unit)
                counts[key] = counts.get(key, 0) + 1
                newest = max(newest, at_ms)
            end += 1
        return CountPlan(counts, late, newest, late_before_ms), end

    def apply(self, plan: CountPlan) -> None:
        """Count a plan's events (the windows must not have changed since `plan_in_place`)."""
        unit, lifetime = self._unit_ms, self.lifetime
        for (counter, unit_bucket), count in plan.counts.items():
            lifetime[counter] += count
            at_ms = unit_bucket * unit
            for window in self.windows:
                window.add_to_bucket(counter, at_ms // window.spec.bucket_ms, count)
        self.late_events += plan.late
        self.watermark_ms = plan.watermark_ms

    def window(self, name: str) -> tuple[int, ...]:
        """Totals of every counter in a named window ('lifetime' for all time)."""
        if name == "lifetime":
            return tuple(self.lifetime)
        for window in self.windows:
            if window.spec.name == name:
                return tuple(window.total(Counter(c)) for c in range(LIFETIME_COUNTERS))
        raise KeyError(name)

    def rate_terms(self, metric: Metric, window_name: str, lag_ms: int = 0) -> tuple[int, int]:
        """(numerator, denominator) of a metric in a window.

        The numerator counts the window proper; the denominator reaches `lag_ms` further back,
        because bounces, complaints and unsubscribes arrive after the sends they answer: without
        it a window sliding past the end of a send would see late feedback over few deliveries.
        The denominator comes from the finest ring that holds that span, else the lifetime.
        """
        numerator, denominator = RATE_TERMS[metric]
        if window_name == "lifetime":
            return self.lifetime[numerator], self.lifetime[denominator]
        for window in self.windows:
            if window.spec.name == window_name:
                if not lag_ms or self.watermark_ms is None:
                    return window.sums[numerator], window.sums[denominator]
                span_ms = window.spec.length_ms + lag_ms
                return window.sums[numerator], self._denominator_over(denominator, span_ms)
        raise KeyError(window_name)

    def _denominator_over(self, counter: Counter, span_ms: int) -> int:
        # Whole buckets ending at the head: the span moves exactly when a head moves, so an
        # evaluation at every head move (see detector.observe) never misses a change.
        for window in self._finest_first:
            width, head = window.spec.bucket_ms, window.head
            buckets = -(-span_ms // width)
            if head is not None and buckets <= window.spec.ring_size:
                return window.sum_since(counter, (head - buckets + 1) * width)
        return self.lifetime[counter]
