"""Unit and property tests of the campaign state codec (processor.domain.codec)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
import zlib
from array import array
from typing import Any

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.domain.campaign_state import CampaignState, EventFacts
from processor.domain.codec import FORMAT_VERSION, StateDecodeError, decode_state, encode_state
from processor.domain.detector import observe
from processor.domain.policy import (
    DEFAULT_RULES,
    DEFAULT_SEQUENTIAL,
    DEFAULT_WINDOWS,
    Policy,
    Reading,
    Rule,
    SequentialRule,
    Severity,
    evaluate,
)
from processor.domain.sequential import SequentialReading, SequentialState
from processor.domain.windows import (
    WINDOWED_COUNTERS,
    CampaignWindows,
    Counter,
    SlidingWindow,
    WindowSpec,
)
from schemas.control import Metric
from schemas.events import BounceCategory, BounceClass
from schemas.health import CampaignStatus

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
T0 = 1_700_000_040_000
"""A realistic event time, aligned to a minute."""

DEFAULT = Policy(DEFAULT_RULES)
SPECS = (WindowSpec("short", 600, 6), WindowSpec("long", 3_000, 10, history_ms=900))
OTHER_SPECS = (WindowSpec("short", 600, 3), WindowSpec("long", 6_000, 10))
SMALL = Policy(
    (
        Rule(Metric.HARD_BOUNCE, "short", 0.05, 0.2, 5, 2, denominator_lag_ms=300),
        Rule(Metric.HARD_BOUNCE, "lifetime", 0.05, 0.15, 20, 3),
        Rule(Metric.COMPLAINT, "long", 0.05, 0.15, 10, 2, denominator_lag_ms=600),
        Rule(Metric.UNSUBSCRIBE, "long", 0.05, 0.2, 8, 2),
    )
)
COUNTER_CHOICES = (
    [Counter.SENT] * 4
    + [Counter.DELIVERED] * 3
    + [Counter.HARD_BOUNCE] * 2
    + [Counter.COMPLAINT, Counter.UNSUBSCRIBE, Counter.OPEN, Counter.DROPPED_SUPPRESSED]
    + [Counter.BLOCK]
)
BOUNCES = {Counter.HARD_BOUNCE, Counter.SOFT_BOUNCE, Counter.BLOCK}
CATEGORY_CHOICES = (None, *BounceCategory)
DOMAIN_CHOICES = ("gmail.com", "yahoo.com", "corp.example", "mail.ru", "xn--bcher-kva.example")
SOURCE_CHOICES = (None, "sendguard.events:0", "sendguard.events:11")


def _without_lag(
    reading: Reading | SequentialReading | None,
) -> Reading | SequentialReading | None:
    """The reading with its rule's denominator lag zeroed.

    The codec does not keep the lag (see the xfail test below), so the other equality checks
    compare readings without it.
    """
    if reading is None or isinstance(reading, SequentialReading):
        return reading
    return dataclasses.replace(
        reading, rule=dataclasses.replace(reading.rule, denominator_lag_ms=0)
    )


def _snapshot(state: CampaignState) -> dict[str, Any]:
    """Everything a state holds, as plain comparable values (see `_without_lag`)."""
    windows = state.windows
    return {
        "watermark": windows.watermark_ms,
        "late": windows.late_events,
        "lifetime": list(windows.lifetime),
        "windows": [(w.spec, w.head, list(w.counts), list(w.sums)) for w in windows.windows],
        "longest": windows.longest,
        "status": state.status,
        "episode": state.episode,
        "warned": set(state.warned_rules),
        "reading": _without_lag(state.status_reading),
        "offsets": dict(state.offsets),
        "duplicates": state.duplicates,
        "domains": {m: dict(c) for m, c in state.domains.items()},
        "bounce_categories": {c: dict(n) for c, n in state.bounce_categories.items()},
        "sequential": state.sequential,
    }


@st.composite
def states(draw: st.DrawFn, specs: tuple[WindowSpec, ...] = SPECS) -> CampaignState:
    """A campaign state reached through `observe`, with all its parts exercised.

    Counts, late events, warnings, pauses, resumes, Kafka offsets, domains, bounce categories
    and duplicates.
    """
    renames = {"short": specs[0].name, "long": specs[-1].name, "lifetime": "lifetime"}
    policy = Policy(tuple(dataclasses.replace(r, window=renames[r.window]) for r in SMALL.rules))
    state = CampaignState.fresh(specs)
    scale = draw(st.sampled_from([1, 1_000, 60_000]))  # ms per clock step: ring and epoch scale
    clock = T0 if scale == 60_000 else 10_000
    offsets = itertools.count(draw(st.integers(0, 2**40)))
    for burst in draw(st.lists(st.binary(min_size=7, max_size=7), max_size=30)):
        kind, advance, lag, domain, repeat, source, resume = burst
        if resume < 8:
            state.rearm(specs)
        clock += advance * scale // 2
        origin = SOURCE_CHOICES[source % len(SOURCE_CHOICES)]
        counter = COUNTER_CHOICES[kind % len(COUNTER_CHOICES)]
        category = CATEGORY_CHOICES[(domain + kind) % len(CATEGORY_CHOICES)]
        for _ in range(1 + repeat % 6):
            facts = EventFacts(
                event_id=f"e{clock}",
                counter=counter,
                at_ms=clock - lag * scale * 16,
                domain=DOMAIN_CHOICES[domain % len(DOMAIN_CHOICES)],
                source=origin,
                offset=None if origin is None else next(offsets),
                bounce_category=category if counter in BOUNCES else None,
            )
            observe(state, facts, policy, policy.z)
    state.duplicates = draw(st.integers(0, 10**6))
    return state


# --- round trips -------------------------------------------------------------------------------


def test_fresh_state_round_trips() -> None:
    """A never-seen campaign decodes to an equal fresh state."""
    fresh = CampaignState.fresh(DEFAULT_WINDOWS)
    blob = encode_state(fresh)
    assert _snapshot(decode_state(blob, DEFAULT_WINDOWS)) == _snapshot(fresh)
    assert encode_state(decode_state(blob, DEFAULT_WINDOWS)) == blob


@settings(max_examples=200, deadline=None)
@given(data=st.data(), specs=st.sampled_from([SPECS, DEFAULT_WINDOWS]))
def test_encode_decode_encode_is_byte_identical(
    data: st.DataObject, specs: tuple[WindowSpec, ...]
) -> None:
    """Decoding a state's bytes gives an equal state whose bytes are the same bytes."""
    state = data.draw(states(specs))
    blob = encode_state(state)
    decoded = decode_state(blob, specs)
    assert _snapshot(decoded) == _snapshot(state)
    assert encode_state(decoded) == blob


def test_status_reading_round_trips_with_its_rules_denominator_lag() -> None:
    """The rule behind a stored warning or pause reading comes back exactly, lag included."""
    rule = Rule(Metric.COMPLAINT, "24h", 0.0005, 0.001, 1000, 5, denominator_lag_ms=600)
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    state.status = CampaignStatus.WARNING
    state.status_reading = evaluate(rule, 3, 2000, DEFAULT.z)
    decoded = decode_state(encode_state(state), DEFAULT_WINDOWS)
    assert decoded.status_reading == state.status_reading


def test_encoding_does_not_depend_on_warned_rule_insertion_order() -> None:
    """Warned rules are a set: any insertion order encodes to the same bytes."""
    keys = [(Metric.UNSUBSCRIBE, "1h"), (Metric.COMPLAINT, "24h"), (Metric.HARD_BOUNCE, "1h")]
    one, other = CampaignState.fresh(DEFAULT_WINDOWS), CampaignState.fresh(DEFAULT_WINDOWS)
    one.warned_rules.update(keys)
    other.warned_rules.update(reversed(keys))
    assert encode_state(one) == encode_state(other)


# --- other window specs ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(state=states())
def test_decoding_under_other_specs_starts_windows_afresh_but_keeps_the_rest(
    state: CampaignState,
) -> None:
    """Under other window specs the windows are empty at the stored watermark; all else stays."""
    decoded = decode_state(encode_state(state), OTHER_SPECS)
    windows = decoded.windows
    assert [w.spec for w in windows.windows] == list(OTHER_SPECS)
    for window in windows.windows:
        assert window.sums == [0] * WINDOWED_COUNTERS
        assert list(window.counts) == [0] * (window.spec.buckets * WINDOWED_COUNTERS)
        expected_head = (
            None
            if state.windows.watermark_ms is None
            else window.bucket_of(state.windows.watermark_ms)
        )
        assert window.head == expected_head
    kept = _snapshot(decoded)
    original = _snapshot(state)
    for key in ("windows", "longest"):
        del kept[key], original[key]
    assert kept == original


def test_after_a_spec_change_events_older_than_the_new_longest_window_are_late() -> None:
    """The fresh windows keep the stored watermark, so lateness is judged against it."""
    state = CampaignState.fresh(SPECS)
    observe(state, EventFacts("e1", Counter.SENT, 100_000, "a.com"), SMALL, SMALL.z)
    decoded = decode_state(encode_state(state), OTHER_SPECS)
    observe(decoded, EventFacts("e2", Counter.SENT, 100_000 - 7_000, "a.com"), SMALL, SMALL.z)
    observe(decoded, EventFacts("e3", Counter.SENT, 100_000 - 5_000, "a.com"), SMALL, SMALL.z)
    assert decoded.windows.late_events == 1
    assert decoded.windows.window("long")[Counter.SENT] == 1
    assert decoded.windows.lifetime[Counter.SENT] == 2


def test_decoding_a_paused_state_under_new_specs_keeps_it_paused() -> None:
    """Status, episode and the pause reading survive a change of window specs."""
    state = CampaignState.fresh(SPECS)
    for i in range(30):
        counter = Counter.HARD_BOUNCE if i % 2 else Counter.SENT
        observe(state, EventFacts(f"e{i}", counter, 10_000 + i, "a.com"), SMALL, SMALL.z)
    assert state.status is CampaignStatus.PAUSED
    decoded = decode_state(encode_state(state), OTHER_SPECS)
    assert decoded.status is CampaignStatus.PAUSED
    assert decoded.episode == 1
    assert _without_lag(decoded.status_reading) == _without_lag(state.status_reading)
    assert decoded.windows.lifetime == state.windows.lifetime


# --- corrupt bytes -----------------------------------------------------------------------------


def _raw(blob: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(blob)


def _raw_parts(state: CampaignState) -> tuple[dict[str, Any], bytes]:
    raw = _raw(encode_state(state))
    (length,) = struct.unpack_from("<I", raw)
    return json.loads(raw[4 : 4 + length]), raw[4 + length :]


def _blob(header: Any, counts: bytes) -> bytes:
    header_bytes = json.dumps(header).encode()
    return _compress(struct.pack("<I", len(header_bytes)) + header_bytes + counts)


def _compress(raw: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True).compress(raw)


def _huge_frame() -> bytes:
    """A valid frame, a few bytes long, whose content (zeros) is larger than any state."""
    return _compress(bytes(2 << 20))


def _busy_state() -> CampaignState:
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    for i in range(300):
        counter = Counter.HARD_BOUNCE if i % 7 == 0 else Counter.SENT
        category = BounceCategory.BAD_MAILBOX if counter is Counter.HARD_BOUNCE else None
        at_ms = T0 + i * 1_000
        facts = EventFacts(f"e{i}", counter, at_ms, "gmail.com", "events:0", i, category)
        observe(state, facts, DEFAULT, DEFAULT.z)
    return state


BUSY_BLOB = encode_state(_busy_state())
HEADER, COUNTS = _raw_parts(_busy_state())


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"definitely not zlib",
        BUSY_BLOB[:-1],
        BUSY_BLOB[: len(BUSY_BLOB) // 2],
        BUSY_BLOB[:2],
        _compress(b"\x01\x00"),  # shorter than the header length field
        _compress(struct.pack("<I", 10_000) + b'{"v":1}'),  # header length past the end
        _compress(struct.pack("<I", 3) + b"{x}"),  # header not JSON
        _compress(struct.pack("<I", 2) + b"\xff\xfe"),  # header not UTF-8
        zstandard.FRAME_HEADER + b"\x00" * 8,  # a zstd magic, then no valid frame
        zstandard.ZstdCompressor(write_content_size=False).compress(b"\x01\x00"),  # no size
        _huge_frame(),
        zlib.compress(_raw(BUSY_BLOB))[:-1],  # a legacy zlib state, truncated
        _blob({**HEADER, "v": FORMAT_VERSION + 1}, COUNTS),
        _blob({k: v for k, v in HEADER.items() if k != "specs"}, COUNTS),
        _blob({k: v for k, v in HEADER.items() if k != "dom"}, COUNTS),
        _blob(HEADER, COUNTS[:-1]),  # counts not a whole number of uint32
        _blob(HEADER, COUNTS[:-4]),  # one count missing
        _blob(HEADER, b""),
        _blob({**HEADER, "heads": HEADER["heads"][:1]}, COUNTS),
        _blob({**HEADER, "specs": [["1h", 3_600_000, 0, 0], HEADER["specs"][1]]}, COUNTS),
        _blob({**HEADER, "specs": [spec[:3] for spec in HEADER["specs"]]}, COUNTS),
        _blob({**HEADER, "st": "sleeping"}, COUNTS),
        _blob({**HEADER, "warn": [["bounciness", "1h"]]}, COUNTS),
        _blob({**HEADER, "rd": [1, 2, 3]}, COUNTS),
        _blob({**HEADER, "dom": {"spam": {}}}, COUNTS),
        _blob({**HEADER, "dom": []}, COUNTS),
        _blob({**HEADER, "life": "abcdefghijk"}, COUNTS),
        _blob({**HEADER, "life": HEADER["life"][:-1]}, COUNTS),
        _blob({**HEADER, "heads": ["a", "b"]}, COUNTS),
        _blob({**HEADER, "wm": "late"}, COUNTS),
        _blob({**HEADER, "off": [1]}, COUNTS),
        _blob({**HEADER, "ep": True}, COUNTS),
        _blob({**HEADER, "specs": [[*spec[:3], -1] for spec in HEADER["specs"]]}, COUNTS),
        _blob({**HEADER, "bc": []}, COUNTS),
        _blob({**HEADER, "bc": {"hard": {"bad_mailbox": "12"}}}, COUNTS),
        _blob({**HEADER, "bc": {"hard": [12]}}, COUNTS),
    ],
    ids=[
        "empty",
        "not-zlib",
        "truncated-by-one",
        "truncated-half",
        "zstd-header-only",
        "no-header-length",
        "header-length-past-end",
        "header-not-json",
        "header-not-utf8",
        "zstd-magic-only",
        "zstd-without-content-size",
        "zstd-claims-two-mib",
        "legacy-zlib-truncated",
        "future-version",
        "missing-specs",
        "missing-domains",
        "ragged-counts",
        "count-missing",
        "no-counts",
        "heads-missing",
        "invalid-spec",
        "three-field-specs",
        "unknown-status",
        "unknown-warned-metric",
        "short-reading",
        "unknown-domain-metric",
        "domains-list",
        "lifetime-string",
        "lifetime-short",
        "heads-strings",
        "watermark-string",
        "offsets-list",
        "episode-bool",
        "negative-history",
        "bounce-categories-list",
        "bounce-category-count-string",
        "bounce-class-counts-list",
    ],
)
def test_corrupt_bytes_raise_state_decode_error(blob: bytes) -> None:
    """Unreadable or inconsistent state bytes raise StateDecodeError, nothing else."""
    with pytest.raises(StateDecodeError):
        decode_state(blob, DEFAULT_WINDOWS)


def test_a_state_written_with_zlib_by_an_earlier_version_still_decodes() -> None:
    """States stored before the switch to zstd (the same bytes, zlib-compressed) read back."""
    legacy = zlib.compress(_raw(BUSY_BLOB), 1)
    assert _snapshot(decode_state(legacy, DEFAULT_WINDOWS)) == _snapshot(
        decode_state(BUSY_BLOB, DEFAULT_WINDOWS)
    )


def test_corrupt_header_fixtures_are_otherwise_valid() -> None:
    """The unmodified header and counts used above do decode (the fixtures are sound)."""
    assert _snapshot(decode_state(_blob(HEADER, COUNTS), DEFAULT_WINDOWS)) == _snapshot(
        decode_state(BUSY_BLOB, DEFAULT_WINDOWS)
    )


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, len(BUSY_BLOB) - 1))
def test_any_truncation_raises_state_decode_error(cut: int) -> None:
    """Every strict prefix of valid state bytes is rejected."""
    with pytest.raises(StateDecodeError):
        decode_state(BUSY_BLOB[:cut], DEFAULT_WINDOWS)


@settings(max_examples=200, deadline=None)
@given(position=st.integers(0, len(BUSY_BLOB) - 1), mask=st.integers(1, 255))
def test_a_flipped_byte_never_reads_back_as_a_different_state(position: int, mask: int) -> None:
    """A corrupted byte raises StateDecodeError or, if the frame absorbs it, changes nothing.

    Some flips are harmless to zstd (a header bit it doesn't need); the frame's content
    checksum guarantees that anything that decodes reads back the same state.
    """
    blob = bytearray(BUSY_BLOB)
    blob[position] ^= mask
    try:
        decoded = decode_state(bytes(blob), DEFAULT_WINDOWS)
    except StateDecodeError:
        return
    assert encode_state(decoded) == BUSY_BLOB


@pytest.mark.parametrize(
    "header",
    [[], None, 7, "header"],
    ids=["list", "null", "number", "string"],
)
def test_non_object_json_raises_state_decode_error(header: Any) -> None:
    """A header of the wrong JSON type is corrupt state like any other."""
    with pytest.raises(StateDecodeError):
        decode_state(_blob(header, COUNTS), DEFAULT_WINDOWS)


# --- size --------------------------------------------------------------------------------------

SIZE_LIMIT = 2048
TOP_PROVIDERS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com")


def _jitter(*key: int) -> float:
    """A deterministic pseudo-random fraction in [0, 1) (Knuth's multiplicative hash)."""
    value = 0
    for part in key:
        value = (value * 1_000_003 + part) * 2_654_435_761 % 2**32
    return value / 2**32


def _active_state(sends_per_minute: int) -> CampaignState:
    """A busy campaign: every ring slot of both default windows holds every windowed counter.

    That includes the 24h ring's history. Ring counts are set directly at realistic ratios
    (97% delivered, 1.5% hard bounces, 0.05% complaints, 0.3% unsubscribes, each at least 1),
    with +-20% jitter per bucket; five provider domains per metric, offsets on 12
    partitions, and a WARNING reading.
    """
    windows = []
    for index, spec in enumerate(DEFAULT_WINDOWS):
        minutes = spec.bucket_ms // MINUTE_MS
        counts = []
        for bucket in range(spec.ring_size):
            sent = round(sends_per_minute * minutes * (0.8 + 0.4 * _jitter(index, bucket, 0)))
            delivered = round(sent * (0.96 + 0.02 * _jitter(index, bucket, 1)))
            rates = [(0.015, 2), (0.0005, 3), (0.003, 4)]
            numerators = [
                max(1, round(delivered * rate * (0.5 + _jitter(index, bucket, salt))))
                for rate, salt in rates
            ]
            counts += [sent, delivered, *numerators]
        windows.append(SlidingWindow(spec, T0 // spec.bucket_ms, array("I", counts)))
    lifetime = [3 * s for s in windows[-1].sums] + [50_000, 900, 100_000, 4_000_000, 300_000, 12]
    state = CampaignState(
        CampaignWindows(DEFAULT_WINDOWS, watermark_ms=T0, windows=windows, lifetime=lifetime),
        status=CampaignStatus.WARNING,
        episode=1,
        offsets={f"sendguard.events:{p}": 123_456_789 + p for p in range(12)},
        duplicates=4321,
    )
    for metric in Metric:
        for rank, domain in enumerate(TOP_PROVIDERS):
            state.domains.setdefault(metric, {})[domain] = (5 - rank) * sends_per_minute
    rule = DEFAULT_RULES[0]
    numerator, denominator = state.windows.rate_terms(rule.metric, rule.window)
    state.status_reading = evaluate(rule, numerator, denominator, DEFAULT.z)
    state.warned_rules.add((rule.metric, rule.window))
    return state


@pytest.mark.parametrize("sends_per_minute", [10, 1_000, 2_000])
def test_active_campaign_with_every_bucket_filled_encodes_under_2kb(
    sends_per_minute: int,
) -> None:
    """A busy campaign whose 1h and 24h buckets are all non-zero takes under 2048 bytes."""
    state = _active_state(sends_per_minute)
    for window in state.windows.windows:
        assert min(window.counts) > 0
    blob = encode_state(state)
    assert len(blob) < SIZE_LIMIT
    assert encode_state(decode_state(blob, DEFAULT_WINDOWS)) == blob


def test_campaign_built_by_observe_with_every_bucket_filled_encodes_under_2kb() -> None:
    """Built event by event over 32h (every counter in every ring slot), under 2 KB."""
    state = CampaignState.fresh(DEFAULT_WINDOWS)
    offsets = itertools.count()
    hours = 32  # the 24h ring reaches 24h + 7.2h back
    for minute in range(hours * 60):
        spare = minute % 24 != 0 and minute < (hours - 1) * 60  # the last hour: every minute
        per_minute = [(Counter.SENT, 3), (Counter.DELIVERED, 3)]
        if not spare:
            numerators = [Counter.HARD_BOUNCE, Counter.COMPLAINT, Counter.UNSUBSCRIBE]
            per_minute += [(counter, 1) for counter in numerators]
        for counter, repeat in per_minute:
            for second in range(repeat):
                facts = EventFacts(
                    f"m{minute}-{counter}-{second}",
                    counter,
                    T0 + minute * MINUTE_MS + second * 1_000,
                    TOP_PROVIDERS[minute % len(TOP_PROVIDERS)],
                    f"sendguard.events:{minute % 12}",
                    next(offsets),
                )
                observe(state, facts, DEFAULT, DEFAULT.z)
    for window in state.windows.windows:
        assert min(window.counts) > 0, window.spec.name
    assert len(encode_state(state)) < SIZE_LIMIT


def test_a_state_stored_before_sequential_rules_reads_back_with_every_statistic_at_zero() -> None:
    """A header without 'seq' (written by an earlier version) decodes to a fresh CUSUM."""
    state = CampaignState.fresh(SPECS)
    observe(state, EventFacts("e1", Counter.SENT, 10_000, "a.com"), SMALL, SMALL.z)
    blob = encode_state(state)
    raw = zstandard.ZstdDecompressor().decompress(blob)
    (length,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + length])
    assert "seq" not in header  # a windows-only policy never steps the sequential state
    assert decode_state(blob, SPECS).sequential == SequentialState()


def test_a_sequential_state_stored_before_its_tail_clock_reads_back_without_one() -> None:
    """A 'seq' header without 'f' (the last step with sends) decodes with the clock unset.

    Its tail clock then starts at the campaign's next send (SequentialState.sent_step_ms).
    """
    state = CampaignState.fresh(SPECS)
    policy = Policy((), sequential=DEFAULT_SEQUENTIAL)
    step = state.step_ms
    for at in (0, step, 2 * step):  # three steps: the second one sees the first one's send
        observe(state, EventFacts(f"e{at}", Counter.SENT, 10_000 + at, "a.com"), policy, policy.z)
    assert state.sequential.sent_step_ms == 10_000 + step
    assert decode_state(encode_state(state), SPECS).sequential.sent_step_ms == 10_000 + step
    raw = zstandard.ZstdDecompressor().decompress(encode_state(state))
    (length,) = struct.unpack_from("<I", raw)
    header = json.loads(raw[4 : 4 + length])
    del header["seq"]["f"]
    text = json.dumps(header).encode()
    older = zstandard.ZstdCompressor().compress(
        struct.pack("<I", len(text)) + text + raw[4 + length :]
    )
    decoded = decode_state(older, SPECS).sequential
    assert decoded.sent_step_ms is None
    assert decoded.tracks == state.sequential.tracks


def test_a_sequential_status_reading_round_trips() -> None:
    """A campaign warned or paused by a sequential rule keeps that reading across the codec."""
    rule = SequentialRule(Metric.COMPLAINT, 0.001, 0.003, 10.0, 6.0, 1000, 5, 3_600_000)
    state = CampaignState.fresh(SPECS)
    state.status = CampaignStatus.PAUSED
    state.status_reading = SequentialReading(
        rule, 10.5, Severity.PAUSE, 60_000, 1234, 12, 2400, 2311.25
    )
    decoded = decode_state(encode_state(state), SPECS)
    assert decoded.status_reading == state.status_reading


def test_bounce_categories_round_trip_and_a_state_without_them_reads_back_empty() -> None:
    """Categories survive the codec; a header without 'bc' (an earlier version) reads as none."""
    state = _busy_state()
    assert state.bounce_categories == {BounceClass.HARD: {BounceCategory.BAD_MAILBOX: 43}}
    assert decode_state(encode_state(state), DEFAULT_WINDOWS).bounce_categories == (
        state.bounce_categories
    )
    assert HEADER["bc"] == {"hard": {"bad_mailbox": 43}}
    older = {k: v for k, v in HEADER.items() if k != "bc"}
    decoded = decode_state(_blob(older, COUNTS), DEFAULT_WINDOWS)
    assert decoded.bounce_categories == {}
    assert decoded.domains == state.domains


def test_a_campaign_without_categorized_bounces_stores_no_bounce_categories() -> None:
    """No 'bc' field is written until a bounce with a category is counted."""
    state = CampaignState.fresh(SPECS)
    observe(state, EventFacts("e1", Counter.HARD_BOUNCE, 10_000, "a.com"), SMALL, SMALL.z)
    assert state.bounce_categories == {}
    header, _ = _raw_parts(state)
    assert "bc" not in header


def test_bounce_classes_and_categories_unknown_to_this_version_are_left_out() -> None:
    """Counts written by a newer version that knows more categories do not refuse the state."""
    header = {**HEADER, "bc": {"hard": {"bad_mailbox": 4, "alien": 2}, "bouncy": {"other": 1}}}
    decoded = decode_state(_blob(header, COUNTS), DEFAULT_WINDOWS)
    assert decoded.bounce_categories == {BounceClass.HARD: {BounceCategory.BAD_MAILBOX: 4}}
