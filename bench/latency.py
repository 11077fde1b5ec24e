"""Decision latency: crossing event acknowledged by Kafka -> pause command readable on control.

Usage: `source .stack/env && .venv/bin/python -m bench.latency [--rate R] [--crossings N]
[--interval S] [--quick] [--profile]`.

A fresh `python -m processor worker` runs in its own sandbox. A background stream of the throughput
benchmark's seeded demo-mix events (`bench.common.event_lines`, as they are) is produced into its
delivery-events topic at a steady R events/s by a separate process (`bench.background`, like the MTA
on another machine; default 3,000 events/s; the issue's bar is at half the rate one worker sustains
in the throughput benchmark, so run it with that `--rate` too). On top, every S seconds, one more
campaign (its own tenant, so no tenant escalation) is made to cross the hard-bounce rule: 200 `sent`
events and n*-1 hard bounces (occurred_at = now), then, half an interval later, the n*-th hard
bounce alone, where n* is the smallest bounce count for which `processor.domain.policy.evaluate` of
the default hard-bounce rule over 200 sends says PAUSE. A consumer tails `<prefix>control`; a
crossing's latency is from the crossing event's produce acknowledgement (acks=1, linger 0) to the
pause command being returned by that consumer's `getmany`, both on this process's clock (also
reported from the send call).

Reported: p50/p90/p99/max over the crossings (p99 of fewer than 100 crossings is their
maximum, nearest rank), the achieved background rate, the worker's lag and RSS, how many
cores the driver, the worker, Kafka and Redis kept busy during the crossings, and the host's
CPU contention meanwhile (cores stolen by the hypervisor, share of time a task waited for CPU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer

from bench.common import (
    RESULTS,
    BackgroundStream,
    Sandbox,
    WorkerProcess,
    cpu_seconds,
    event_lines,
    group_lag,
    host_contention,
    host_cpu,
    load_average,
    machine_info,
    median,
    new_name,
    percentile,
    redis_version,
    remove_sandbox,
    run_cli,
    stack_env,
    stack_pids,
    tail,
    write_result,
)
from processor.domain.policy import DEFAULT_RULES, Policy, Severity, evaluate
from processor.simulation.workload import to_json_line
from schemas.base import campaign_key
from schemas.control import Metric
from schemas.events import BounceClass, DeliveryEvent, EventType, Recipient

PARTITIONS = 8
SENDS = 200
BAR_MS = 250.0
BATCH_MAX_WAIT_MS = 50
"""The worker's default `SENDGUARD_BATCH_MAX_WAIT_MS` (left unset in the sandbox)."""


def crossing_bounce(sends: int = SENDS) -> int:
    """The smallest hard-bounce count over `sends` sends for which the default rule pauses."""
    rule = next(
        r for r in DEFAULT_RULES if r.metric is Metric.HARD_BOUNCE and r.window == "lifetime"
    )
    z = Policy(DEFAULT_RULES).z
    return next(
        n for n in range(1, sends + 1) if evaluate(rule, n, sends, z).severity is Severity.PAUSE
    )


def _event(tenant: str, campaign: str, k: int, kind: EventType) -> DeliveryEvent:
    return DeliveryEvent(
        event_id=f"{campaign}-{kind.value}-{k}",
        tenant_id=tenant,
        campaign_id=campaign,
        recipient=Recipient(contact_id=f"c{k}", address=f"user{k}@example{k % 7}.com"),
        type=kind,
        bounce_class=BounceClass.HARD if kind is EventType.BOUNCE else None,
        occurred_at=datetime.now(tz=UTC),
    )


class PauseWatch:
    """Notes when each campaign's pause command is first read from the control topic."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[float, dict[str, Any]]] = {}
        self.waiters: dict[str, asyncio.Event] = {}

    async def run(self, consumer: Any) -> None:
        """Read the control topic until cancelled."""
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for messages in batches.values():
                for message in messages:
                    key = (message.key or b"").decode()
                    if key in self.seen:
                        continue
                    body = json.loads(message.value)
                    if body.get("command") != "pause" or body.get("scope") != "campaign":
                        continue
                    self.seen[key] = (now, body)
                    if key in self.waiters:
                        self.waiters[key].set()


async def _crossing(  # noqa: PLR0917  # one crossing's fixed inputs
    k: int,
    run_id: str,
    n_star: int,
    producer: AIOKafkaProducer,
    topic: str,
    watch: PauseWatch,
    interval: float,
) -> dict[str, Any]:
    tenant, campaign = f"lat{run_id}t{k}", f"x{k}"
    key = campaign_key(tenant, campaign)
    watch.waiters[key] = asyncio.Event()
    prefix = [_event(tenant, campaign, i, EventType.SENT) for i in range(SENDS)]
    prefix += [_event(tenant, campaign, i, EventType.BOUNCE) for i in range(n_star - 1)]
    futures = [
        await producer.send(topic, to_json_line(e).encode(), key=key.encode()) for e in prefix
    ]
    await asyncio.gather(*futures)
    await asyncio.sleep(interval / 2)
    crossing = _event(tenant, campaign, n_star - 1, EventType.BOUNCE)
    value = to_json_line(crossing).encode()
    sent_at = time.time()
    meta = await (await producer.send(topic, value, key=key.encode()))
    acked_at = time.time()
    try:
        await asyncio.wait_for(watch.waiters[key].wait(), 30)
    except TimeoutError:
        return {"campaign": key, "timeout": True}
    read_at, body = watch.seen[key]
    trigger = body.get("trigger") or {}
    return {
        "campaign": key,
        "partition": meta.partition,
        "offset": meta.offset,
        "ack_ms": round((acked_at - sent_at) * 1000, 1),
        "latency_from_ack_ms": round((read_at - acked_at) * 1000, 1),
        "latency_from_send_ms": round((read_at - sent_at) * 1000, 1),
        "trigger_is_crossing_event": trigger.get("event_id") == crossing.event_id,
        "evidence": {
            k: body.get("evidence", {}).get(k) for k in ("window", "numerator", "denominator")
        },
    }


async def _sample(worker: WorkerProcess, sandbox: Sandbox, samples: list[dict[str, Any]]) -> None:
    group = f"{sandbox.name}-detect"
    while True:
        await asyncio.sleep(1)
        worker.sample_rss()
        with contextlib.suppress(Exception):
            lag = await group_lag(sandbox.bootstrap, group, sandbox.topic("delivery-events"))
            samples.append({"at": time.time(), "lag": lag})


def _cpu_now(worker: WorkerProcess, background: BackgroundStream) -> dict[str, float]:
    """CPU seconds so far of this driver, its producer, the worker and the stack, and the clock."""
    now = {"wall": time.monotonic(), "driver": time.process_time()}
    pids = dict(stack_pids())
    if background.pid is not None:
        pids["producer"] = background.pid
    if worker.process is not None:
        pids["worker"] = worker.process.pid
    for name, pid in pids.items():
        used = cpu_seconds(pid)
        if used is not None:
            now[name] = used
    return now


def _cores_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Cores each process kept busy in between (CPU seconds / wall seconds), and their total."""
    wall = after["wall"] - before["wall"]
    cores = {
        name: round((after[name] - before[name]) / wall, 2)
        for name in after
        if name != "wall" and name in before
    }
    cores["total"] = round(sum(cores.values()), 2)
    return cores


async def main(argv: list[str] | None = None) -> dict[str, Any]:  # noqa: PLR0915  # one linear script
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=3000, help="background events/s")
    parser.add_argument("--crossings", type=int, default=60)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between crossings")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="background-only seconds (then lag < R/2)"
    )
    parser.add_argument("--quick", action="store_true", help="30 crossings, 0.5 s apart")
    parser.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    parser.add_argument(
        "--profile", action="store_true", help="worker under pyinstrument (latency-profile.txt)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.crossings, args.interval, args.warmup = 30, 0.5, 5.0
    stack = stack_env()
    info = machine_info(await redis_version(stack["SENDGUARD_REDIS_URL"]))
    n_star = crossing_bounce()
    # Enough background events for the whole run: the 1M file up to about 12,500 events/s with
    # the default 60 crossings, bigger ones (more campaigns at a time) beyond; a run whose
    # stream ran dry anyway is marked invalid.
    seconds = args.warmup + 10 + args.crossings * args.interval
    path = event_lines(max(1, math.ceil(args.rate * seconds / 1_000_000)) * 1_000_000)
    sandbox = Sandbox(stack, new_name("lat"), partitions=PARTITIONS)
    run_cli(sandbox, "topics", "create")
    topic = sandbox.topic("delivery-events")
    worker = WorkerProcess(
        sandbox, profile_to=RESULTS / "latency-profile.txt" if args.profile else None
    )
    worker.start()
    background = BackgroundStream(sandbox.bootstrap, topic, path, args.rate)
    producer = AIOKafkaProducer(bootstrap_servers=sandbox.bootstrap, acks=1, linger_ms=0)
    watch = PauseWatch()
    lag_samples: list[dict[str, Any]] = []
    tasks: list[asyncio.Task[None]] = []
    producing: asyncio.Task[None] | None = None
    results: list[dict[str, Any]] = []
    consumer: Any = None
    load_start: list[float] = []
    load_end: list[float] = []
    warmup_s = 0.0
    ran_dry = False
    cores: dict[str, float] = {}
    host: dict[str, float] = {}
    try:
        await worker.wait_ready()
        consumer = await tail(sandbox.bootstrap, sandbox.topic("control"), PARTITIONS)
        await producer.start()
        producing = asyncio.create_task(background.run())
        tasks = [
            asyncio.create_task(watch.run(consumer)),
            asyncio.create_task(_sample(worker, sandbox, lag_samples)),
        ]
        await asyncio.sleep(args.warmup)
        caught_up = time.monotonic() + 120
        while time.monotonic() < caught_up and (  # noqa: ASYNC110  # polling Kafka lag
            not lag_samples or lag_samples[-1]["lag"] > args.rate / 2
        ):
            await asyncio.sleep(1)
        warmup_s = round(time.monotonic() - (background.started or 0), 1)
        load_start = load_average()
        cpu_before = _cpu_now(worker, background)
        host_before = host_cpu()
        run_id = uuid.uuid4().hex[:4]
        for k in range(args.crossings):
            started = time.monotonic()
            results.append(
                await _crossing(k, run_id, n_star, producer, topic, watch, args.interval)
            )
            results[-1]["lag_before"] = lag_samples[-1]["lag"] if lag_samples else None
            print(f"crossing {k + 1}: {results[-1].get('latency_from_ack_ms')} ms")
            await asyncio.sleep(max(0.0, args.interval - (time.monotonic() - started)))
        load_end = load_average()
        cpu_after = _cpu_now(worker, background)
        cores = _cores_used(cpu_before, cpu_after)
        host = host_contention(host_before, host_cpu(), cpu_after["wall"] - cpu_before["wall"])
        ran_dry = producing.done()
        background.stop()
        await producing
    finally:
        if producing is not None:
            background.stop()
            with contextlib.suppress(Exception):
                await producing
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await producer.stop()
        if consumer is not None:
            await consumer.stop()
        await worker.stop()
        if not args.keep:
            await remove_sandbox(sandbox)
    timed = [r["latency_from_ack_ms"] for r in results if not r.get("timeout")]
    from_send = [r["latency_from_send_ms"] for r in results if not r.get("timeout")]
    timeouts = sum(1 for r in results if r.get("timeout"))
    p99 = percentile(timed, 99) if timed else float("inf")
    met = bool(timed) and not timeouts and not ran_dry and p99 < BAR_MS
    lags = [s["lag"] for s in lag_samples]
    result = {
        "benchmark": "latency",
        "command": "python -m bench.latency " + " ".join(argv or sys.argv[1:]),
        "machine": info,
        "load_avg_start_of_crossings": load_start,
        "load_avg_end": load_end,
        "background_rate_target": args.rate,
        "background_rate_achieved": round(background.achieved_rate),
        "background_events": background.produced,
        "background_ran_dry": ran_dry,
        "warmup_s": warmup_s,
        "batch_max_wait_ms": BATCH_MAX_WAIT_MS,
        "crossing": f"{SENDS} sends, then hard bounce number {n_star} (first PAUSE of evaluate)",
        "crossings": len(results),
        "timeouts": timeouts,
        "trigger_matches": sum(1 for r in results if r.get("trigger_is_crossing_event")),
        "latency_from_ack_ms": {
            "p50": median(timed) if timed else None,
            "p90": percentile(timed, 90),
            "p99": p99,
            "max": max(timed, default=None),
            "min": min(timed, default=None),
        },
        "latency_from_send_ms": {
            "p50": median(from_send) if from_send else None,
            "p99": percentile(from_send, 99),
        },
        "worker_lag_events": {
            "median": median(lags) if lags else None,
            "max": max(lags, default=None),
            "samples": len(lags),
            "during_crossings_max": max(
                (r["lag_before"] for r in results if r.get("lag_before") is not None),
                default=None,
            ),
        },
        "cpu_cores_during_crossings": cores,
        "host_contention_during_crossings": host,
        "worker_rss_mb": {
            "median": round(median(worker.rss_samples) / 2**20, 1) if worker.rss_samples else None,
            "peak": round(worker.peak_rss / 2**20, 1),
        },
        "bar": f"p99 < {BAR_MS:.0f} ms",
        "bar_met": met,
        "runs": results,
    }
    written = write_result("latency", result)
    print(
        f"\nlatency: p50 {result['latency_from_ack_ms']['p50']} ms, p99 {p99} ms over "
        f"{len(timed)} crossings ({timeouts} timeouts), background "
        f"{result['background_rate_achieved']} ev/s, max lag {max(lags, default=None)} events "
        f"(bar p99 < {BAR_MS:.0f} ms: {'met' if met else 'NOT met'}) -> {written}"
    )
    print(f"cores busy during the crossings: {cores}; host contention: {host}")
    if ran_dry:
        print("INVALID: the background stream ran out of events before the crossings ended")
    return result


if __name__ == "__main__":
    asyncio.run(main())
