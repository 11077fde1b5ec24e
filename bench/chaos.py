"""Chaos suite: one command per failure scenario, each checked for exact counts and pauses.

`python -m bench.chaos SCENARIO [--events N]`; results go to bench/results/chaos-<scenario>-*.json.
Scenarios and what they prove are described in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.chaos_support import Supervisor, compare, outcomes, raise_max_message_bytes, recount
from bench.chaos_support import stored as stored_state
from bench.common import (
    RESULTS,
    BackgroundStream,
    Sandbox,
    delete_keys,
    end_offsets,
    event_lines,
    group_lag,
    load_average,
    machine_info,
    new_name,
    produce_all,
    read_lines,
    redis_version,
    remove_sandbox,
    run_cli,
    stack_env,
    write_result,
)
from bench.poison import SMALL_POISON_MIX, with_poison
from tests.integration.redis_proxy import RedisProxy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

SCENARIOS = ("sigkill-storm", "redis-stop", "redis-empty", "kafka-restart", "poison", "overload")
DEFAULT_EVENTS = {
    "sigkill-storm": 200_000,
    "redis-stop": 100_000,
    "redis-empty": 100_000,
    "poison": 100_000,
    "overload": 0,  # from --rate and --seconds
}
TOPIC_MAX_BYTES = 8 * 1024 * 1024
LARGE_POISON = (
    ("oversized_record", b'{"note": "' + b"x" * 1_000_000 + b'"}'),
    ("oversized_record", b"{" + b"x" * 5_000_000),
)
OVERSIZED_70K = ("oversized_record", b'{"note": "' + b"x" * 70_000 + b'"}')


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--events", type=int, help="events in the stream (scenario default)")
    parser.add_argument("--kills", type=int, default=5, help="sigkill-storm: SIGKILLs")
    parser.add_argument("--every-s", type=float, default=8.0, help="sigkill-storm: kill spacing")
    parser.add_argument("--rate", type=float, help="events/s produced (overload: 2x worker's)")
    parser.add_argument("--outage-s", type=float, default=30.0, help="redis-stop: outage")
    parser.add_argument("--poison", type=int, default=10_000, help="poison: bad records")
    parser.add_argument("--seconds", type=float, default=20.0, help="overload: produce time")
    parser.add_argument("--keep", action="store_true", help="keep the run's topics and keys")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="catch-up deadline")
    return parser.parse_args(argv)


@dataclass
class Chaos:
    """One scenario run: its sandbox, supervised worker, event file and options."""

    sandbox: Sandbox
    supervisor: Supervisor
    path: Path
    total: int
    args: argparse.Namespace
    proxy: RedisProxy


def _worker_rate() -> float:
    """The worker's last measured throughput (bench/results/throughput-latest.json)."""
    try:
        result = json.loads((RESULTS / "throughput-latest.json").read_text())
        return float(result["median_worker_events_per_s"])
    except (OSError, KeyError, ValueError):
        return 20_000.0


async def _stream(
    sandbox: Sandbox, path: Path, rate: float, action: Callable[[BackgroundStream], Awaitable[Any]]
) -> dict[str, Any]:
    """Produce `path` at `rate` while `action` disturbs the run; both must finish."""
    stream = BackgroundStream(sandbox.bootstrap, sandbox.topic("delivery-events"), path, rate)
    producing = asyncio.create_task(stream.run())
    done = await action(stream)
    await producing
    return {
        "produced": stream.produced,
        "produce_seconds": round(stream.seconds, 1),
        "produce_rate": round(stream.achieved_rate),
        "action": done,
    }


async def _at_share(stream: BackgroundStream, total: int, share: float) -> None:
    while stream.produced < total * share:  # noqa: ASYNC110  # the producer reports each second
        await asyncio.sleep(0.2)


async def sigkill_storm(ctx: Chaos) -> dict[str, Any]:
    """SIGKILL the worker `--kills` times, `--every-s` apart, while the stream goes on."""
    args = ctx.args
    rate = args.rate or ctx.total / max(args.every_s * (args.kills + 1), 1)

    async def storm(_stream: BackgroundStream) -> dict[str, Any]:
        for _ in range(args.kills):
            await asyncio.sleep(args.every_s)
            await ctx.supervisor.kill()
        return {"kills": ctx.supervisor.kills, "every_s": args.every_s}

    return await _stream(ctx.sandbox, ctx.path, rate, storm)


async def redis_stop(ctx: Chaos) -> dict[str, Any]:
    """Cut the worker's Redis (a proxy in front of it) for `--outage-s`, data kept."""
    rate = ctx.args.rate or ctx.total / 60

    async def outage(stream: BackgroundStream) -> dict[str, Any]:
        await _at_share(stream, ctx.total, 0.25)
        await ctx.proxy.down()
        await asyncio.sleep(ctx.args.outage_s)
        await ctx.proxy.up()
        return {"outage_s": ctx.args.outage_s, "exits_during_outage": list(ctx.supervisor.exits)}

    return await _stream(ctx.sandbox, ctx.path, rate, outage)


async def redis_empty(ctx: Chaos) -> dict[str, Any]:
    """Delete this run's keys (its own prefix, never FLUSHALL) halfway through the stream."""
    rate = ctx.args.rate or ctx.total / 40

    async def empty(stream: BackgroundStream) -> dict[str, Any]:
        await _at_share(stream, ctx.total, 0.5)
        deleted = await delete_keys(ctx.sandbox.redis_url, ctx.sandbox.name)
        return {"keys_deleted": deleted, "at_produced": stream.produced}

    return await _stream(ctx.sandbox, ctx.path, rate, empty)


async def overload(ctx: Chaos) -> dict[str, Any]:
    """Produce at `--rate` (2x the worker's measured throughput) for `--seconds`."""
    rate = ctx.args.rate or 2 * _worker_rate()
    sandbox = ctx.sandbox
    group, topic = f"{sandbox.name}-detect", sandbox.topic("delivery-events")

    async def watch(stream: BackgroundStream) -> dict[str, Any]:
        while stream.started is None:  # noqa: ASYNC110  # set once the producer is spawned
            await asyncio.sleep(0.1)
        started = time.monotonic()
        peak_lag = 0
        while stream.produced < ctx.total:
            await asyncio.sleep(1)
            peak_lag = max(peak_lag, await group_lag(sandbox.bootstrap, group, topic))
        return {
            "target_rate": round(rate),
            "peak_lag": peak_lag,
            "stream_s": round(time.monotonic() - started, 1),
        }

    return await _stream(sandbox, ctx.path, rate, watch)


async def poison(sandbox: Sandbox, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Pre-fill the topic (max.message.bytes raised) with events and poison, 1 and 5 MB too."""
    topic = sandbox.topic("delivery-events")
    await raise_max_message_bytes(sandbox.bootstrap, topic, TOPIC_MAX_BYTES)
    mix = (*SMALL_POISON_MIX, OVERSIZED_70K)
    events = sum(1 for _ in read_lines(path))
    share = args.poison / (events + args.poison)
    records = list(with_poison(read_lines(path), share, mix))
    for at, (_, value) in zip(
        (len(records) // 3, 2 * len(records) // 3), LARGE_POISON, strict=True
    ):
        records.insert(at, (records[at][0], value))
    bad = len(records) - events
    expected: dict[str, int] = {}
    for n in range(bad - len(LARGE_POISON)):
        kind = mix[n % len(mix)][0]
        expected[kind] = expected.get(kind, 0) + 1
    expected["oversized_record"] = expected.get("oversized_record", 0) + len(LARGE_POISON)
    produced, seconds = await produce_all(sandbox.bootstrap, topic, records, sandbox.partitions)
    return {
        "produced": produced,
        "produce_seconds": round(seconds, 1),
        "poison": bad,
        "expected_dead_letters": expected,
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    stack = stack_env()
    sandbox = Sandbox(stack, new_name(f"chaos-{args.scenario}"))
    total = args.events or DEFAULT_EVENTS[args.scenario]
    if args.scenario == "overload" and not args.events:
        total = int((args.rate or 2 * _worker_rate()) * args.seconds)
    path = event_lines(total)
    expected = recount(read_lines(path))
    proxy = RedisProxy(sandbox.redis_url)
    env: dict[str, str] = {}
    if args.scenario == "redis-stop":
        await proxy.up()
        env["SENDGUARD_REDIS_URL"] = proxy.url
    run_cli(sandbox, "topics", "create")
    supervisor = Supervisor(sandbox, env)
    started = time.monotonic()
    try:
        if args.scenario == "poison":
            run = await poison(sandbox, args, path)
            await supervisor.start()
        else:
            await supervisor.start()
            scenario = {
                "sigkill-storm": sigkill_storm,
                "redis-stop": redis_stop,
                "redis-empty": redis_empty,
                "overload": overload,
            }[args.scenario]
            run = await scenario(Chaos(sandbox, supervisor, path, total, args, proxy))
        streamed = time.monotonic()
        await supervisor.drain(args.timeout_s)
        catch_up_s = time.monotonic() - streamed
        state = await stored_state(sandbox.redis_url, sandbox.name, expected)
        lag = await group_lag(
            sandbox.bootstrap, f"{sandbox.name}-detect", sandbox.topic("delivery-events")
        )
        topic_records = sum(
            (await end_offsets(sandbox.bootstrap, sandbox.topic("delivery-events"))).values()
        )
        pauses = state["campaign_pauses"] + state["tenant_pauses"]
        seen = await outcomes(sandbox, pauses)
        running = supervisor.worker.process is not None and supervisor.worker.process.poll() is None
        rss = supervisor.worker.sample_rss()
        peak = supervisor.worker.peak_rss
    finally:
        code = await supervisor.stop()
        await proxy.down()
        log_text = supervisor.worker.log_path.read_text(errors="replace")
        if not args.keep:
            await remove_sandbox(sandbox)
    return {
        "benchmark": f"chaos-{args.scenario}",
        "sandbox": sandbox.name,
        "command": "python -m bench.chaos " + " ".join(sys.argv[1:]),
        "machine": machine_info(await redis_version(sandbox.redis_url)),
        "load_avg_at_end": load_average(),
        "run": run,
        "topic_records": topic_records,
        "events": compare(expected, state["counts"]),
        **seen,
        "pause_episodes": {"campaign": state["campaign_pauses"], "tenant": state["tenant_pauses"]},
        "lag_at_end": lag,
        "catch_up_s": round(catch_up_s, 1),
        "wall_s": round(time.monotonic() - started, 1),
        "worker_exits": supervisor.exits,
        "worker_running_at_end": running,
        "worker_exit_code_on_sigterm": code,
        "worker_rss_mb": {"end": round((rss or 0) / 2**20, 1), "peak": round(peak / 2**20, 1)},
        "tracebacks_in_log": log_text.count("Traceback"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run one scenario and write its result."""
    args = _args(argv)
    if args.scenario == "kafka-restart":
        print(
            "kafka-restart is not automated: it needs a private broker "
            "(SENDGUARD_STACK_DIR); see docs/RELIABILITY.md",
            file=sys.stderr,
        )
        raise SystemExit(2)
    result = asyncio.run(_run(args))
    path = write_result(f"chaos-{args.scenario}", result)
    print(json.dumps({k: result[k] for k in ("events", "pauses", "dead_letters")}, indent=2))
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    main()
