"""Throughput: events per second of one worker process vs a raw aiokafka `getmany` drain.

Usage: `source .stack/env && .venv/bin/python -m bench.throughput [--events N] [--pairs N]
[--quick] [--profile] [--poison-share F]`.

1M seeded demo-mix events (`processor.simulation.workload`, keyed `tenant:campaign`) are produced
once into an 8-partition delivery-events topic. Then, interleaved, N times:

* baseline: a fresh consumer group drains the topic with `getmany` (same fetch settings and
  batch size as the worker's BatchConsumer) and does nothing with the records; timed from
  partition assignment to having read every partition's end offset;
* worker: a fresh `python -m processor worker` (own app id, consumer group and Redis key
  prefix) reads the same topic; timed from its "partitions assigned" log line to its
  consumer group's committed offsets reaching the end offsets (every event parsed, windows
  applied in Redis, decisions published, offsets committed).

Each pair also drains the topic four more times in this process, as references that split
the worker's cost: once only decoding the values, one msgspec call per batch into typed
structs, nothing done with them (`decode`); once doing the least any Python detector of these
events must do, that decode and a dict count per campaign and type, no checks (`floor`); once
building and parsing every record (`parse`); once running the whole detection on an
in-memory store, without Redis, contact state or publishing (`detect-in-memory`).
`--references-only` runs the baseline and the references without the worker, for many pairs.

Reported: medians, the worker/baseline ratio of each pair and its median, the references'
ratios, the worker's peak RSS.

`--poison-share F` (e.g. 0.05) measures poison instead: the same events go into a second
topic with bad records of every kind mixed in (`bench.poison`, F of all records; with
`--poison-kinds small`, without the 70 KB oversized records), and each pair
runs a fresh worker on the clean topic and one on the poisoned topic, in alternating order.
Reported: records/s of each, the poisoned/clean ratio per pair and its median (bar: >= 0.7),
and the dead letters of each poisoned run (expected: one per poison record).
With `--profile` one more worker run is made under pyinstrument (not counted in the medians).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import msgspec
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio import Redis

from bench.common import (
    RESULTS,
    Sandbox,
    WorkerProcess,
    cpu_seconds,
    delete_keys,
    delete_topics,
    end_offsets,
    event_lines,
    machine_info,
    median,
    new_name,
    produce_all,
    read_lines,
    redis_version,
    run_cli,
    stack_env,
    stack_pids,
    write_result,
)
from bench.poison import POISON_MIX, SMALL_POISON_MIX, with_poison
from processor.domain.policy import PolicyBook
from processor.ports.detection_store import InMemoryStore
from processor.ports.records import RawRecord
from processor.services.detection import DetectionService
from processor.services.event_input import LeanEvent, parse_batch

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from processor.ports.detection_store import OutboxMessage

PARTITIONS = 8
BATCH = 2000
"""The worker's default `batch_max_events`; the baseline asks for the same batches."""
BAR = 0.6
POISON_BAR = 0.7
"""Records/s with poison mixed in, as a share of the records/s of the same events clean."""
REFERENCE_STAGES = ("decode", "floor", "parse", "detect-in-memory")
"""In-process drains that do part of the worker's job, to show where its time goes."""
Fetched = dict[TopicPartition, list[Any]]
"""What `getmany` returns."""


class _Assigned(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    def __init__(self) -> None:
        self.at: float | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        if assigned and self.at is None:
            self.at = time.time()


class _NoPublisher:
    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        pass


_DECODE_FLOOR = msgspec.json.Decoder(list[LeanEvent]).decode


def _raw_records(batches: Fetched) -> list[RawRecord]:
    return [
        RawRecord(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
        for tp, messages in batches.items()
        for m in messages
    ]


def _stage_handler(stage: str) -> Callable[[Fetched], Awaitable[object]] | None:
    """What a reference drain does with each `getmany` result (None: nothing)."""
    if stage == "drain":
        return None
    if stage == "decode":

        async def decode(batches: Fetched) -> object:
            values = [m.value for messages in batches.values() for m in messages]
            return _DECODE_FLOOR(b"[" + b",".join(values) + b"]")

        return decode
    if stage == "floor":
        counts: Counter[tuple[str, str, str]] = Counter()

        async def floor(batches: Fetched) -> object:
            values = [m.value for messages in batches.values() for m in messages]
            events = _DECODE_FLOOR(b"[" + b",".join(values) + b"]")
            counts.update((e.tenant_id, e.campaign_id, e.type) for e in events)
            return counts

        return floor
    if stage == "parse":

        async def parse(batches: Fetched) -> object:
            return parse_batch(_raw_records(batches), 15 * 60_000)

        return parse
    if stage == "detect-in-memory":
        book = PolicyBook()
        service = DetectionService(
            InMemoryStore(), _NoPublisher(), lambda: book, publish_periodic_health=False
        )

        async def detect(batches: Fetched) -> object:
            return await service.apply(_raw_records(batches))

        return detect
    raise ValueError(stage)


async def run_baseline(
    bootstrap: str, topic: str, ends: dict[int, int], stage: str = "drain"
) -> dict[str, Any]:
    """Drain the topic with a fresh group; time assignment -> end offsets.

    `stage` says what is done with each batch: nothing ("drain", the baseline), or, as
    references that split the worker's cost: only the values decoded into typed structs in
    one msgspec call per batch ("decode"), the least any Python detector of these events must
    do ("floor": that decode, then a dict count per campaign and type, no checks), sendguard's
    event parsing ("parse": records built and validated) or its whole detection on an
    in-memory store without Redis, contact state or publishing ("detect-in-memory").
    """
    handle = _stage_handler(stage)
    listener = _Assigned()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"bench-raw-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    consumer.subscribe([topic], listener=listener)
    started = time.time()
    await consumer.start()
    positions = dict.fromkeys(ends, 0)
    count = 0
    try:
        while any(positions[p] < end for p, end in ends.items()):
            batches = await consumer.getmany(timeout_ms=50, max_records=BATCH)
            for tp, messages in batches.items():
                if messages:
                    count += len(messages)
                    positions[tp.partition] = messages[-1].offset + 1
            if handle is not None and batches:
                await handle(batches)
        done = time.time()
    finally:
        await consumer.stop()
    assigned = listener.at or started
    seconds = done - assigned
    return {
        "stage": stage,
        "events": count,
        "seconds": round(seconds, 3),
        "events_per_s": round(count / seconds),
        "start_to_assigned_s": round(assigned - started, 3),
    }


async def _committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


def _steady_rate(timeline: list[tuple[float, int]], total: int) -> float | None:
    """Events/s between 10% and 90% committed (start-up and tail excluded)."""
    low = next(((t, c) for t, c in timeline if c >= 0.1 * total), None)
    high = next(((t, c) for t, c in timeline if c >= 0.9 * total), None)
    if low is None or high is None or high[0] <= low[0]:
        return None
    return (high[1] - low[1]) / (high[0] - low[0])


async def run_worker(
    sandbox: Sandbox,
    topic: str,
    total: int,
    *,
    profile_to: Path | None = None,
    processes: int = 1,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Start fresh workers on the pre-filled topic; time assignment -> all offsets committed.

    With `processes` > 1 they are members of one consumer group, as several worker processes on
    a host would be; the clock starts at the first one's assignment.
    """
    redis = Redis.from_url(sandbox.redis_url)
    memory_before = int((await redis.info("memory"))["used_memory"])
    workers = [
        WorkerProcess(sandbox, profile_to=profile_to if member == 0 else None, member=member)
        for member in range(processes)
    ]
    admin = AIOKafkaAdminClient(bootstrap_servers=sandbox.bootstrap)
    await admin.start()
    stack_cpu_before = {n: cpu_seconds(p) for n, p in stack_pids().items()}
    spawned = time.time()
    for worker in workers:
        worker.start()
    worker_cpu = [0.0] * processes
    group = f"{sandbox.name}-detect"
    timeline: list[tuple[float, int]] = []
    done: float | None = None
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            for i, worker in enumerate(workers):
                worker.sample_rss()
                if worker.process is not None:
                    worker_cpu[i] = cpu_seconds(worker.process.pid) or worker_cpu[i]
            committed = await _committed(admin, group, topic)
            now = time.time()
            timeline.append((now, committed))
            if committed >= total:
                done = now
                break
            if any(w.process is not None and w.process.poll() is not None for w in workers):
                break
        stack_cpu = {
            n: round((cpu_seconds(p) or 0.0) - (stack_cpu_before.get(n) or 0.0), 1)
            for n, p in stack_pids().items()
        }
        memory_after = int((await redis.info("memory"))["used_memory"])
        keys = await redis.dbsize()
    finally:
        await admin.close()
        await redis.aclose()
        codes = [await worker.stop(timeout_s=120) for worker in workers]
    assigned_at = [
        float(line["at"])
        for worker in workers
        for line in worker.log_lines()
        if line.get("message") == "partitions assigned"
    ]
    ready_line = workers[0].first_log("detection consumer ready")
    if done is None or not assigned_at:
        tail = workers[0].log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"worker run did not finish (exits {codes}); log tail:\n{tail}")
    assigned = min(assigned_at)
    seconds = done - assigned
    steady = _steady_rate(timeline, total)
    rss_samples = [sample for worker in workers for sample in worker.rss_samples]
    return {
        "processes": processes,
        "events": total,
        "seconds": round(seconds, 3),
        "events_per_s": round(total / seconds),
        "steady_10_90_events_per_s": round(steady) if steady else None,
        "spawn_to_assigned_s": round(assigned - spawned, 3),
        "spawn_to_ready_s": round(float(ready_line["at"]) - spawned, 3) if ready_line else None,
        "worker_cpu_s_incl_startup": round(sum(worker_cpu), 1),
        "stack_cpu_s_during_run": stack_cpu,
        "peak_rss_mb": round(max(worker.peak_rss for worker in workers) / 2**20, 1),
        "median_rss_mb": round(median(rss_samples) / 2**20, 1),
        "redis_used_memory_delta_mb": round((memory_after - memory_before) / 2**20, 1),
        "redis_dbsize_after": keys,
        "exit_code": codes[0] if processes == 1 else codes,
    }


async def _topic_total(bootstrap: str, topic: str) -> int:
    return sum((await end_offsets(bootstrap, topic)).values())


async def _workers_run(
    stack: dict[str, str],
    base: str,
    name: str,
    ends: dict[int, int],
    processes: int,
    *,
    keep: bool,
) -> dict[str, Any]:
    """One run of `processes` fresh workers (one consumer group) over the `base` topics."""
    bootstrap = stack["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"]
    sandbox = Sandbox(stack, name, topic_name=base, partitions=PARTITIONS)
    topic = sandbox.topic("delivery-events")
    dead_topic = sandbox.topic("dead-letter")
    dead_before = await _topic_total(bootstrap, dead_topic)
    try:
        worker = await run_worker(sandbox, topic, sum(ends.values()), processes=processes)
    finally:
        if not keep:
            await delete_keys(sandbox.redis_url, sandbox.name)
    worker["dead_letters"] = await _topic_total(bootstrap, dead_topic) - dead_before
    return worker


async def _pair(
    i: int,
    stack: dict[str, str],
    base: str,
    topic: str,
    ends: dict[int, int],
    *,
    keep: bool,
    with_worker: bool = True,
    scale_out: Sequence[int] = (),
) -> dict[str, Any]:
    """One baseline run, the references, then the worker runs, on the same pre-filled topic.

    `scale_out` adds runs of that many worker processes sharing the work, after the single one.
    """
    bootstrap = stack["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"]
    raw = await run_baseline(bootstrap, topic, ends)
    print(f"pair {i + 1}: baseline {raw['events_per_s']:,} ev/s ({raw['seconds']} s)")
    references = {}
    for stage in REFERENCE_STAGES:
        reference = await run_baseline(bootstrap, topic, ends, stage)
        reference["ratio"] = round(reference["events_per_s"] / raw["events_per_s"], 4)
        references[stage] = reference
        print(
            f"pair {i + 1}: reference {stage} {reference['events_per_s']:,} ev/s, "
            f"ratio {reference['ratio']:.3f}"
        )
    if not with_worker:
        return {"baseline": raw, "references": references, "worker": None, "ratio": None}
    worker = await _workers_run(stack, base, f"{base}-w{i}", ends, 1, keep=keep)
    ratio = worker["events_per_s"] / raw["events_per_s"]
    print(
        f"pair {i + 1}: worker {worker['events_per_s']:,} ev/s ({worker['seconds']} s, "
        f"steady {worker['steady_10_90_events_per_s']}), ratio {ratio:.3f}, "
        f"peak RSS {worker['peak_rss_mb']} MB"
    )
    scaled = {}
    for processes in scale_out:
        run = await _workers_run(
            stack, base, f"{base}-w{i}x{processes}", ends, processes, keep=keep
        )
        run["ratio"] = round(run["events_per_s"] / raw["events_per_s"], 4)
        run["speedup_vs_one"] = round(run["events_per_s"] / worker["events_per_s"], 3)
        scaled[str(processes)] = run
        print(
            f"pair {i + 1}: {processes} workers {run['events_per_s']:,} ev/s "
            f"(steady {run['steady_10_90_events_per_s']}), ratio {run['ratio']:.3f}, "
            f"x{run['speedup_vs_one']:.2f} of one worker"
        )
    return {
        "baseline": raw,
        "references": references,
        "worker": worker,
        "ratio": round(ratio, 4),
        "scale_out": scaled,
    }


async def _poison_pair(
    i: int,
    stack: dict[str, str],
    clean: tuple[str, dict[int, int]],
    poisoned: tuple[str, dict[int, int]],
    *,
    keep: bool,
) -> dict[str, Any]:
    """A fresh worker on the clean topic and one on the poisoned topic (order alternates)."""
    runs: dict[str, dict[str, Any]] = {}
    order = [("clean", clean), ("poisoned", poisoned)]
    for label, (base, ends) in order if i % 2 == 0 else order[::-1]:
        runs[label] = await _workers_run(stack, base, f"{base}-w{i}", ends, 1, keep=keep)
        print(
            f"pair {i + 1}: {label} {runs[label]['events_per_s']:,} records/s "
            f"({runs[label]['seconds']} s), {runs[label]['dead_letters']} dead letters, "
            f"peak RSS {runs[label]['peak_rss_mb']} MB"
        )
    ratio = runs["poisoned"]["events_per_s"] / runs["clean"]["events_per_s"]
    print(f"pair {i + 1}: poisoned/clean {ratio:.3f}")
    return {**runs, "ratio": round(ratio, 4)}


async def _poison_main(args: argparse.Namespace, stack: dict[str, str]) -> dict[str, Any]:
    """`--poison-share`: clean vs poisoned topics, interleaved pairs of worker runs."""
    info = machine_info(await redis_version(stack["SENDGUARD_REDIS_URL"]))
    bases = {"clean": new_name("tput"), "poisoned": new_name("tputp")}
    path = event_lines(args.events)
    topics: dict[str, tuple[str, dict[int, int]]] = {}
    try:
        for label, base in bases.items():
            sandbox = Sandbox(stack, base, partitions=PARTITIONS)
            run_cli(sandbox, "topics", "create")
            topic = sandbox.topic("delivery-events")
            share = args.poison_share if label == "poisoned" else 0.0
            mix = SMALL_POISON_MIX if args.poison_kinds == "small" else POISON_MIX
            produced, seconds = await produce_all(
                sandbox.bootstrap, topic, with_poison(read_lines(path), share, mix), PARTITIONS
            )
            topics[label] = (base, await end_offsets(sandbox.bootstrap, topic))
            print(f"produced {produced} records ({label}) into {topic} in {seconds:.1f} s")
        pairs = [
            await _poison_pair(i, stack, topics["clean"], topics["poisoned"], keep=args.keep)
            for i in range(args.pairs)
        ]
    finally:
        if not args.keep:
            for base in bases.values():
                await delete_topics(stack["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"], base)
    clean_records = sum(topics["clean"][1].values())
    poison_records = sum(topics["poisoned"][1].values()) - clean_records
    ratio = median(p["ratio"] for p in pairs)
    result = {
        "benchmark": "throughput-poison",
        "command": "python -m bench.throughput " + " ".join(sys.argv[1:]),
        "machine": info,
        "events": clean_records,
        "poison_records": poison_records,
        "poison_share": round(poison_records / (clean_records + poison_records), 4),
        "poison_kinds": args.poison_kinds,
        "partitions": PARTITIONS,
        "pairs": pairs,
        "median_clean_records_per_s": median(p["clean"]["events_per_s"] for p in pairs),
        "median_poisoned_records_per_s": median(p["poisoned"]["events_per_s"] for p in pairs),
        "median_ratio": ratio,
        "dead_letters_as_expected": all(
            p["poisoned"]["dead_letters"] == poison_records and p["clean"]["dead_letters"] == 0
            for p in pairs
        ),
        "bar": f"poisoned/clean >= {POISON_BAR}",
        "bar_met": ratio >= POISON_BAR,
    }
    written = write_result("throughput-poison", result)
    print(
        f"\npoison {result['poison_share']:.1%}: median poisoned/clean {ratio:.3f} "
        f"(bar >= {POISON_BAR}: {'met' if ratio >= POISON_BAR else 'NOT met'}), dead letters "
        f"as expected: {result['dead_letters_as_expected']}; N={len(pairs)} pairs -> {written}"
    )
    return result


async def _profiled(
    stack: dict[str, str], base: str, topic: str, total: int, *, keep: bool
) -> dict[str, Any]:
    """One more worker run under pyinstrument (its rate is not comparable)."""
    sandbox = Sandbox(stack, f"{base}-prof", topic_name=base, partitions=PARTITIONS)
    out = RESULTS / "throughput-profile.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    try:
        profile = await run_worker(sandbox, topic, total, profile_to=out)
    finally:
        if not keep:
            await delete_keys(sandbox.redis_url, sandbox.name)
    profile["profile"] = str(out)
    print(f"profiled run: {profile['events_per_s']:,} ev/s under pyinstrument -> {out}")
    return profile


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=3, help="baseline/worker pairs")
    parser.add_argument("--quick", action="store_true", help="100k events, 1 pair")
    parser.add_argument("--profile", action="store_true", help="one more worker run profiled")
    parser.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    parser.add_argument(
        "--scale-out",
        type=int,
        nargs="*",
        default=[],
        metavar="N",
        help="also run N worker processes sharing the topic, after the single one",
    )
    parser.add_argument(
        "--references-only",
        action="store_true",
        help="baseline and in-process references only, no worker runs",
    )
    parser.add_argument(
        "--poison-share",
        type=float,
        default=0.0,
        metavar="F",
        help="clean vs F of all records poison, interleaved worker pairs (see the docstring)",
    )
    parser.add_argument(
        "--poison-kinds",
        choices=["all", "small"],
        default="all",
        help="all: one in 8 poison records is a 70 KB oversized one; small: none is",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.pairs = 100_000, 1
    stack = stack_env()
    if args.poison_share > 0:
        return await _poison_main(args, stack)
    info = machine_info(await redis_version(stack["SENDGUARD_REDIS_URL"]))
    base = new_name("tput")
    topics = Sandbox(stack, base, partitions=PARTITIONS)
    run_cli(topics, "topics", "create")
    topic = topics.topic("delivery-events")
    path = event_lines(args.events)
    try:
        produced, produce_s = await produce_all(
            topics.bootstrap, topic, read_lines(path), PARTITIONS
        )
        ends = await end_offsets(topics.bootstrap, topic)
        total = sum(ends.values())
        print(f"produced {produced} events into {topic} in {produce_s:.1f} s; end offsets {ends}")
        pairs = [
            await _pair(
                i,
                stack,
                base,
                topic,
                ends,
                keep=args.keep,
                with_worker=not args.references_only,
                scale_out=args.scale_out,
            )
            for i in range(args.pairs)
        ]
        profile = (
            await _profiled(stack, base, topic, total, keep=args.keep) if args.profile else None
        )
        pauses = await _topic_total(topics.bootstrap, topics.topic("control"))
    finally:
        if not args.keep:
            await delete_topics(topics.bootstrap, base)
    raw_eps = median(p["baseline"]["events_per_s"] for p in pairs)
    reference_ratios = {
        stage: median(p["references"][stage]["ratio"] for p in pairs) for stage in REFERENCE_STAGES
    }
    workers = [p for p in pairs if p["worker"] is not None]
    worker_eps = median(p["worker"]["events_per_s"] for p in workers) if workers else None
    ratio = median(p["ratio"] for p in workers) if workers else None
    result = {
        "benchmark": "throughput",
        "command": "python -m bench.throughput " + " ".join(argv or sys.argv[1:]),
        "machine": info,
        "events": total,
        "partitions": PARTITIONS,
        "produce_seconds": round(produce_s, 1),
        "pairs": pairs,
        "control_messages_all_runs": pauses,
        "median_worker_events_per_s": round(worker_eps) if worker_eps else None,
        "median_baseline_events_per_s": round(raw_eps),
        "median_ratio": round(ratio, 4) if ratio is not None else None,
        "median_reference_ratios": reference_ratios,
        "median_scale_out": {
            str(n): {
                "events_per_s": median(p["scale_out"][str(n)]["events_per_s"] for p in workers),
                "ratio": median(p["scale_out"][str(n)]["ratio"] for p in workers),
                "speedup_vs_one": median(p["scale_out"][str(n)]["speedup_vs_one"] for p in workers),
            }
            for n in args.scale_out
            if workers
        },
        "median_worker_peak_rss_mb": (
            median(p["worker"]["peak_rss_mb"] for p in workers) if workers else None
        ),
        "bar": f"ratio >= {BAR}",
        "bar_met": ratio >= BAR if ratio is not None else None,
        "profiled_run": profile,
    }
    written = write_result("throughput", result)
    if worker_eps is not None and ratio is not None:
        print(
            f"\nthroughput: worker {worker_eps:,.0f} ev/s, baseline {raw_eps:,.0f} ev/s, "
            f"median ratio {ratio:.3f} (bar >= {BAR}: {'met' if ratio >= BAR else 'NOT met'}); "
            f"N={len(pairs)} pairs -> {written}"
        )
    else:
        print(f"\nbaseline {raw_eps:,.0f} ev/s, no worker runs; N={len(pairs)} -> {written}")
    for stage in REFERENCE_STAGES:
        print(f"  reference {stage}: median ratio {reference_ratios[stage]:.3f}")
    return result


if __name__ == "__main__":
    asyncio.run(main())
