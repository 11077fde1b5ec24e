"""Unit and property tests of the event-time sliding windows (processor.domain.windows)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.domain.policy import DEFAULT_WINDOWS, FEEDBACK_LAG_MS
from processor.domain.windows import (
    LIFETIME_COUNTERS,
    RATE_TERMS,
    WINDOWED_COUNTERS,
    CampaignWindows,
    Counter,
    SlidingWindow,
    WindowSpec,
)
from schemas.control import Metric

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
EPOCH_MS = 1_700_000_000_000
"""A realistic 'now' (Nov 2023) in milliseconds since the epoch."""

DEFAULT_LAGS = (0, *FEEDBACK_LAG_MS.values())


def _ring_slots(window: SlidingWindow) -> dict[int, list[int]]:
    """The raw counts the ring holds, by bucket number, from its oldest bucket to the head."""
    assert window.head is not None
    ring = window.spec.ring_size
    raw = window.counts
    slots = {}
    for bucket in range(window.head - ring + 1, window.head + 1):
        base = (bucket % ring) * WINDOWED_COUNTERS
        slots[bucket] = list(raw[base : base + WINDOWED_COUNTERS])
    return slots


def _proper_sums(window: SlidingWindow) -> list[int]:
    """Per-counter totals of the window proper, recomputed from the ring's raw counts."""
    assert window.head is not None
    slots = _ring_slots(window)
    proper = range(window.head - window.spec.buckets + 1, window.head + 1)
    return [sum(slots[b][counter] for b in proper) for counter in range(WINDOWED_COUNTERS)]


# --- brute-force model -------------------------------------------------------------------------


def _too_old(spec: WindowSpec, at_ms: int, watermark_ms: int, span_buckets: int) -> bool:
    """True if `at_ms` is in a bucket at least `span_buckets` behind the watermark's bucket."""
    return at_ms // spec.bucket_ms <= watermark_ms // spec.bucket_ms - span_buckets


@dataclass(frozen=True, slots=True)
class Recount:
    """What the windows must hold after some events, recounted from the raw event list.

    The semantics, from the docstrings of WindowSpec, SlidingWindow and CampaignWindows:

    * the watermark is the latest event time seen (late events are older than it anyway);
    * an event is late iff, at its arrival, its bucket is older than the longest window's
      range under the watermark as it stood before it (the first event is never late, nor
      is one newer than the watermark); a late event counts in `late_events` only;
    * a non-late event counts in the lifetime of its counter;
    * a non-late windowed event is kept in window W's ring iff its bucket was within the
      ring (the B window buckets plus H history buckets up to the head) when it arrived AND
      still is under the final watermark; it counts in W's window proper (`sums`) iff its
      bucket was within the last B buckets on arrival AND still is at the end. Buckets leave
      when the watermark moves past them and never come back, so each second condition
      implies the first; both are checked to state the semantics literally.
    """

    specs: tuple[WindowSpec, ...]
    accepted: tuple[tuple[Counter, int, int], ...]
    """Non-late events: (counter, time, watermark right after its arrival)."""
    late_flags: tuple[bool, ...]
    watermark_ms: int | None

    @classmethod
    def of(cls, specs: tuple[WindowSpec, ...], events: list[tuple[Counter, int]]) -> Recount:
        """Replay the lateness rule over the raw events."""
        longest = max(specs, key=lambda s: s.length_ms)
        watermark: int | None = None
        accepted: list[tuple[Counter, int, int]] = []
        late_flags: list[bool] = []
        for counter, at_ms in events:
            late = watermark is not None and _too_old(longest, at_ms, watermark, longest.buckets)
            late_flags.append(late)
            if not late:
                watermark = at_ms if watermark is None else max(watermark, at_ms)
                accepted.append((counter, at_ms, watermark))
        return cls(specs, tuple(accepted), tuple(late_flags), watermark)

    def _kept(self, spec: WindowSpec, span_buckets: int) -> list[tuple[Counter, int]]:
        """Windowed events within `span_buckets` of the head on arrival and at the end."""
        final = self.watermark_ms
        assert final is not None
        return [
            (counter, at_ms)
            for counter, at_ms, arrival in self.accepted
            if counter < WINDOWED_COUNTERS
            and at_ms // spec.bucket_ms <= arrival // spec.bucket_ms  # never after the head
            and not _too_old(spec, at_ms, arrival, span_buckets)
            and not _too_old(spec, at_ms, final, span_buckets)
        ]

    @property
    def lifetime(self) -> list[int]:
        """Non-late events per counter."""
        totals = [0] * LIFETIME_COUNTERS
        for counter, _, _ in self.accepted:
            totals[counter] += 1
        return totals

    def sums(self, spec: WindowSpec) -> list[int]:
        """The window proper's per-counter totals."""
        totals = [0] * WINDOWED_COUNTERS
        for counter, _ in self._kept(spec, spec.buckets):
            totals[counter] += 1
        return totals

    def ring(self, spec: WindowSpec) -> dict[int, list[int]]:
        """The per-counter counts the ring must hold, by bucket number (empty ones left out)."""
        slots: dict[int, list[int]] = {}
        for counter, at_ms in self._kept(spec, spec.ring_size):
            slots.setdefault(at_ms // spec.bucket_ms, [0] * WINDOWED_COUNTERS)[counter] += 1
        return slots

    def sum_since(self, spec: WindowSpec, counter: Counter, since_ms: int) -> int:
        """Events of `counter` kept in the ring, in buckets from the one holding `since_ms`."""
        if counter >= WINDOWED_COUNTERS:
            return 0
        first = since_ms // spec.bucket_ms
        return sum(
            1
            for kept, at_ms in self._kept(spec, spec.ring_size)
            if kept == counter and at_ms // spec.bucket_ms >= first
        )

    def rate_terms(self, metric: Metric, spec: WindowSpec, lag_ms: int) -> tuple[int, int]:
        """Numerator from the window proper; denominator from `lag_ms` further back.

        Per the docstring: the span (length + lag) in whole buckets ending at the head, from the
        finest ring whose ring holds that many buckets, else from the lifetime.
        """
        numerator, denominator = RATE_TERMS[metric]
        window_numerator = self.sums(spec)[numerator]
        if not lag_ms:
            return window_numerator, self.sums(spec)[denominator]
        assert self.watermark_ms is not None
        span_ms = spec.length_ms + lag_ms
        for ring in sorted(self.specs, key=lambda s: s.bucket_ms):
            buckets = -(-span_ms // ring.bucket_ms)
            if buckets <= ring.ring_size:
                head = self.watermark_ms // ring.bucket_ms
                since_ms = (head - buckets + 1) * ring.bucket_ms
                return window_numerator, self.sum_since(ring, denominator, since_ms)
        return window_numerator, self.lifetime[denominator]


@st.composite
def window_specs(draw: st.DrawFn) -> tuple[WindowSpec, ...]:
    """One to three windows of distinct lengths, with small buckets and some history.

    Small bucket widths force expiry; history is 0 to about 3 buckets, any number of ms (to
    exercise the rounding up to whole buckets).
    """
    shapes = draw(
        st.lists(
            st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(0, 20)),
            min_size=1,
            max_size=3,
            unique_by=lambda shape: shape[0] * shape[1],
        )
    )
    return tuple(
        WindowSpec(f"w{index}", buckets * width, buckets, history)
        for index, (buckets, width, history) in enumerate(shapes)
    )


COUNTERS = st.sampled_from(list(Counter))


# --- WindowSpec --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length_ms", "buckets"),
    [(60, 0), (60, -1), (5, 6), (0, 1), (61, 6)],
)
def test_window_spec_rejects_impossible_shapes(length_ms: int, buckets: int) -> None:
    """A spec needs at least one bucket, no more buckets than ms, and equal-width buckets."""
    with pytest.raises(ValueError, match="window 'w'"):
        WindowSpec("w", length_ms, buckets)


@pytest.mark.parametrize(
    ("length_ms", "buckets", "bucket_ms"),
    [(HOUR_MS, 60, MINUTE_MS), (24 * HOUR_MS, 60, 24 * MINUTE_MS), (7, 7, 1), (7, 1, 7)],
)
def test_window_spec_bucket_width_is_length_over_buckets(
    length_ms: int, buckets: int, bucket_ms: int
) -> None:
    """The bucket width is the window length divided by the number of buckets."""
    assert WindowSpec("w", length_ms, buckets).bucket_ms == bucket_ms


def test_window_spec_rejects_negative_history() -> None:
    """History is a length of time: it cannot be negative."""
    with pytest.raises(ValueError, match="history must not be negative"):
        WindowSpec("w", 60, 6, history_ms=-1)


@pytest.mark.parametrize(
    ("history_ms", "history_buckets"),
    [(0, 0), (1, 1), (9, 1), (10, 1), (11, 2), (30, 3)],
)
def test_history_is_rounded_up_to_whole_buckets(history_ms: int, history_buckets: int) -> None:
    """The ring keeps enough whole buckets to hold the requested history."""
    spec = WindowSpec("w", 60, 6, history_ms=history_ms)  # 10 ms buckets
    assert spec.history_buckets == history_buckets
    assert spec.ring_size == 6 + history_buckets


def test_default_24h_ring_keeps_seven_hours_of_history() -> None:
    """The production 24h window keeps 18 buckets (7.2 h) behind its 60; the 1h keeps none."""
    one_hour, one_day = DEFAULT_WINDOWS
    assert (one_hour.ring_size, one_day.ring_size) == (60, 78)
    assert one_day.history_buckets * one_day.bucket_ms >= 7 * HOUR_MS


# --- SlidingWindow -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("at_ms", "bucket"),
    [(0, 0), (9, 0), (10, 1), (19, 1), (-1, -1), (-10, -1), (-11, -2)],
)
def test_bucket_of_floors_time_to_the_bucket_width(at_ms: int, bucket: int) -> None:
    """Bucket b covers [b * width, (b + 1) * width), also before the epoch."""
    assert SlidingWindow(WindowSpec("w", 40, 4)).bucket_of(at_ms) == bucket


def test_add_before_the_first_advance_is_refused() -> None:
    """A window without a watermark counts nothing."""
    window = SlidingWindow(WindowSpec("w", 40, 4))
    assert window.add(Counter.SENT, 5) is False
    assert window.sums == [0] * WINDOWED_COUNTERS


@pytest.mark.parametrize(
    ("at_ms", "counted"),
    [
        (100, True),  # the watermark's own bucket (10)
        (109, True),  # end of the watermark's bucket
        (70, True),  # oldest bucket still held: h - B + 1 = 7
        (69, False),  # bucket h - B = 6 is too old
        (0, False),
        (110, False),  # a bucket after the watermark is never counted
    ],
)
def test_add_counts_only_buckets_between_head_minus_size_and_head(
    at_ms: int, *, counted: bool
) -> None:
    """With the watermark in bucket h the window counts buckets h-B+1 .. h and nothing else."""
    window = SlidingWindow(WindowSpec("w", 40, 4))
    window.advance(100)
    assert window.add(Counter.HARD_BOUNCE, at_ms) is counted
    assert window.total(Counter.HARD_BOUNCE) == int(counted)


@pytest.mark.parametrize("counter", [c for c in Counter if c >= WINDOWED_COUNTERS])
def test_lifetime_only_counters_are_not_windowed(counter: Counter) -> None:
    """Counters past the windowed ones are refused by a window and total zero."""
    window = SlidingWindow(WindowSpec("w", 40, 4))
    window.advance(0)
    assert window.add(counter, 0) is False
    assert window.total(counter) == 0


def test_advance_expires_exactly_the_buckets_that_leave_the_window() -> None:
    """Moving the head from h to h' subtracts buckets h-B+1 .. h'-B and keeps the rest."""
    window = SlidingWindow(WindowSpec("w", 40, 4))  # width 10
    window.advance(39)  # head 3: holds buckets 0..3
    for at_ms in (0, 10, 10, 20, 30, 30, 30):
        assert window.add(Counter.SENT, at_ms)
    assert window.total(Counter.SENT) == 7
    assert window.advance(55) is True  # head 5: holds 2..5, buckets 0 and 1 leave
    assert window.total(Counter.SENT) == 4
    assert window.sums == _proper_sums(window)
    assert window.advance(50) is False  # a watermark in an older bucket changes nothing
    assert window.advance(59) is False  # nor one in the same bucket
    assert window.total(Counter.SENT) == 4


@pytest.mark.parametrize("jump_buckets", [4, 5, 1000])
def test_advance_by_a_whole_window_or_more_clears_every_bucket(jump_buckets: int) -> None:
    """When the head moves by B buckets or more, nothing old is left in the window."""
    window = SlidingWindow(WindowSpec("w", 40, 4))
    window.advance(30)
    for at_ms in (0, 10, 20, 30):
        window.add(Counter.DELIVERED, at_ms)
    assert window.advance(30 + 10 * jump_buckets) is True
    assert window.sums == [0] * WINDOWED_COUNTERS
    assert list(window.counts) == [0] * (4 * WINDOWED_COUNTERS)


def test_first_advance_sets_the_head_without_expiring() -> None:
    """The first watermark places the window; it reports no expiry."""
    window = SlidingWindow(WindowSpec("w", 40, 4))
    assert window.advance(1234) is False
    assert window.head == 123


def test_sliding_window_rebuilds_its_sums_from_stored_counts() -> None:
    """A window restored from raw counts has sums equal to the per-counter column sums."""
    spec = WindowSpec("w", 30, 3)
    counts = array("I", range(3 * WINDOWED_COUNTERS))
    window = SlidingWindow(spec, head=7, counts=counts)
    assert window.sums == [0 + 5 + 10, 1 + 6 + 11, 2 + 7 + 12, 3 + 8 + 13, 4 + 9 + 14]


def test_sliding_window_rejects_stored_counts_of_the_wrong_size() -> None:
    """Stored counts must hold exactly buckets x windowed counters values."""
    with pytest.raises(ValueError, match="wrong number of stored counts"):
        SlidingWindow(WindowSpec("w", 30, 3), head=0, counts=array("I", [0] * 14))


HISTORIC = WindowSpec("w", 40, 4, history_ms=20)  # 10 ms buckets: 4 proper + 2 history


@pytest.mark.parametrize(
    ("at_ms", "in_ring", "in_window"),
    [
        (100, True, True),  # the head's bucket (10)
        (70, True, True),  # oldest bucket of the window proper: h - B + 1 = 7
        (69, True, False),  # history: bucket 6
        (50, True, False),  # oldest history bucket: h - R + 1 = 5
        (49, False, False),  # bucket h - R = 4 has left the ring
        (110, False, False),
    ],
)
def test_history_buckets_are_kept_in_the_ring_but_not_in_the_window(
    at_ms: int, *, in_ring: bool, in_window: bool
) -> None:
    """An event in the history is kept for `sum_since` but is not part of `sums`."""
    window = SlidingWindow(HISTORIC)
    window.advance(100)
    assert window.add(Counter.SENT, at_ms) is in_window
    assert window.total(Counter.SENT) == int(in_window)
    assert window.sum_since(Counter.SENT, 0) == int(in_ring)


def test_buckets_age_from_the_window_into_the_history_then_out_of_the_ring() -> None:
    """Advancing moves old buckets out of `sums` first and out of `sum_since` later."""
    window = SlidingWindow(HISTORIC)
    window.advance(70)
    for at_ms in (40, 50, 60, 70):  # buckets 4..7: the window proper
        window.add(Counter.DELIVERED, at_ms)
    assert (window.total(Counter.DELIVERED), window.sum_since(Counter.DELIVERED, 0)) == (4, 4)
    window.advance(90)  # head 9: buckets 4, 5 become history
    assert (window.total(Counter.DELIVERED), window.sum_since(Counter.DELIVERED, 0)) == (2, 4)
    assert window.sum_since(Counter.DELIVERED, 55) == 3  # from bucket 5 on
    window.advance(100)  # head 10: bucket 4 leaves the ring
    assert (window.total(Counter.DELIVERED), window.sum_since(Counter.DELIVERED, 0)) == (1, 3)
    window.advance(200)  # a jump past the whole ring clears it
    assert (window.total(Counter.DELIVERED), window.sum_since(Counter.DELIVERED, 0)) == (0, 0)


def test_sum_since_stays_exact_when_events_arrive_after_it_was_asked() -> None:
    """A lagged sum asked, then changed by new events in and before its span, is recounted."""
    window = SlidingWindow(HISTORIC)
    window.advance(100)
    window.add(Counter.SENT, 100)
    assert window.sum_since(Counter.SENT, 80) == 1
    window.add(Counter.SENT, 85)  # inside the span asked for
    window.add(Counter.SENT, 60)  # before it
    window.add(Counter.DELIVERED, 90)  # another counter
    assert window.sum_since(Counter.SENT, 80) == 2
    assert window.sum_since(Counter.SENT, 60) == 3
    window.advance(105)  # same bucket: nothing moves
    window.add(Counter.SENT, 101)
    assert window.sum_since(Counter.SENT, 80) == 3


@pytest.mark.parametrize(
    ("since_ms", "covered"),
    [(100, True), (50, True), (49, False), (-1000, False)],
)
def test_covers_tells_whether_the_ring_reaches_back_to_an_instant(
    since_ms: int, *, covered: bool
) -> None:
    """A ring covers an instant iff that instant's bucket is still in the ring."""
    window = SlidingWindow(HISTORIC)
    assert window.covers(since_ms) is False  # no watermark yet
    window.advance(100)
    assert window.covers(since_ms) is covered


def test_sum_since_before_the_first_watermark_and_for_lifetime_counters_is_zero() -> None:
    """Nothing is summed before a watermark, nor for counters kept only for the lifetime."""
    window = SlidingWindow(HISTORIC)
    assert window.sum_since(Counter.SENT, 0) == 0
    window.advance(100)
    window.add(Counter.OPEN, 100)
    assert window.sum_since(Counter.OPEN, 0) == 0


# --- CampaignWindows ---------------------------------------------------------------------------


def test_campaign_windows_need_at_least_one_window() -> None:
    """A campaign without a sliding window is refused."""
    with pytest.raises(ValueError, match="at least one sliding window"):
        CampaignWindows(())


def test_first_event_is_never_late_whatever_its_time() -> None:
    """Before any watermark an event of any age is counted and sets the watermark."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    seen = windows.observe(Counter.SENT, 0)
    assert seen.late is False
    assert windows.watermark_ms == 0
    assert windows.window("1h")[Counter.SENT] == 1


def test_late_event_counts_in_late_events_only() -> None:
    """An event older than the longest window changes nothing but `late_events`."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    windows.observe(Counter.SENT, EPOCH_MS)
    before = (windows.window("1h"), windows.window("24h"), windows.window("lifetime"))
    seen = windows.observe(Counter.HARD_BOUNCE, EPOCH_MS - 25 * HOUR_MS)
    assert seen.late is True
    assert seen.expired_windows == ()
    assert windows.late_events == 1
    assert (windows.window("1h"), windows.window("24h"), windows.window("lifetime")) == before
    assert windows.watermark_ms == EPOCH_MS


@pytest.mark.parametrize(
    ("buckets_back", "late"),
    [(59, False), (60, True), (61, True)],
)
def test_lateness_boundary_is_the_longest_windows_oldest_bucket(
    buckets_back: int, *, late: bool
) -> None:
    """An event B buckets behind the watermark's bucket is late; B-1 buckets behind is not."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    width = 24 * MINUTE_MS
    head_start = (EPOCH_MS // width) * width
    windows.observe(Counter.SENT, head_start)
    at_ms = head_start - buckets_back * width + width - 1  # the last ms of that bucket
    assert windows.is_late(at_ms) is late
    assert windows.observe(Counter.DELIVERED, at_ms).late is late
    assert windows.window("24h")[Counter.DELIVERED] == int(not late)
    assert windows.window("1h")[Counter.DELIVERED] == 0  # far too old for the 1h window


def test_out_of_order_event_inside_a_window_counts_without_moving_the_watermark() -> None:
    """An older event still inside a window counts there and leaves the watermark alone."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    windows.observe(Counter.SENT, EPOCH_MS)
    seen = windows.observe(Counter.HARD_BOUNCE, EPOCH_MS - 30 * MINUTE_MS)
    assert seen == type(seen)(late=False, expired_windows=())
    assert windows.watermark_ms == EPOCH_MS
    assert windows.rate_terms(Metric.HARD_BOUNCE, "1h") == (1, 1)
    assert windows.rate_terms(Metric.HARD_BOUNCE, "24h") == (1, 1)


def test_event_too_old_for_a_short_window_still_counts_in_the_long_one() -> None:
    """Not late for the longest window, an event counts where it fits and in the lifetime."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    windows.observe(Counter.SENT, EPOCH_MS)
    seen = windows.observe(Counter.COMPLAINT, EPOCH_MS - 3 * HOUR_MS)
    assert seen.late is False
    assert windows.window("1h")[Counter.COMPLAINT] == 0
    assert windows.window("24h")[Counter.COMPLAINT] == 1
    assert windows.window("lifetime")[Counter.COMPLAINT] == 1


def test_observe_names_the_windows_whose_head_moved() -> None:
    """Only windows whose watermark bucket changed are reported as expired."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    width_24h = 24 * MINUTE_MS
    start = (EPOCH_MS // width_24h) * width_24h
    assert windows.observe(Counter.SENT, start).expired_windows == ()
    assert windows.observe(Counter.SENT, start + MINUTE_MS).expired_windows == ("1h",)
    assert windows.observe(Counter.SENT, start + width_24h).expired_windows == ("1h", "24h")
    assert windows.observe(Counter.SENT, start).expired_windows == ()


def test_window_lookup_by_name_includes_lifetime_and_rejects_unknown_names() -> None:
    """`window` and `rate_terms` answer for each window and 'lifetime'; unknown names raise."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    windows.observe(Counter.OPEN, EPOCH_MS)
    assert windows.window("lifetime")[Counter.OPEN] == 1
    assert windows.window("1h")[Counter.OPEN] == 0  # not a windowed counter
    assert len(windows.window("24h")) == LIFETIME_COUNTERS
    with pytest.raises(KeyError):
        windows.window("7d")
    with pytest.raises(KeyError):
        windows.rate_terms(Metric.COMPLAINT, "7d")


@pytest.mark.parametrize(
    ("metric", "numerator", "denominator"),
    [
        (Metric.HARD_BOUNCE, Counter.HARD_BOUNCE, Counter.SENT),
        (Metric.COMPLAINT, Counter.COMPLAINT, Counter.DELIVERED),
        (Metric.UNSUBSCRIBE, Counter.UNSUBSCRIBE, Counter.DELIVERED),
    ],
)
def test_rate_terms_pair_each_metric_with_its_denominator(
    metric: Metric, numerator: Counter, denominator: Counter
) -> None:
    """Bounces are per send; complaints and unsubscribes are per delivery, in every window."""
    assert RATE_TERMS[metric] == (numerator, denominator)
    windows = CampaignWindows(DEFAULT_WINDOWS)
    for counter in [numerator] * 2 + [denominator] * 5 + [Counter.SOFT_BOUNCE]:
        windows.observe(counter, EPOCH_MS)
    for name in ("1h", "24h", "lifetime"):
        assert windows.rate_terms(metric, name) == (2, 5)


def test_lagged_denominator_reaches_back_into_the_24h_history() -> None:
    """With a lag, the numerator stays in the window but the denominator reaches further back."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    width = 24 * MINUTE_MS
    start = (EPOCH_MS // width) * width
    # 29.6 h before the end: in the 75 buckets (30 h) of the 24h ring's history ending there.
    windows.observe(Counter.DELIVERED, start + 24 * MINUTE_MS)
    windows.observe(Counter.DELIVERED, start + 20 * HOUR_MS)
    end = start + 30 * HOUR_MS
    windows.observe(Counter.COMPLAINT, end)
    assert windows.rate_terms(Metric.COMPLAINT, "24h") == (1, 1)
    assert windows.rate_terms(Metric.COMPLAINT, "24h", 6 * HOUR_MS) == (1, 2)
    # 1h + 6h = 7h: the 18 buckets of 24 min ending at the head miss the delivery at 20h.
    assert windows.rate_terms(Metric.COMPLAINT, "1h", 6 * HOUR_MS) == (1, 0)
    assert windows.rate_terms(Metric.COMPLAINT, "1h", 11 * HOUR_MS) == (1, 1)


def test_lagged_denominator_uses_the_finest_ring_that_covers_it() -> None:
    """A 30-minute lag on the 1h rule is served by the 24h ring at 24-minute granularity."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    width = 24 * MINUTE_MS
    start = (EPOCH_MS // width) * width
    windows.observe(Counter.SENT, start)
    windows.observe(Counter.SENT, start + 10 * MINUTE_MS)
    windows.observe(Counter.SENT, start + 100 * MINUTE_MS)
    # 90 min is 4 buckets of 24 min ending at the head (bucket 4): buckets 1-4, which miss
    # bucket 0 and its two sends; a 100-minute span (5 buckets) reaches them.
    assert windows.rate_terms(Metric.HARD_BOUNCE, "1h", 30 * MINUTE_MS) == (0, 1)
    assert windows.rate_terms(Metric.HARD_BOUNCE, "1h", 40 * MINUTE_MS) == (0, 3)
    assert windows.rate_terms(Metric.HARD_BOUNCE, "1h") == (0, 1)


def test_lagged_denominator_falls_back_to_the_lifetime_when_no_ring_covers_it() -> None:
    """Past every ring's reach the denominator is the campaign's lifetime count."""
    windows = CampaignWindows(DEFAULT_WINDOWS)
    for hour in range(0, 40, 5):
        windows.observe(Counter.SENT, EPOCH_MS + hour * HOUR_MS)
    assert windows.lifetime[Counter.SENT] == 8
    assert windows.rate_terms(Metric.HARD_BOUNCE, "24h", 8 * HOUR_MS)[1] == 8
    # 30 h = 75 whole buckets ending at the head (35 h, bucket 87): from 5.2 h on, 6 sends.
    assert windows.rate_terms(Metric.HARD_BOUNCE, "24h", 6 * HOUR_MS)[1] == 6


# --- properties --------------------------------------------------------------------------------


Query = tuple[Counter, int, int]
"""A probe after an event: (counter, how far back `since` is, denominator lag), in ms."""


def _check_against_recount(
    specs: tuple[WindowSpec, ...], steps: list[tuple[Counter, int, Query | None]]
) -> None:
    """Apply the events one by one; after each, compare everything with a recount."""
    windows = CampaignWindows(specs)
    events: list[tuple[Counter, int]] = []
    for counter, at_ms, query in steps:
        late = windows.observe(counter, at_ms).late
        events.append((counter, at_ms))
        recount = Recount.of(specs, events)
        assert late is recount.late_flags[-1]
        assert windows.late_events == sum(recount.late_flags)
        assert windows.lifetime == recount.lifetime
        assert windows.watermark_ms == recount.watermark_ms
        for window in windows.windows:
            spec = window.spec
            assert recount.watermark_ms is not None
            assert window.head == recount.watermark_ms // spec.bucket_ms
            assert min(window.counts) >= 0
            expected = recount.ring(spec)
            empty = [0] * WINDOWED_COUNTERS
            for bucket, counts in _ring_slots(window).items():
                assert counts == expected.get(bucket, empty), (spec, bucket)
            assert window.sums == recount.sums(spec) == _proper_sums(window)
            if query is not None:  # also primes the running-sum cache that later adds update
                probe, back, lag = query
                since_ms = recount.watermark_ms - back
                assert window.sum_since(probe, since_ms) == recount.sum_since(spec, probe, since_ms)
                for metric in Metric:
                    assert windows.rate_terms(metric, spec.name, lag) == recount.rate_terms(
                        metric, spec, lag
                    )


QUERIES = st.one_of(
    st.none(), st.tuples(COUNTERS, st.integers(-5, 80), st.sampled_from([0, 1, 5, 17, 60]))
)


@settings(max_examples=200, deadline=None)
@given(
    specs=window_specs(),
    steps=st.lists(st.tuples(COUNTERS, st.integers(-20, 120), QUERIES), max_size=50),
)
def test_windows_equal_a_brute_force_recount_after_every_event(
    specs: tuple[WindowSpec, ...], steps: list[tuple[Counter, int, Query | None]]
) -> None:
    """After every event, all the windows hold equals a recount of the raw events.

    For any events, in any order and lateness: every ring slot, window sum, lifetime, lagged
    sum and rate term.
    """
    _check_against_recount(specs, steps)


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(EPOCH_MS, EPOCH_MS + 24 * HOUR_MS),
    steps=st.lists(
        st.tuples(COUNTERS, st.integers(-32 * HOUR_MS, 3 * HOUR_MS)),
        max_size=30,
    ),
)
def test_default_windows_match_a_brute_force_recount_at_epoch_scale(
    first: int, steps: list[tuple[Counter, int]]
) -> None:
    """With the production windows and real timestamps, everything equals a recount."""
    timeline: list[tuple[Counter, int, Query | None]] = [(Counter.SENT, first, None)]
    for index, (counter, offset) in enumerate(steps):
        query = (Counter.SENT, 25 * HOUR_MS, DEFAULT_LAGS[index % len(DEFAULT_LAGS)])
        timeline.append((counter, timeline[-1][1] + offset, query))
    _check_against_recount(DEFAULT_WINDOWS, timeline)
