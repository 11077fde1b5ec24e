"""Memory: Redis bytes per active campaign and per deduplicated event id; worker RSS under load.

Usage: `source .stack/env && .venv/bin/python -m bench.memory [--campaigns K] [--ids N]
[--steady-s S] [--quick]`.

A fresh `python -m processor worker` runs in its own sandbox and is fed, in order:

1. K active campaigns (default 10), each with 31 h of event-time history ending now: every
   minute a `sent` and a `delivered`, and at fixed strides opens (1/7 min), clicks (1/13),
   deferrals (1/17), soft bounces (1/29), hard bounces (1/97), unsubscribes (1/150) and
   complaints (1/400), to recipients from the workload generator's domain mix
   (`processor.simulation.workload.contact`), so every bucket of the 1 h ring (60 x 1 min) and
   of the 24 h ring (60 x 24 min + 7 h of history) holds counts;
2. one campaign with N `sent` events (default 200,000) with distinct event ids, all in the
   last 20 minutes (one event-time day, so one dedup set of N digests);
3. S seconds (default 30) of the throughput benchmark's demo-mix stream at 3,000 events/s,
   sampling the worker's VmRSS every 0.5 s (steady load).

Once the worker has committed everything, Redis is asked `MEMORY USAGE key SAMPLES 0` (every
element counted) and `OBJECT ENCODING` of each campaign state hash, of the dedup set and of the
tenant's contact-state shards; the decoded state shows how many ring slots hold counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from bench.common import (
    BackgroundStream,
    Sandbox,
    WorkerProcess,
    event_lines,
    group_lag,
    load_average,
    machine_info,
    median,
    new_name,
    produce_all,
    redis_version,
    remove_sandbox,
    run_cli,
    stack_env,
    write_result,
)
from processor.adapters.keys import Keys
from processor.domain.codec import decode_state
from processor.domain.policy import DEFAULT_WINDOWS
from processor.domain.windows import WINDOWED_COUNTERS
from processor.simulation.workload import contact
from schemas.base import campaign_key

PARTITIONS = 8
HISTORY_MIN = 31 * 60
STRIDES = {
    "open": 7,
    "click": 13,
    "deferred": 17,
    "soft": 29,
    "hard": 97,
    "unsubscribe": 150,
    "complaint": 400,
}
BAR_CAMPAIGN_BYTES = 2048
BAR_ID_BYTES = 64
BAR_RSS_MB = 300
STEADY_RATE = 3000.0


def _line(  # noqa: PLR0917  # one event's fields
    tenant: str, campaign: str, event_id: str, k: int, kind: str, at: float
) -> bytes:
    recipient = contact(1, tenant, k)
    body: dict[str, Any] = {
        "schema_version": 1,
        "event_id": event_id,
        "tenant_id": tenant,
        "campaign_id": campaign,
        "recipient": {"contact_id": recipient.contact_id, "address": recipient.address},
        "type": "bounce" if kind in {"soft", "hard"} else kind,
        "occurred_at": datetime.fromtimestamp(at, tz=UTC).isoformat(),
        "provider": "bench",
    }
    if kind in {"soft", "hard"}:
        body["bounce_class"] = kind
    return json.dumps(body, separators=(",", ":")).encode()


def active_campaign(tenant: str, campaign: str, now: float) -> list[tuple[bytes, bytes]]:
    """31 h of a busy campaign's events, in event-time order."""
    key = campaign_key(tenant, campaign).encode()
    out = []
    start = now - HISTORY_MIN * 60
    for m in range(HISTORY_MIN):
        at = start + m * 60
        kinds = ["sent", "delivered"] + [k for k, n in STRIDES.items() if m % n == n - 1]
        for j, kind in enumerate(kinds):
            out.append((key, _line(tenant, campaign, f"{campaign}-{m}-{kind}", m, kind, at + j)))
    return out


def dedup_campaign(tenant: str, campaign: str, count: int, now: float) -> list[tuple[bytes, bytes]]:
    """`count` sends with distinct event ids in the last 20 minutes (one UTC day)."""
    midnight = datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0).timestamp()
    span = min(1200.0, now - midnight - 1)
    key = campaign_key(tenant, campaign).encode()
    return [
        (key, _line(tenant, campaign, f"id-{i}", i, "sent", now - span + span * i / count))
        for i in range(count)
    ]


async def drain(sandbox: Sandbox, worker: WorkerProcess, timeout_s: float = 900) -> float:
    """Wait until the worker has committed the whole delivery-events topic; seconds taken."""
    started = time.monotonic()
    group = f"{sandbox.name}-detect"
    while time.monotonic() - started < timeout_s:
        worker.sample_rss()
        if await group_lag(sandbox.bootstrap, group, sandbox.topic("delivery-events")) == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError("worker did not drain the topic in time")


async def _usage(redis: Redis, key: str) -> dict[str, Any]:
    encoding = await redis.object("encoding", key)
    return {
        "memory_usage": int(await redis.memory_usage(key, samples=0) or 0),
        "encoding": encoding.decode() if isinstance(encoding, bytes) else str(encoding),
    }


async def campaign_state(redis: Redis, keys: Keys, tenant: str, campaign: str) -> dict[str, Any]:
    """Size and make-up of one campaign's state hash."""
    key = keys.campaign_state(tenant, campaign)
    fields = await redis.hgetall(key)
    raw = fields.get(b"s", b"")
    blob = raw if isinstance(raw, bytes) else raw.encode()
    state = decode_state(blob, DEFAULT_WINDOWS)
    rings = {}
    for window in state.windows.windows:
        counts = window.counts
        slots = len(counts) // WINDOWED_COUNTERS
        filled = sum(
            1
            for s in range(slots)
            if any(counts[s * WINDOWED_COUNTERS : (s + 1) * WINDOWED_COUNTERS])
        )
        rings[window.spec.name] = f"{filled}/{slots} slots hold counts"
    return {
        **(await _usage(redis, key)),
        "fields": {
            (k.decode() if isinstance(k, bytes) else str(k)): len(v) for k, v in fields.items()
        },
        "state_blob_bytes": len(blob),
        "rings": rings,
        "domains_tracked": {m.value: len(c) for m, c in state.domains.items()},
    }


async def measure(redis: Redis, keys: Keys, tenants: dict[str, Any]) -> dict[str, Any]:
    """Redis memory of the campaign states, the dedup set and the contact shards."""
    states = [
        await campaign_state(redis, keys, tenant, campaign)
        for tenant, campaign in tenants["active"]
    ]
    tenant, campaign = tenants["dedup"]
    seen = []
    async for key in redis.scan_iter(match=keys.campaign_seen(tenant, campaign, 0)[:-1] + "*"):
        members = int(await redis.scard(key))
        usage = await _usage(redis, key.decode())
        seen.append({"key": key.decode(), "members": members, **usage})
    attempted_key = keys.campaign_attempted(tenant, campaign)
    attempted = None
    if await redis.exists(attempted_key):
        attempted = {
            "members": int(await redis.scard(attempted_key)),
            **(await _usage(redis, attempted_key)),
        }
    shards = [
        k.decode() async for k in redis.scan_iter(match=f"{keys.prefix}:{{t:{tenant}}}:contacts:*")
    ]
    contact_bytes = sum([int(await redis.memory_usage(k, samples=0) or 0) for k in shards])
    contacts = sum([int(await redis.hlen(k)) for k in shards])
    config = await redis.config_get("set-max-*")
    config.update(await redis.config_get("hash-max-*"))
    per_campaign = [s["memory_usage"] for s in states]
    big = max(seen, key=lambda s: s["members"]) if seen else None
    return {
        "campaign_states": states,
        "median_state_bytes": median(per_campaign),
        "max_state_bytes": max(per_campaign),
        "seen_sets": seen,
        "bytes_per_event_id": round(big["memory_usage"] / big["members"], 1) if big else None,
        "attempted_set": attempted,
        "contact_shards": {
            "shards": len(shards),
            "contacts": contacts,
            "bytes": contact_bytes,
            "bytes_per_contact": round(contact_bytes / contacts, 1) if contacts else None,
        },
        "redis_config": config,
    }


async def main(argv: list[str] | None = None) -> dict[str, Any]:  # noqa: PLR0915  # one linear script
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--campaigns", type=int, default=10, help="active campaigns")
    parser.add_argument("--ids", type=int, default=200_000, help="event ids in the dedup set")
    parser.add_argument("--steady-s", type=float, default=30.0, help="steady-load seconds")
    parser.add_argument("--quick", action="store_true", help="5 campaigns, 100k ids, 15 s")
    parser.add_argument("--keep", action="store_true", help="keep topics and Redis keys")
    args = parser.parse_args(argv)
    if args.quick:
        args.campaigns, args.ids, args.steady_s = 5, 100_000, 15.0
    stack = stack_env()
    info = machine_info(await redis_version(stack["SENDGUARD_REDIS_URL"]))
    path = event_lines(1_000_000)
    sandbox = Sandbox(stack, new_name("mem"), partitions=PARTITIONS)
    run_cli(sandbox, "topics", "create")
    topic = sandbox.topic("delivery-events")
    keys = Keys(sandbox.name)
    now = time.time()
    tenants: dict[str, Any] = {
        "active": [(f"mem{j}", f"active{j}") for j in range(args.campaigns)],
        "dedup": ("memdedup", "big"),
    }
    records = [r for t, c in tenants["active"] for r in active_campaign(t, c, now)]
    active_events = len(records)
    dedup_tenant, dedup_name = tenants["dedup"]
    records += dedup_campaign(dedup_tenant, dedup_name, args.ids, now)
    worker = WorkerProcess(sandbox)
    worker.start()
    redis = Redis.from_url(sandbox.redis_url)
    steady: list[int] = []
    try:
        await worker.wait_ready()
        rss_idle = worker.sample_rss()
        await produce_all(sandbox.bootstrap, topic, iter(records), PARTITIONS)
        drain_s = await drain(sandbox, worker)
        print(f"drained {len(records):,} events in {drain_s:.1f} s")
        measured = await measure(redis, keys, tenants)
        load = load_average()
        background = BackgroundStream(sandbox.bootstrap, topic, path, STEADY_RATE)
        task = asyncio.create_task(background.run())
        started = time.monotonic()
        while time.monotonic() - started < args.steady_s:
            await asyncio.sleep(0.5)
            rss = worker.sample_rss()
            if rss is not None and time.monotonic() - started > 5:
                steady.append(rss)
        background.stop()
        await task
        lag_end = await group_lag(sandbox.bootstrap, f"{sandbox.name}-detect", topic)
    finally:
        await redis.aclose()
        await worker.stop()
        if not args.keep:
            await remove_sandbox(sandbox)
    rss_median = round(median(steady) / 2**20, 1) if steady else None
    per_id = measured["bytes_per_event_id"]
    bars = {
        "campaign_state": measured["max_state_bytes"] <= BAR_CAMPAIGN_BYTES,
        "event_id": per_id is not None and per_id <= BAR_ID_BYTES,
        "worker_rss": worker.peak_rss / 2**20 < BAR_RSS_MB,
    }
    result = {
        "benchmark": "memory",
        "command": "python -m bench.memory " + " ".join(argv or sys.argv[1:]),
        "machine": info,
        "load_avg_steady_start": load,
        "active_campaigns": args.campaigns,
        "active_campaign_events_each": active_events // max(1, args.campaigns),
        "dedup_ids": args.ids,
        "drain_s": round(drain_s, 1),
        **measured,
        "worker_rss_mb": {
            "idle_after_start": round((rss_idle or 0) / 2**20, 1),
            "steady_median": rss_median,
            "steady_max": round(max(steady) / 2**20, 1) if steady else None,
            "peak_whole_run": round(worker.peak_rss / 2**20, 1),
        },
        "steady_rate_achieved": round(background.achieved_rate),
        "lag_after_steady": lag_end,
        "bars": {
            "campaign_state": f"<= {BAR_CAMPAIGN_BYTES} B",
            "event_id": f"<= {BAR_ID_BYTES} B",
            "worker_rss": f"< {BAR_RSS_MB} MB",
        },
        "bars_met": bars,
    }
    written = write_result("memory", result)
    print(
        f"\nmemory: campaign state median {measured['median_state_bytes']} B (max "
        f"{measured['max_state_bytes']}, bar <= {BAR_CAMPAIGN_BYTES}); "
        f"{per_id} B per event id (bar <= {BAR_ID_BYTES}); "
        f"worker RSS steady median {rss_median} MB, peak "
        f"{result['worker_rss_mb']['peak_whole_run']} MB (bar < {BAR_RSS_MB}) -> {written}"
    )
    return result


if __name__ == "__main__":
    asyncio.run(main())
