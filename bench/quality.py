"""Detection quality: false pauses on healthy campaigns, sends from onset to pause on bad ones.

Usage: `.venv/bin/python -m bench.quality [--size-cap N] [--large-stride K] [--jobs J]
[--quick | --full]`.

Two mixes: the generator's quality mix (`quality_profiles(seed)`: 1,000 healthy and 200 bad
campaigns, sizes log-uniform in [50, 500k]) and the drift mix (`drift_profiles(seed)`: 120
healthy campaigns with rising bounces, weekday complaint noise and an hour of one provider's
deferrals). Each campaign's events (`campaign_events(profile)`) are generated once and fed, in
batches of 2,000 as the replay does, to two detectors side by side: the old rules (the windows
alone) and the new ones (windows and sequential rules, the default policy). They run the domain
code of the worker and of `sendguard replay` (`observe_run`, the very function the detection
service folds each campaign's batch with; its decisions do not depend on batch boundaries, a
property tested in tests/unit/domain); the service's deduplication and storage have nothing to
do here (the generator makes no duplicates) and are left out so both policies share one pass.
The time each spends in `observe_run` gives the per-event cost of each policy.

The full mix is ~150M events; a deterministic subsample runs by default: every campaign of at
most `--size-cap` recipients, and of the larger ones every K-th in the mix's order (`--full`:
all of them; `--quick`: bad campaigns up to 20,000 recipients, healthy ones up to 3,000 and
every 50th larger one, and the drift mix's campaigns up to 20,000). A detector stops at its
first pause; a campaign stops when both have paused.

"Sends from onset to pause" counts the recipients sent from the onset (the first recipient
sent under the bad rates) up to the pause's trigger (event time). A bad campaign whose
recipients after onset are fewer than the sequential rule's floor (200 sends for bounces, 1,000
deliveries for complaints, 200 for unsubscribes) cannot be caught by design and is reported
apart, not counted as missed.

The feedback bound of a caught campaign is the part of its sends onset->pause that the feedback
lag alone explains: the sends made before the first post-onset recipient's bounce, complaint or
unsubscribe arrived (no detector can pause sooner), and before the sequential rule's floor of
them (10 bounces, 5 complaints, 10 unsubscribes) had. What lies beyond the latter is the
detector's own evidence-gathering.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import multiprocessing
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import RESULTS, machine_info, median, percentile, write_result
from processor.domain.campaign_state import CampaignState, EventFacts, PauseDecision, counter_for
from processor.domain.detector import observe_run
from processor.domain.policy import DEFAULT_RULES, PolicyBook
from processor.domain.sequential import SequentialReading
from processor.domain.windows import RATE_TERMS
from processor.ports.records import to_ms
from processor.simulation.profiles import (
    CampaignKind,
    CampaignProfile,
    drift_profiles,
    quality_profiles,
)
from processor.simulation.workload import campaign_events, expected_event_count
from schemas.base import campaign_key
from schemas.control import Metric

if TYPE_CHECKING:
    from processor.domain.policy import Policy

START = datetime(2026, 1, 5, tzinfo=UTC)
SEED = 1
BATCH = 2000
NEW = PolicyBook().default
OLD = NEW.without_sequential()
POLICIES: dict[str, Policy] = {"old": OLD, "new": NEW}
assert OLD.rules == DEFAULT_RULES  # noqa: S101  # the old rules are today's windows

POST_ONSET_BANDS = (0, 200, 1000, 10_000, 100_000, 1_000_000)
RATE_BANDS = {
    CampaignKind.BAD_LIST.value: ("hard_bounce", (0.06, 0.1, 0.2, 0.31)),
    CampaignKind.COMPLAINT_WAVE.value: ("complaint", (0.003, 0.006, 0.01, 0.021)),
    CampaignKind.UNSUBSCRIBE_WAVE.value: ("unsubscribe", (0.06, 0.09, 0.12, 0.151)),
}
COMPLAINT_DELAY_S = 3 * 3600
"""The generator's median complaint delay: sends made within it after onset precede any
complaint about the onset's recipients (the part of the delay the feedback lag explains)."""
KIND_METRIC = {
    CampaignKind.BAD_LIST.value: Metric.HARD_BOUNCE,
    CampaignKind.COMPLAINT_WAVE.value: Metric.COMPLAINT,
    CampaignKind.UNSUBSCRIBE_WAVE.value: Metric.UNSUBSCRIBE,
}
"""The metric each bad kind drives (the one whose feedback is the evidence)."""
FEEDBACK_FLOOR = {rule.metric: rule.min_numerator for rule in NEW.sequential}
"""How many post-onset numerator events the sequential rule needs at the least (its floor)."""
FLOOR = {
    kind: rule.min_denominator
    for rule in NEW.sequential
    for kind, metric in KIND_METRIC.items()
    if rule.metric is metric
}
"""Recipients after onset below which the sequential rule's floor cannot be met."""
ELIGIBLE_POST_ONSET = 1000
"""The issue's goal counts bad campaigns with at least this many recipients after onset."""


def _sends_by(profile: CampaignProfile, at_ms: int) -> int:
    """How many recipients were sent at or before `at_ms` (event time)."""
    base_ms = START.timestamp() * 1000 + profile.start_offset_s * 1000
    elapsed_us = (at_ms - base_ms) * 1000
    if elapsed_us < 0:
        return 0
    return min(profile.size, math.floor(elapsed_us / (1e6 / profile.send_rate_per_s)) + 1)


class _Evidence:
    """Arrival times of the numerator events about post-onset recipients, up to the floor."""

    def __init__(self, profile: CampaignProfile) -> None:
        metric = KIND_METRIC.get(profile.kind.value)
        self.counter = RATE_TERMS[metric][0] if metric is not None else None
        self.needed = FEEDBACK_FLOOR.get(metric, 1) if metric is not None else 0
        self.onset = profile.onset_index
        self.arrivals: list[int] = []

    def see(self, event_id: str, counter: int, at_ms: int) -> None:
        """Note an event if it is evidence about a post-onset recipient."""
        if (
            counter == self.counter
            and len(self.arrivals) < self.needed
            and int(event_id.rsplit(":", 2)[1]) >= self.onset  # ids are tenant:campaign:i:type
        ):
            self.arrivals.append(at_ms)


def run_one(job: tuple[str, int, CampaignProfile]) -> dict[str, Any]:
    """Feed one campaign to both policies; return their verdicts and time spent."""
    profile = job[2]
    states = {name: CampaignState.fresh(NEW_WINDOWS) for name in POLICIES}
    pauses: dict[str, PauseDecision | None] = dict.fromkeys(POLICIES)
    spent = dict.fromkeys(POLICIES, 0.0)
    events = 0
    batch: list[EventFacts] = []
    evidence = _Evidence(profile)

    def feed() -> None:
        for name, policy in POLICIES.items():
            if pauses[name] is not None:
                continue
            started = time.perf_counter()
            for decision in _observe(states[name], batch, policy):
                if isinstance(decision, PauseDecision) and pauses[name] is None:
                    pauses[name] = decision
            spent[name] += time.perf_counter() - started
        batch.clear()

    for event in campaign_events(profile, SEED, START):
        counter = counter_for(event.type, event.bounce_class)
        at_ms = to_ms(event.occurred_at)
        evidence.see(event.event_id, counter, at_ms)
        batch.append(EventFacts(event.event_id, counter, at_ms, event.recipient.domain))
        events += 1
        if len(batch) >= BATCH:
            feed()
            if all(pause is not None for pause in pauses.values()):
                break
    if batch:
        feed()
    return _row(job, events, spent, pauses, evidence)


def _row(
    job: tuple[str, int, CampaignProfile],
    events: int,
    spent: dict[str, float],
    pauses: dict[str, PauseDecision | None],
    evidence: _Evidence,
) -> dict[str, Any]:
    mix, index, profile = job
    arrivals = evidence.arrivals
    # The feedback bound: sends made after onset before the first, and before the floor-th,
    # numerator event about a post-onset recipient arrived. No detector can pause before the
    # first; none with the sequential rule's floor before the second. None: not (yet) arrived.
    bound = {
        "first": _sends_by(profile, arrivals[0]) - profile.onset_index if arrivals else None,
        "floor": (
            _sends_by(profile, arrivals[-1]) - profile.onset_index
            if arrivals and len(arrivals) == evidence.needed
            else None
        ),
    }
    bad_rate = _bad_rate(profile)
    row: dict[str, Any] = {
        "mix": mix,
        "index": index,
        "campaign": campaign_key(profile.tenant_id, profile.campaign_id),
        "kind": profile.kind.value,
        "size": profile.size,
        "onset_index": profile.onset_index,
        "post_onset": profile.size - profile.onset_index,
        "bad_rate": bad_rate,
        "expected_post_onset_numerators": (
            round((profile.size - profile.onset_index) * bad_rate, 1) if bad_rate else None
        ),
        "send_rate_per_s": profile.send_rate_per_s,
        "feedback_bound": bound,
        "events": events,
        "seconds": spent,
    }
    for name, pause in pauses.items():
        row[name] = _verdict(profile, pause)
    return row


NEW_WINDOWS = PolicyBook().windows


def _observe(state: CampaignState, batch: list[EventFacts], policy: Policy) -> Any:
    return observe_run(state, batch, policy, policy.z)


def _bad_rate(profile: CampaignProfile) -> float | None:
    band = RATE_BANDS.get(profile.kind.value)
    if band is None or profile.bad_rates is None:
        return None
    return float(getattr(profile.bad_rates, band[0]))


def _verdict(profile: CampaignProfile, pause: PauseDecision | None) -> dict[str, Any]:
    if pause is None:
        return {"paused": False}
    at_ms = pause.trigger.at_ms
    sends = _sends_by(profile, at_ms)
    onset_ms = (
        START.timestamp() + profile.start_offset_s + profile.onset_index / profile.send_rate_per_s
    ) * 1000
    reading = pause.reading
    if isinstance(reading, SequentialReading):
        rule = f"{reading.rule.metric.value}/sequential"
    else:
        rule = f"{reading.rule.metric.value}/{reading.rule.window}"
    return {
        "paused": True,
        "sends_at_pause": sends,
        "sends_after_onset": sends - profile.onset_index,
        "onset_to_pause_s": round((at_ms - onset_ms) / 1000, 1),
        "rule": rule,
    }


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


def quick_select(profiles: list[CampaignProfile]) -> list[int]:
    """Bad campaigns up to 20k recipients, healthy ones up to 3k and every 50th larger one."""
    bad = [i for i, p in enumerate(profiles) if p.kind is not CampaignKind.HEALTHY]
    healthy = [i for i, p in enumerate(profiles) if p.kind is CampaignKind.HEALTHY]
    chosen = {i for i in bad if profiles[i].size <= 20_000}
    small = [i for i in healthy if profiles[i].size <= 3000]
    large = [i for i in healthy if profiles[i].size > 3000]
    chosen.update(small)
    chosen.update(large[::50])
    return sorted(chosen)


def _band(value: float, edges: tuple[float, ...]) -> str:
    for low, high in itertools.pairwise(edges):
        if low <= value < high:
            return f"{low:g}-{high:g}"
    return "other"


def _stats(values: list[float]) -> dict[str, float | None]:
    return {
        "median": median(values) if values else None,
        "p95": percentile(values, 95) if values else None,
    }


def summarize(rows: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    """One policy's verdicts: false pauses, catches by kind, size band and rate band."""
    healthy = [r for r in rows if r["kind"] == CampaignKind.HEALTHY.value]
    bad = [r for r in rows if r["kind"] != CampaignKind.HEALTHY.value]
    false_pauses = [r for r in healthy if r[policy]["paused"]]
    catchable = [r for r in bad if r["post_onset"] >= FLOOR[r["kind"]]]
    eligible = [r for r in bad if r["post_onset"] >= ELIGIBLE_POST_ONSET]

    def caught(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in group if r[policy]["paused"] and r[policy]["sends_after_onset"] >= 0]

    def sends(group: list[dict[str, Any]]) -> list[float]:
        return [float(r[policy]["sends_after_onset"]) for r in caught(group)]

    by_kind: dict[str, Any] = {}
    for kind in sorted({r["kind"] for r in bad}):
        mine = [r for r in eligible if r["kind"] == kind]
        entry: dict[str, Any] = {
            "campaigns": sum(1 for r in bad if r["kind"] == kind),
            "below_floor": sum(1 for r in bad if r["kind"] == kind and r not in catchable),
            "eligible": len(mine),
            "caught": len(caught(mine)),
            "sends_after_onset": _stats(sends(mine)),
            "by_rate": {},
        }
        metric_edges = RATE_BANDS[kind][1]
        for band in sorted({_band(r["bad_rate"], metric_edges) for r in mine}):
            group = [r for r in mine if _band(r["bad_rate"], metric_edges) == band]
            entry["by_rate"][band] = {
                "eligible": len(group),
                "caught": len(caught(group)),
                "sends_after_onset": _stats(sends(group)),
            }
        if kind == CampaignKind.COMPLAINT_WAVE.value:
            lag_part = [
                float(min(r[policy]["sends_after_onset"], r["send_rate_per_s"] * COMPLAINT_DELAY_S))
                for r in caught(mine)
            ]
            entry["sends_within_median_complaint_delay"] = _stats(lag_part)
        entry.update(_feedback_parts(caught(mine), policy))
        by_kind[kind] = entry
    by_size: dict[str, Any] = {}
    for low, high in itertools.pairwise(POST_ONSET_BANDS):
        group = [r for r in bad if low <= r["post_onset"] < high]
        if group:
            by_size[f"{low}-{high - 1}"] = {
                "campaigns": len(group),
                "caught": len(caught(group)),
                "sends_after_onset": _stats(sends(group)),
            }
    eligible_sends = sends(eligible)
    return {
        "healthy_campaigns": len(healthy),
        "false_pauses": len(false_pauses),
        "false_pause_campaigns": [
            {"campaign": r["campaign"], "size": r["size"], **r[policy]} for r in false_pauses
        ],
        "bad_campaigns": len(bad),
        "bad_below_floor": len(bad) - len(catchable),
        "bad_paused_before_onset": sum(
            1 for r in bad if r[policy]["paused"] and r[policy]["sends_after_onset"] < 0
        ),
        "catchable_caught": len(caught(catchable)),
        "catchable": len(catchable),
        "eligible": len(eligible),
        "eligible_caught": len(caught(eligible)),
        "eligible_caught_share": len(caught(eligible)) / len(eligible) if eligible else None,
        "eligible_sends_after_onset": _stats(eligible_sends),
        "missed_eligible": [
            {
                k: r[k]
                for k in (
                    "campaign",
                    "kind",
                    "size",
                    "post_onset",
                    "bad_rate",
                    "expected_post_onset_numerators",
                )
            }
            for r in eligible
            if r not in caught(eligible)
        ],
        "by_kind": by_kind,
        "by_post_onset_size": by_size,
        "rules_that_paused": dict(
            sorted(_count(r[policy]["rule"] for r in caught(bad)).items(), key=lambda kv: -kv[1])
        ),
        "seconds_in_detection": sum(r["seconds"][policy] for r in rows),
    }


def _feedback_parts(caught: list[dict[str, Any]], policy: str) -> dict[str, Any]:
    """How much of the caught campaigns' sends onset->pause the feedback lag alone explains.

    `feedback_first`/`feedback_floor`: sends after onset before the first/floor-th post-onset
    numerator arrived (capped at the sends to pause); `beyond_feedback_floor`: the rest, the
    part the detector's own evidence-gathering adds.
    """
    first, floor, beyond = [], [], []
    for row in caught:
        sends = float(row[policy]["sends_after_onset"])
        bound = row.get("feedback_bound") or {}
        first.append(min(sends, float(bound.get("first") or sends)))
        reached = min(sends, float(bound.get("floor") or sends))
        floor.append(reached)
        beyond.append(sends - reached)
    return {
        "feedback_first": _stats(first),
        "feedback_floor": _stats(floor),
        "beyond_feedback_floor": _stats(beyond),
    }


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _jobs(args: argparse.Namespace) -> list[tuple[str, int, CampaignProfile]]:
    quality, drift = quality_profiles(SEED), drift_profiles(SEED)
    if args.full:
        chosen_quality, chosen_drift = list(range(len(quality))), list(range(len(drift)))
    elif args.quick:
        chosen_quality = quick_select(quality)
        chosen_drift = [i for i, p in enumerate(drift) if p.size <= 20_000]
    else:
        chosen_quality = select(quality, args.size_cap, args.large_stride)
        chosen_drift = select(drift, args.size_cap * 5, args.large_stride // 4 or 1)
    jobs = [("quality", i, quality[i]) for i in chosen_quality]
    jobs += [("drift", i, drift[i]) for i in chosen_drift]
    return sorted(jobs, key=lambda job: -job[2].size)


def _print_summary(name: str, summary: dict[str, Any]) -> None:
    share = summary["eligible_caught_share"]
    print(
        f"  {name}: false pauses {summary['false_pauses']} of {summary['healthy_campaigns']}; "
        f"bad caught {summary['catchable_caught']} of {summary['catchable']} above the floor "
        f"({summary['bad_below_floor']} below); of {summary['eligible']} with >= 1,000 after "
        f"onset {summary['eligible_caught']} ({(share or 0) * 100:.1f}%), sends onset->pause "
        f"median {summary['eligible_sends_after_onset']['median']}, "
        f"p95 {summary['eligible_sends_after_onset']['p95']}"
    )
    for kind, entry in summary["by_kind"].items():
        print(
            f"    {kind:17} {entry['caught']}/{entry['eligible']} eligible, median "
            f"{entry['sends_after_onset']['median']}, p95 {entry['sends_after_onset']['p95']}; "
            f"before the floor's feedback arrived: median {entry['feedback_floor']['median']}, "
            f"beyond it: median {entry['beyond_feedback_floor']['median']}"
        )


def _run(
    jobs: list[tuple[str, int, CampaignProfile]], processes: int, started: float
) -> list[dict[str, Any]]:
    """Run the campaigns, appending each row to a .rows.jsonl file as it comes.

    So an unfinished run (the full mix takes hours) can still be summarized with `--rows`.
    """
    expected = sum(expected_event_count(job[2]) for job in jobs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    partial = RESULTS / f"quality-{datetime.now(tz=UTC):%Y%m%dT%H%M%SZ}.rows.jsonl"
    print(f"{len(jobs)} campaigns, <= {expected / 1e6:.1f}M events, {processes} processes")
    print(f"rows as they come: {partial}")
    rows: list[dict[str, Any]] = []
    with (
        partial.open("w") as sink,
        multiprocessing.get_context("fork").Pool(processes) as pool,
    ):
        for row in pool.imap_unordered(run_one, jobs):
            rows.append(row)
            sink.write(json.dumps(row, default=str) + "\n")
            sink.flush()
            if len(rows) % 50 == 0:
                print(f"  [{len(rows)}/{len(jobs)}] {time.monotonic() - started:.0f} s")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-cap", type=int, default=10_000)
    parser.add_argument("--large-stride", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a few minutes (see the docstring)")
    parser.add_argument("--full", action="store_true", help="every campaign of both mixes")
    parser.add_argument(
        "--rows",
        type=Path,
        help="summarize the rows of an earlier (possibly unfinished) run's .rows.jsonl instead"
        " (with --full all of them, else the subsample the other options select)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    if args.rows is not None:
        rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
        if not args.full:  # the subsample the other options select, out of those rows
            chosen = {(mix, index) for mix, index, _ in _jobs(args)}
            rows = [r for r in rows if (r["mix"], r["index"]) in chosen]
        print(f"{len(rows)} campaigns' rows from {args.rows}")
    else:
        rows = _run(_jobs(args), args.jobs, started)
    seconds = time.monotonic() - started
    rows.sort(key=lambda r: (r["mix"], int(r["index"])))
    summaries: dict[str, Any] = {}
    for mix in ("quality", "drift"):
        mine = [r for r in rows if r["mix"] == mix]
        summaries[mix] = {name: summarize(mine, name) for name in POLICIES}
    events = sum(r["events"] for r in rows)
    # Cost on the campaigns both policies were fed to the end (healthy, never paused).
    both = [r for r in rows if not any(r[name]["paused"] for name in POLICIES)]
    both_events = sum(r["events"] for r in both)
    cost = {
        name: sum(r["seconds"][name] for r in both) / max(1, both_events) * 1e6 for name in POLICIES
    }
    result = {
        "benchmark": "quality",
        "command": "python -m bench.quality " + " ".join(argv or sys.argv[1:]),
        "machine": machine_info(),
        "seed": SEED,
        "policies": {name: policy.version for name, policy in POLICIES.items()},
        "campaigns": len(rows),
        "events": events,
        "seconds": round(seconds, 1),
        "rows_from": None if args.rows is None else str(args.rows),
        "detection_us_per_event": {"events": both_events, **cost},
        "summary": summaries,
        "rows": rows,
    }
    written = write_result("quality", result)
    print(f"\n{events / 1e6:.1f}M events in {seconds:.0f} s -> {written}")
    for mix, by_policy in summaries.items():
        print(f"{mix} mix:")
        for name, summary in by_policy.items():
            _print_summary(name, summary)
    print(
        f"detection cost per event (us, over the {both_events / 1e6:.1f}M events of campaigns "
        "neither policy paused): "
        + ", ".join(f"{name} {value:.3f}" for name, value in cost.items())
    )
    return result


if __name__ == "__main__":
    main()
