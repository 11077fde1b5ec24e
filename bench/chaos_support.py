"""Chaos suite plumbing: a supervisor that restarts the worker, and the accounting of a run.

The accounting recounts what was produced by brute force (one count per distinct event id,
per campaign and counter) and compares it with the campaign states the worker left in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections import Counter as Tally
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis.asyncio import Redis

from bench.common import REPO, STACK_VARS, WorkerProcess, group_lag
from processor.adapters.keys import Keys
from processor.domain.codec import decode_state
from processor.domain.policy import DEFAULT_WINDOWS
from processor.domain.windows import Counter

if TYPE_CHECKING:
    from collections.abc import Iterable

    from bench.common import Sandbox

COUNTER_OF_KIND = {
    "sent": Counter.SENT,
    "delivered": Counter.DELIVERED,
    "complaint": Counter.COMPLAINT,
    "unsubscribe": Counter.UNSUBSCRIBE,
    "open": Counter.OPEN,
    "click": Counter.CLICK,
    "deferred": Counter.DEFERRED,
    "dropped-suppressed": Counter.DROPPED_SUPPRESSED,
}
COUNTER_OF_BOUNCE = {
    "hard": Counter.HARD_BOUNCE,
    "soft": Counter.SOFT_BOUNCE,
    "block": Counter.BLOCK,
}
Campaign = tuple[str, str]


def recount(records: Iterable[tuple[bytes, bytes]]) -> dict[Campaign, list[int]]:
    """Brute force: per (tenant, campaign), one count per distinct event id, by counter.

    Records that are not a valid event object (poison) are skipped: they must not count.
    """
    seen: dict[Campaign, dict[str, Counter]] = defaultdict(dict)
    for _key, value in records:
        try:
            body = json.loads(value)
            kind = body["type"]
            counter = (
                COUNTER_OF_BOUNCE[body["bounce_class"]]
                if kind == "bounce"
                else COUNTER_OF_KIND[kind]
            )
            campaign = (body["tenant_id"], body["campaign_id"])
            event_id = body["event_id"]
        except (ValueError, KeyError, TypeError):
            continue
        seen[campaign][event_id] = counter
    counts: dict[Campaign, list[int]] = {}
    for campaign, events in seen.items():
        per = [0] * len(Counter)
        for counter in events.values():
            per[counter] += 1
        counts[campaign] = per
    return counts


async def stored(redis_url: str, prefix: str, campaigns: Iterable[Campaign]) -> dict[str, Any]:
    """Lifetime counts and pause episodes of each campaign, and each tenant's pause episodes."""
    keys = Keys(prefix)
    client = Redis.from_url(redis_url)
    counts: dict[Campaign, list[int]] = {}
    episodes = 0
    tenants: set[str] = set()
    try:
        for tenant, campaign in campaigns:
            tenants.add(tenant)
            blob = await client.hget(keys.campaign_state(tenant, campaign), "s")
            if not isinstance(blob, bytes):
                counts[tenant, campaign] = [0] * len(Counter)
                continue
            state = decode_state(blob, DEFAULT_WINDOWS)
            counts[tenant, campaign] = list(state.windows.lifetime)
            episodes += state.episode
        tenant_episodes = 0
        for tenant in tenants:
            raw = await client.hget(keys.tenant_state(tenant), "ep")
            tenant_episodes += int(raw) if raw else 0
    finally:
        await client.aclose()
    return {"counts": counts, "campaign_pauses": episodes, "tenant_pauses": tenant_episodes}


def compare(
    expected: dict[Campaign, list[int]], counted: dict[Campaign, list[int]]
) -> dict[str, Any]:
    """Events expected vs counted: lost (counted short) and doubled (counted over), in total."""
    lost = doubled = 0
    wrong: list[str] = []
    for campaign, want in expected.items():
        got = counted.get(campaign, [0] * len(Counter))
        short = sum(max(0, w - g) for w, g in zip(want, got, strict=True))
        over = sum(max(0, g - w) for w, g in zip(want, got, strict=True))
        lost, doubled = lost + short, doubled + over
        if short or over:
            wrong.append(":".join(campaign))
    return {
        "expected": sum(sum(c) for c in expected.values()),
        "counted": sum(sum(c) for c in counted.values()),
        "lost": lost,
        "doubled": doubled,
        "campaigns": len(expected),
        "campaigns_wrong": wrong[:20],
        "exact": lost == 0 and doubled == 0,
    }


async def read_all(bootstrap: str, topic: str, partitions: int = 8) -> list[dict[str, Any]]:
    """Every record of `topic` up to its current end, JSON-decoded (undecodable ones skipped)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    messages: list[dict[str, Any]] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batches.values():
                for record in records:
                    with contextlib.suppress(ValueError, TypeError):
                        messages.append(json.loads(record.value or b""))
    finally:
        await consumer.stop()
    return messages


async def outcomes(sandbox: Sandbox, expected_pauses: int) -> dict[str, Any]:
    """Pauses expected vs distinct command ids, dead letters per reason, state-lost notices."""
    deadline = time.monotonic() + 30  # the last pauses may still be on their way out
    while True:
        control = await read_all(sandbox.bootstrap, sandbox.topic("control"))
        pauses = [m for m in control if m.get("command") == "pause"]
        if len({m["command_id"] for m in pauses}) >= expected_pauses or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    letters = await read_all(sandbox.bootstrap, sandbox.topic("dead-letter"))
    health = await read_all(sandbox.bootstrap, sandbox.topic("health"))
    return {
        "pauses": {
            "expected": expected_pauses,
            "distinct_command_ids": len({m["command_id"] for m in pauses}),
            "messages": len(pauses),
        },
        "dead_letters": {
            "by_reason": dict(Tally(str(m.get("error_type")) for m in letters)),
            "distinct_ids": len({m.get("dead_letter_id") for m in letters}),
            "messages": len(letters),
        },
        "state_lost_notices": len([m for m in health if m.get("kind") == "state_lost"]),
    }


async def raise_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    """Let `topic` take records up to `limit` bytes."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(limit)}
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()


class Supervisor:
    """Keeps one worker process running, as systemd or Kubernetes would: restarts it on exit."""

    def __init__(self, sandbox: Sandbox, env: dict[str, str] | None = None) -> None:
        if env:
            sandbox.extra_env.update(env)
        self.worker = WorkerProcess(sandbox)
        self.exits: list[int | None] = []
        self.kills = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the worker, wait until it is ready, then watch it."""
        self.worker.start()
        await self.worker.wait_ready()
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            self.worker.sample_rss()
            process = self.worker.process
            if process is not None and process.poll() is not None:
                self.exits.append(process.returncode)
                self.worker.process = None
                await asyncio.sleep(1)  # a supervisor's restart delay
                self.worker.start()

    async def kill(self) -> None:
        """SIGKILL the worker (the supervisor restarts it)."""
        process = self.worker.process
        if process is not None and process.poll() is None:
            process.kill()
            self.kills += 1

    async def drain(self, timeout_s: float) -> float:
        """Wait until the detection group has committed all of delivery-events; seconds taken."""
        sandbox = self.worker.sandbox
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            with contextlib.suppress(Exception):  # the group may not exist yet after a kill
                lag = await group_lag(
                    sandbox.bootstrap, f"{sandbox.name}-detect", sandbox.topic("delivery-events")
                )
                if lag == 0:
                    return time.monotonic() - started
            await asyncio.sleep(1)
        raise RuntimeError(f"worker did not drain in {timeout_s} s")

    async def stop(self) -> int | None:
        """Stop watching and stop the worker."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return await self.worker.stop()


async def coordinator_ready(bootstrap: str, timeout_s: float = 180) -> None:
    """Wait until a fresh broker can coordinate consumer groups (its offsets topic exists)."""
    deadline = time.monotonic() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            await admin.list_consumer_group_offsets("sendguard-chaos-probe")
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
        else:
            return
        finally:
            await admin.close()


class PrivateStack:
    """A Kafka + Redis of this run's own (`scripts/stack.sh` with its own state folder).

    Only its own broker is ever signalled: the pid comes from its state folder and its command
    line must name that folder. The shared stack is never touched.
    """

    def __init__(self, folder: Path, shared_libs: Path) -> None:
        self.folder = folder
        self.shared_libs = shared_libs

    def _script(self, command: str) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGUARD_")}
        env["SENDGUARD_STACK_DIR"] = str(self.folder)
        done = subprocess.run(  # noqa: S603  # our own script, fixed arguments
            [str(REPO / "scripts" / "stack.sh"), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"stack.sh {command} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def up(self) -> dict[str, str]:
        """Start it (or restart what died, keeping ports and data); its stack variables."""
        self.folder.mkdir(parents=True, exist_ok=True)
        libs = self.folder / "kafka-libs"
        if not libs.exists():
            libs.symlink_to(self.shared_libs)
        self._script("up")
        pairs = (
            line.removeprefix("export ").partition("=")
            for line in (self.folder / "env").read_text().splitlines()
        )
        env = {name.strip(): value.strip().strip("'\"") for name, _, value in pairs if name}
        return {name: env[name] for name in STACK_VARS}

    def signal_kafka(self, signum: int) -> None:
        """Send `signum` to this stack's broker, and wait until it is gone."""
        pid = int((self.folder / "kafka.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        if str(self.folder) not in cmdline:
            raise RuntimeError(f"pid {pid} is not this run's broker: {cmdline[:200]}")
        os.kill(pid, signum)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    def down(self) -> None:
        """Stop it and delete its data."""
        self._script("down")
