"""Detection quality: false pauses on healthy campaigns, sends from onset to pause on bad ones.

Usage: `.venv/bin/python -m bench.quality [--size-cap N] [--large-stride K] [--jobs J]
[--quick]`.

The generator's quality mix (`quality_profiles(seed)`: 1,000 healthy and 200 bad campaigns,
sizes log-uniform in [50, 500k], realistic noise) is replayed through the embedded path
(`processor.services.replay.replay` on an `InMemoryStore`: the worker's DetectionService and the
default policy). Every campaign has its own tenant, so campaigns are independent and each is
replayed on its own (in J processes); its events are exactly `campaign_events(profile)`.

The full mix is ~150M events, too many for a routine run, so a deterministic subsample runs:
every campaign of at most `--size-cap` recipients, and of the larger ones every K-th in the
mix's order. A bad campaign's replay stops at its first pause (nothing after it is measured);
a healthy one is replayed to its end (or its first, false, pause).

"Sends from onset to pause" counts the recipients sent from the onset (the first recipient
sent under the bad rates) up to the pause's `decided_at` (event time), in recipients.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import math
import multiprocessing
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bench.common import machine_info, median, percentile, write_result
from processor.domain.policy import PolicyBook
from processor.ports.detection_store import InMemoryStore
from processor.ports.records import FILE_TOPIC, RawRecord
from processor.services.replay import replay
from processor.simulation.profiles import CampaignKind, CampaignProfile, quality_profiles
from processor.simulation.workload import campaign_events, expected_event_count, to_json_line
from schemas.base import campaign_key

if TYPE_CHECKING:
    from collections.abc import Iterator

START = datetime(2026, 1, 5, tzinfo=UTC)
SEED = 1
SIZE_BUCKETS = (50, 500, 5000, 50_000, 500_001)


class _PauseWatch(io.StringIO):
    """The replay's decision stream: notes the first campaign pause written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.pause: dict[str, Any] | None = None

    def write(self, text: str, /) -> int:
        if self.pause is None and '"scope":"campaign"' in text:
            for line in text.splitlines():
                body = json.loads(line) if line.startswith("{") else {}
                if body.get("scope") == "campaign":
                    self.pause = body
                    break
        return len(text)


def _records(profile: CampaignProfile, watch: _PauseWatch, counted: list[int]) -> Iterator[Any]:
    for number, event in enumerate(campaign_events(profile, SEED, START)):
        if watch.pause is not None:
            return
        counted[0] = number + 1
        yield RawRecord(FILE_TOPIC, 0, number, None, to_json_line(event).encode(), None)


def _sends_by(profile: CampaignProfile, at: datetime) -> int:
    """How many recipients were sent at or before `at` (event time)."""
    base = START.timestamp() + profile.start_offset_s
    elapsed_us = (at.timestamp() - base) * 1e6
    if elapsed_us < 0:
        return 0
    return min(profile.size, math.floor(elapsed_us / (1e6 / profile.send_rate_per_s)) + 1)


def run_one(job: tuple[int, CampaignProfile]) -> dict[str, Any]:
    """Replay one campaign; return its verdict."""
    index, profile = job
    watch = _PauseWatch()
    counted = [0]
    started = time.perf_counter()
    asyncio.run(
        replay(
            _records(profile, watch, counted),
            store=InMemoryStore(),
            policy_book=PolicyBook,
            out=watch,
            errors=io.StringIO(),
        )
    )
    row: dict[str, Any] = {
        "index": index,
        "campaign": campaign_key(profile.tenant_id, profile.campaign_id),
        "kind": profile.kind.value,
        "size": profile.size,
        "onset_index": profile.onset_index,
        "events_replayed": counted[0],
        "seconds": round(time.perf_counter() - started, 2),
        "paused": watch.pause is not None,
    }
    if watch.pause is not None:
        decided = datetime.fromisoformat(watch.pause["decided_at"])
        sends = _sends_by(profile, decided)
        evidence = watch.pause.get("evidence", {})
        row.update(
            sends_at_pause=sends,
            sends_after_onset=sends - profile.onset_index,
            onset_to_pause_s=round(
                decided.timestamp()
                - START.timestamp()
                - profile.start_offset_s
                - profile.onset_index / profile.send_rate_per_s,
                1,
            ),
            metric=f"{evidence.get('metric')}/{evidence.get('window')}",
        )
    return row


def select(profiles: list[CampaignProfile], size_cap: int, stride: int) -> list[int]:
    """Indexes of the subsample: all campaigns <= size_cap, every stride-th larger one (0: none)."""
    chosen, large = [], 0
    for index, profile in enumerate(profiles):
        if profile.size <= size_cap:
            chosen.append(index)
        else:
            if stride > 0 and large % stride == 0:
                chosen.append(index)
            large += 1
    return chosen


def _bucket(size: int) -> str:
    for low, high in itertools.pairwise(SIZE_BUCKETS):
        if low <= size < high:
            return f"{low}-{high - 1}"
    return "other"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """False pauses, misses and onset-to-pause sends of the replayed campaigns."""
    healthy = [r for r in rows if r["kind"] == CampaignKind.HEALTHY.value]
    bad = [r for r in rows if r["kind"] != CampaignKind.HEALTHY.value]
    false_pauses = [r for r in healthy if r["paused"]]
    early = [r for r in bad if r["paused"] and r["sends_after_onset"] < 0]
    caught = [r for r in bad if r["paused"] and r["sends_after_onset"] >= 0]
    missed = [r for r in bad if not r["paused"]]
    sends = [float(r["sends_after_onset"]) for r in caught]
    by_kind: dict[str, Any] = {}
    for kind in sorted({r["kind"] for r in bad}):
        mine = [float(r["sends_after_onset"]) for r in caught if r["kind"] == kind]
        by_kind[kind] = {
            "campaigns": sum(1 for r in bad if r["kind"] == kind),
            "caught": len(mine),
            "median_sends_after_onset": median(mine) if mine else None,
            "p95_sends_after_onset": percentile(mine, 95) if mine else None,
        }
    buckets = Counter(_bucket(r["size"]) for r in rows)
    return {
        "healthy_campaigns": len(healthy),
        "bad_campaigns": len(bad),
        "campaigns_by_size": dict(sorted(buckets.items(), key=lambda kv: int(kv[0].split("-")[0]))),
        "false_pauses": len(false_pauses),
        "false_pause_campaigns": [
            {k: r[k] for k in ("campaign", "size", "sends_at_pause", "metric")}
            for r in false_pauses
        ],
        "bad_paused_before_onset": len(early),
        "bad_missed": len(missed),
        "missed_campaigns": [
            {k: r[k] for k in ("campaign", "kind", "size", "onset_index")} for r in missed
        ],
        "bad_caught": len(caught),
        "median_sends_after_onset": median(sends) if sends else None,
        "p95_sends_after_onset": percentile(sends, 95) if sends else None,
        "median_onset_to_pause_s": median(float(r["onset_to_pause_s"]) for r in caught)
        if caught
        else None,
        "by_kind": by_kind,
        "events_replayed": sum(r["events_replayed"] for r in rows),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-cap", type=int, default=10_000)
    parser.add_argument("--large-stride", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="size cap 1,000, no larger ones")
    args = parser.parse_args(argv)
    if args.quick:
        args.size_cap, args.large_stride = 1000, 0
    profiles = quality_profiles(SEED)
    chosen = select(profiles, args.size_cap, args.large_stride)
    expected = sum(expected_event_count(profiles[i]) for i in chosen)
    print(
        f"replaying {len(chosen)} of {len(profiles)} campaigns "
        f"(all <= {args.size_cap:,} recipients, every {args.large_stride}th larger one), "
        f"<= {expected / 1e6:.1f}M events, {args.jobs} processes"
    )
    jobs = sorted(((i, profiles[i]) for i in chosen), key=lambda j: -j[1].size)
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        for row in pool.imap_unordered(run_one, jobs):
            rows.append(row)
            if row["kind"] != "healthy" or row["paused"] or len(rows) % 100 == 0:
                verdict = (
                    f"paused after {row.get('sends_after_onset')} sends past onset"
                    if row["paused"]
                    else "not paused"
                )
                print(f"  [{len(rows)}/{len(jobs)}] {row['kind']:16} {row['size']:>7} {verdict}")
    seconds = time.monotonic() - started
    rows.sort(key=lambda r: int(r["index"]))
    summary = summarize(rows)
    result = {
        "benchmark": "quality",
        "command": "python -m bench.quality " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(),
        "seed": SEED,
        "selection": {
            "size_cap": args.size_cap,
            "large_stride": args.large_stride,
            "campaigns": len(chosen),
            "of": len(profiles),
        },
        "seconds": round(seconds, 1),
        "summary": summary,
        "bar": "no false pauses",
        "bar_met": summary["false_pauses"] == 0,
        "campaigns": rows,
    }
    written = write_result("quality", result)
    print(
        f"\nquality: {summary['healthy_campaigns']} healthy, {summary['bad_campaigns']} bad; "
        f"false pauses {summary['false_pauses']} (bar: none -> "
        f"{'met' if summary['false_pauses'] == 0 else 'NOT met'}), "
        f"bad caught {summary['bad_caught']}, before onset {summary['bad_paused_before_onset']}, "
        f"missed {summary['bad_missed']}; sends from onset to pause median "
        f"{summary['median_sends_after_onset']}, p95 {summary['p95_sends_after_onset']}; "
        f"{summary['events_replayed'] / 1e6:.1f}M events in {seconds:.0f} s -> {written}"
    )
    return result


if __name__ == "__main__":
    main()
