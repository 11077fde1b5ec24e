"""Compact, versioned bytes for a campaign's detection state (what the stores keep).

A small JSON header plus the windows' ring counts as little-endian uint32, in a zstd frame
(states written before zstd are zlib streams and still read): an active campaign's windows
take well under 2 KB. The sequential rules' state and the bounce categories are optional header
fields: states written before them read back with every statistic at zero and no categories.
"""

from __future__ import annotations

import struct
import sys
import threading
import zlib
from array import array
from typing import Any

import msgspec
import zstandard

from processor.domain.campaign_state import CampaignState
from processor.domain.policy import Reading, Rule, SequentialRule, Severity
from processor.domain.sequential import SequentialReading, SequentialState, Track
from processor.domain.windows import (
    LIFETIME_COUNTERS,
    WINDOWED_COUNTERS,
    CampaignWindows,
    SlidingWindow,
    WindowSpec,
)
from schemas.control import Metric
from schemas.events import BounceCategory, BounceClass
from schemas.health import CampaignStatus

FORMAT_VERSION = 2
_HEADER_LENGTH = struct.Struct("<I")
# msgspec writes and reads the header several times faster than the json module; a campaign's
# state is encoded once per batch it appears in, which small live batches make frequent.
_encode_json = msgspec.json.Encoder().encode
_decode_json = msgspec.json.Decoder().decode

# zstd rather than zlib: zlib sets up (and the allocator often maps afresh) a quarter-megabyte
# of deflate state per call, 30-110 us for a 3-5 KB state, paid for every campaign in every
# batch; a reused zstd context takes 12-17 us, for the same size (docs/BENCHMARKS.md).
# The frame carries a checksum, as zlib's Adler-32 did: a corrupted state must not read back as
# different counts. Contexts are not thread-safe, hence one per thread.
_ZSTD_LEVEL = 3
_ZSTD_MAGIC = zstandard.FRAME_HEADER
_MAX_RAW_BYTES = 1 << 20
"""Larger than any real state by far; a frame claiming more is corrupt, not allocated."""


class _ZstdContexts(threading.local):
    """A compressor and a decompressor per thread, made on the thread's first use."""

    def __init__(self) -> None:
        self.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_checksum=True)
        self.decompressor = zstandard.ZstdDecompressor()


_zstd = _ZstdContexts()


def _decompress(blob: bytes) -> bytes:
    if not blob.startswith(_ZSTD_MAGIC):
        return zlib.decompress(blob)  # written by a version before zstd
    size = zstandard.frame_content_size(blob)
    if not 0 <= size <= _MAX_RAW_BYTES:  # -1: a frame without its size, which we never write
        raise StateDecodeError(f"corrupt campaign state: frame content size {size}")
    return _zstd.decompressor.decompress(blob)


class StateDecodeError(ValueError):
    """Stored campaign state could not be read back."""


def _reading_to_json(reading: Reading | SequentialReading | None) -> list[Any] | None:
    if reading is None:
        return None
    if isinstance(reading, SequentialReading):
        sequential = reading.rule
        return [
            _SEQUENTIAL_TAG,
            sequential.metric.value,
            sequential.p0,
            sequential.p1,
            sequential.h,
            sequential.warn_h,
            sequential.min_denominator,
            sequential.min_numerator,
            sequential.lag_ms,
            reading.statistic,
            int(reading.severity),
            reading.change_at_ms,
            reading.change_sends,
            reading.numerator,
            reading.denominator,
            reading.exposure,
        ]
    rule = reading.rule
    return [
        rule.metric.value,
        rule.window,
        rule.warn,
        rule.pause,
        rule.min_denominator,
        rule.min_numerator,
        rule.denominator_lag_ms,
        reading.numerator,
        reading.denominator,
        reading.rate,
        reading.wilson_lower_bound,
        int(reading.severity),
    ]


def _reading_from_json(raw: list[Any] | None) -> Reading | SequentialReading | None:
    if raw is None:
        return None
    if raw and raw[0] == _SEQUENTIAL_TAG:
        _, metric, p0, p1, h, warn_h, min_den, min_num, lag, *measured = raw
        statistic, severity, change_at, change_sends, num, den, exposure = measured
        sequential = SequentialRule(Metric(metric), p0, p1, h, warn_h, min_den, min_num, lag)
        return SequentialReading(
            sequential, statistic, Severity(severity), change_at, change_sends, num, den, exposure
        )
    metric, window, warn, pause, min_den, min_num, lag, num, den, rate, bound, severity = raw
    rule = Rule(Metric(metric), window, warn, pause, min_den, min_num, lag)
    return Reading(rule, num, den, rate, bound, Severity(severity))


_SPEC_FIELDS = 4  # name, length, buckets, history
_SEQUENTIAL_TAG = "seq"
"""First element of a stored sequential reading (a window reading starts with its metric)."""
_SEQUENTIAL_READING_FIELDS = 16  # see _reading_to_json
_TRACK_FIELDS = 11  # see _track_to_json
_RULE_KEY_FIELDS = 2  # metric, window
_READING_FIELDS = 12  # see _reading_to_json


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_HEADER_CHECKS: dict[str, Any] = {
    "wm": lambda v: v is None or _is_int(v),
    "late": _is_int,
    "life": lambda v: isinstance(v, list) and len(v) == LIFETIME_COUNTERS and all(map(_is_int, v)),
    "specs": lambda v: (
        isinstance(v, list)
        and all(
            isinstance(s, list)
            and len(s) == _SPEC_FIELDS
            and isinstance(s[0], str)
            and all(map(_is_int, s[1:]))
            for s in v
        )
    ),
    "heads": lambda v: isinstance(v, list) and all(h is None or _is_int(h) for h in v),
    "st": lambda v: isinstance(v, str),
    "ep": _is_int,
    "warn": lambda v: (
        isinstance(v, list)
        and all(
            isinstance(p, list)
            and len(p) == _RULE_KEY_FIELDS
            and all(isinstance(x, str) for x in p)
            for p in v
        )
    ),
    "rd": lambda v: (
        v is None
        or (isinstance(v, list) and len(v) == _READING_FIELDS and v[0] != _SEQUENTIAL_TAG)
        or (
            isinstance(v, list) and len(v) == _SEQUENTIAL_READING_FIELDS and v[0] == _SEQUENTIAL_TAG
        )
    ),
    "off": lambda v: isinstance(v, dict) and all(_is_int(o) for o in v.values()),
    "dup": _is_int,
    "dom": lambda v: (
        isinstance(v, dict)
        and all(isinstance(c, dict) and all(_is_int(n) for n in c.values()) for c in v.values())
    ),
}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_sequential(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and (value.get("s") is None or _is_int(value.get("s")))
        and isinstance(value.get("b"), list)
        and all(map(_is_int, value["b"]))
        and isinstance(value.get("t"), list)
        and len(value["t"]) == len(Metric)
        and all(_check_track(track) for track in value["t"])
        and (value.get("f") is None or _is_int(value["f"]))
    )


def _check_track(track: Any) -> bool:
    if not isinstance(track, list) or len(track) != _TRACK_FIELDS:
        return False
    at_step, bumps, exposure, change_at, sends, base_num, base_den, base_exp, domains = track[:9]
    return (
        all(map(_is_number, (at_step, exposure, base_exp, *track[9:])))
        and all(map(_is_int, (bumps, sends, base_num, base_den)))
        and (change_at is None or _is_int(change_at))
        and isinstance(domains, dict)
        and all(_is_int(n) for n in domains.values())
    )


def _track_to_json(track: Track) -> list[Any]:
    return [
        track.at_step,
        track.bumps,
        track.exposure,
        track.change_at_ms,
        track.change_sends,
        track.base_numerator,
        track.base_denominator,
        track.base_exposure,
        track.domains,
        track.h,
        track.up,
    ]


def _sequential_to_json(state: SequentialState) -> dict[str, Any]:
    return {
        "s": state.step_start_ms,
        "b": state.step_base,
        "t": [_track_to_json(track) for track in state.tracks],
        "f": state.sent_step_ms,
    }


def _sequential_from_json(raw: dict[str, Any] | None) -> SequentialState:
    if raw is None:  # written before sequential rules existed: every statistic at zero
        return SequentialState()
    tracks = [
        Track(
            at_step=float(t[0]),
            bumps=t[1],
            exposure=float(t[2]),
            change_at_ms=t[3],
            change_sends=t[4],
            base_numerator=t[5],
            base_denominator=t[6],
            base_exposure=float(t[7]),
            domains=t[8],
            h=float(t[9]),
            up=float(t[10]),
        )
        for t in raw["t"]
    ]
    # "f" is absent from a state written before it was kept (see SequentialState.sent_step_ms).
    return SequentialState(raw["s"], raw["b"], tracks, raw.get("f"))


def _check_bounce_categories(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(counts, dict) and all(_is_int(n) for n in counts.values())
        for counts in value.values()
    )


def _bounce_categories_from_json(
    raw: dict[str, dict[str, int]] | None,
) -> dict[BounceClass, dict[BounceCategory, int]]:
    if raw is None:  # written before bounce categories were kept
        return {}
    classes = {c.value: c for c in BounceClass}
    categories = {c.value: c for c in BounceCategory}
    # A class or category this version does not know was written by a newer one: the counts
    # are evidence, not detection, so they are left out rather than the state refused.
    return {
        classes[name]: {categories[c]: n for c, n in counts.items() if c in categories}
        for name, counts in raw.items()
        if name in classes
    }


def _check_header(header: Any) -> None:
    if not isinstance(header, dict):
        raise StateDecodeError("corrupt campaign state: header is not an object")
    for name, check in _HEADER_CHECKS.items():
        if name not in header or not check(header[name]):
            raise StateDecodeError(f"corrupt campaign state: field {name!r} is malformed")
    if "seq" in header and not _check_sequential(header["seq"]):
        raise StateDecodeError("corrupt campaign state: field 'seq' is malformed")
    if "bc" in header and not _check_bounce_categories(header["bc"]):
        raise StateDecodeError("corrupt campaign state: field 'bc' is malformed")
    if len(header["heads"]) != len(header["specs"]):
        raise StateDecodeError("corrupt campaign state: one head per window expected")


def encode_state(state: CampaignState) -> bytes:
    """Serialize a campaign's state."""
    windows = state.windows
    header = {
        "v": FORMAT_VERSION,
        "wm": windows.watermark_ms,
        "late": windows.late_events,
        "life": windows.lifetime,
        "specs": [
            [w.spec.name, w.spec.length_ms, w.spec.buckets, w.spec.history_ms]
            for w in windows.windows
        ],
        "heads": [w.head for w in windows.windows],
        "st": state.status.value,
        "ep": state.episode,
        "warn": sorted([m.value, w] for m, w in state.warned_rules),
        "rd": _reading_to_json(state.status_reading),
        "off": state.offsets,
        "dup": state.duplicates,
        "dom": {m.value: counts for m, counts in state.domains.items()},
    }
    if state.sequential.step_start_ms is not None:  # never stepped: nothing to keep
        header["seq"] = _sequential_to_json(state.sequential)
    if state.bounce_categories:  # no categorized bounce yet: nothing to keep
        header["bc"] = {
            c.value: {category.value: n for category, n in counts.items()}
            for c, counts in state.bounce_categories.items()
        }
    header_bytes = _encode_json(header)
    counts = array("I")
    for window in windows.windows:
        counts.extend(window.counts)
    if sys.byteorder != "little":
        counts.byteswap()
    raw = _HEADER_LENGTH.pack(len(header_bytes)) + header_bytes + counts.tobytes()
    return _zstd.compressor.compress(raw)


def decode_state(blob: bytes, specs: tuple[WindowSpec, ...]) -> CampaignState:
    """Read a campaign's state; windows stored under other specs start afresh."""
    try:
        raw = _decompress(blob)
        (length,) = _HEADER_LENGTH.unpack_from(raw)
        header = _decode_json(raw[_HEADER_LENGTH.size : _HEADER_LENGTH.size + length])
        if not isinstance(header, dict):
            raise StateDecodeError("corrupt campaign state: header is not an object")
        if header.get("v") != FORMAT_VERSION:
            raise StateDecodeError(f"unknown state format {header.get('v')!r}")
        counts = array("I")
        counts.frombytes(raw[_HEADER_LENGTH.size + length :])
        if sys.byteorder != "little":
            counts.byteswap()
        _check_header(header)
        stored_specs = tuple(WindowSpec(*spec) for spec in header["specs"])
        if stored_specs == specs:
            windows_list, cursor = [], 0
            for spec, head in zip(specs, header["heads"], strict=True):
                size = spec.ring_size * WINDOWED_COUNTERS
                windows_list.append(SlidingWindow(spec, head, counts[cursor : cursor + size]))
                cursor += size
            windows = CampaignWindows(
                specs,
                watermark_ms=header["wm"],
                windows=windows_list,
                lifetime=header["life"],
                late_events=header["late"],
            )
        else:
            windows = CampaignWindows(
                specs,
                watermark_ms=header["wm"],
                lifetime=header["life"],
                late_events=header["late"],
            )
            if windows.watermark_ms is not None:
                for window in windows.windows:
                    window.advance(windows.watermark_ms)
        return CampaignState(
            windows=windows,
            status=CampaignStatus(header["st"]),
            episode=header["ep"],
            warned_rules={(Metric(m), w) for m, w in header["warn"]},
            status_reading=_reading_from_json(header["rd"]),
            offsets=header["off"],
            duplicates=header["dup"],
            domains={Metric(m): counts for m, counts in header["dom"].items()},
            bounce_categories=_bounce_categories_from_json(header.get("bc")),
            sequential=_sequential_from_json(header.get("seq")),
        )
    except (
        zlib.error,
        zstandard.ZstdError,
        struct.error,
        msgspec.DecodeError,
        KeyError,
        TypeError,
        ValueError,
    ) as exc:
        if isinstance(exc, StateDecodeError):
            raise
        raise StateDecodeError(f"corrupt campaign state: {exc}") from exc
