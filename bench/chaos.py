"""Chaos suite: one command per failure scenario, each checked for exact counts and pauses.

`python -m bench.chaos SCENARIO [--events N]`; results go to bench/results/chaos-<scenario>-*.json.
Scenarios and what they prove are described in docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.chaos_support import (
    PrivateStack,
    Supervisor,
    compare,
    coordinator_ready,
    outcomes,
    raise_max_message_bytes,
    recount,
)
from bench.chaos_support import stored as stored_state
from bench.common import (
    REPO,
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

SCENARIOS = ("sigkill-storm", "redis-stop", "redis-empty", "kafka-restart", "poison", "overload")
DEFAULT_EVENTS = {
    "sigkill-storm": 200_000,
    "redis-stop": 100_000,
    "redis-empty": 100_000,
    "poison": 100_000,
    "kafka-restart": 100_000,
    "overload": 400_000,  # an upper bound: produced for --seconds only
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
    parser.add_argument("--rate", type=float, help="events/s produced (overload: 2x the worker's)")
    parser.add_argument(
        "--outage-s", type=float, default=30.0, help="redis-stop, kafka-restart: outage"
    )
    parser.add_argument("--poison", type=int, default=10_000, help="poison: bad records")
    parser.add_argument("--seconds", type=float, default=20.0, help="overload: produce time")
    parser.add_argument("--calibrate", type=int, default=50_000, help="overload: backlog")
    parser.add_argument(
        "--kafka-libs",
        default=str(REPO / ".stack" / "kafka-libs"),
        help="kafka-restart: the Kafka jars its private stack links to",
    )
    parser.add_argument(
        "--private-stack",
        action="store_true",
        help="run on a Kafka + Redis of this run's own (kafka-restart always does)",
    )
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
    broker: PrivateStack | None = None
    """The private stack of kafka-restart (None: the shared one)."""
    produced: int | None = None
    """How many of the file's records were produced (None: all of them)."""


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
    """Time the worker on a backlog, then produce at twice that rate for `--seconds`."""
    sandbox, args = ctx.sandbox, ctx.args
    group, topic = f"{sandbox.name}-detect", sandbox.topic("delivery-events")
    records = read_lines(ctx.path)
    backlog = list(itertools.islice(records, args.calibrate))
    rest = sandbox.data_dir / "rest.tsv"
    with rest.open("wb") as out:
        out.writelines(key + b"\t" + value + b"\n" for key, value in records)
    started = time.monotonic()
    await produce_all(sandbox.bootstrap, topic, backlog, sandbox.partitions)
    while await group_lag(sandbox.bootstrap, group, topic):  # noqa: ASYNC110  # polls the broker
        await asyncio.sleep(0.5)
    worker_rate = len(backlog) / (time.monotonic() - started)
    rate = args.rate or 2 * worker_rate
    stream = BackgroundStream(sandbox.bootstrap, topic, rest, rate)
    producing = asyncio.create_task(stream.run())
    peak_lag = 0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline and not producing.done():
        await asyncio.sleep(1)
        peak_lag = max(peak_lag, await group_lag(sandbox.bootstrap, group, topic))
    stream.stop()
    await producing
    ctx.produced = len(backlog) + stream.produced
    return {
        "backlog": len(backlog),
        "worker_rate_on_backlog": round(worker_rate),
        "target_rate": round(rate),
        "produce_rate": round(stream.achieved_rate),
        "overload_ratio": round(stream.achieved_rate / worker_rate, 2),
        "streamed": stream.produced,
        "stream_s": round(stream.seconds, 1),
        "peak_lag": peak_lag,
    }


async def kafka_restart(ctx: Chaos) -> dict[str, Any]:
    """Restart this run's own broker under the worker: SIGTERM, then SIGKILL, `--outage-s` each.

    Each half of the events is produced (and acknowledged) before its restart, so what the
    broker holds is what was produced; the worker is mid-backlog when its broker goes.
    """
    sandbox, args, broker = ctx.sandbox, ctx.args, ctx.broker
    if broker is None:
        raise RuntimeError("kafka-restart runs on a private stack only")
    records = list(read_lines(ctx.path))
    half = len(records) // 2
    restarts = []
    for part, signum in ((records[:half], signal.SIGTERM), (records[half:], signal.SIGKILL)):
        await produce_all(sandbox.bootstrap, sandbox.topic("delivery-events"), part, 8)
        await asyncio.sleep(2)  # the worker is into the backlog
        started = time.monotonic()
        await asyncio.to_thread(broker.signal_kafka, signum)
        await asyncio.sleep(args.outage_s)
        await asyncio.to_thread(broker.up)
        restarts.append({"signal": signum.name, "down_s": round(time.monotonic() - started, 1)})
    return {"restarts": restarts, "exits": list(ctx.supervisor.exits)}


async def poison(sandbox: Sandbox, args: argparse.Namespace, path: Path) -> dict[str, Any]:
    """Pre-fill the topic (max.message.bytes raised) with events and poison, 1 and 5 MB too."""
    topic = sandbox.topic("delivery-events")
    await raise_max_message_bytes(sandbox.bootstrap, topic, TOPIC_MAX_BYTES)
    mix = (*SMALL_POISON_MIX, OVERSIZED_70K)
    events = sum(1 for _ in read_lines(path))
    small = args.poison - len(LARGE_POISON)
    share = small / (events + small)
    records = list(with_poison(read_lines(path), share, mix))
    mixed = len(records) - events
    # The running share rounds: top up at the end, in the mix's order, to exactly `small`.
    records += [(records[-1][0], mix[n % len(mix)][1]) for n in range(mixed, small)]
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


async def _stack(args: argparse.Namespace) -> tuple[dict[str, str], PrivateStack | None]:
    """The shared stack, or a private one (kafka-restart, --private-stack) started here."""
    if args.scenario != "kafka-restart" and not args.private_stack:
        return stack_env(), None
    folder = Path(tempfile.mkdtemp(prefix="sendguard-chaos-stack-"))
    broker = PrivateStack(folder, Path(args.kafka_libs))
    stack = await asyncio.to_thread(broker.up)
    try:
        await coordinator_ready(stack["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"])
    except Exception:
        await asyncio.to_thread(broker.down)
        raise
    return stack, broker


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    stack, broker = await _stack(args)
    sandbox = Sandbox(stack, new_name(f"chaos-{args.scenario}"))
    machine = machine_info(await redis_version(sandbox.redis_url))
    total = args.events or DEFAULT_EVENTS[args.scenario]
    path = event_lines(total)
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
                "kafka-restart": kafka_restart,
            }[args.scenario]
            chaos = Chaos(sandbox, supervisor, path, total, args, proxy, broker)
            run = await scenario(chaos)
            total = chaos.produced or total
        streamed = time.monotonic()
        await supervisor.drain(args.timeout_s)
        catch_up_s = time.monotonic() - streamed
        expected = recount(itertools.islice(read_lines(path), total))
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
        if broker is not None and not args.keep:
            await asyncio.to_thread(broker.down)
        elif not args.keep:
            await remove_sandbox(sandbox)
    return {
        "benchmark": f"chaos-{args.scenario}",
        "sandbox": sandbox.name,
        "command": "python -m bench.chaos " + " ".join(sys.argv[1:]),
        "machine": machine,
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
    result = asyncio.run(_run(args))
    path = write_result(f"chaos-{args.scenario}", result)
    print(json.dumps({k: result[k] for k in ("events", "pauses", "dead_letters")}, indent=2))
    print(f"-> {path}")
    return result


if __name__ == "__main__":
    main()
