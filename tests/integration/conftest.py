"""Fixtures on the real stack: Kafka and Redis from scripts/stack.sh, unique names per test.

If the stack's variables are not set, `scripts/stack.sh up` is run once for the session.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

REPO = Path(__file__).resolve().parents[2]


def _stack_env() -> dict[str, str]:
    wanted = ("SENDGUARD_KAFKA_BOOTSTRAP_SERVERS", "SENDGUARD_REDIS_URL")
    if all(os.environ.get(name) for name in wanted):
        return {name: os.environ[name] for name in wanted}
    # Our own script, by absolute path: no untrusted input reaches the command line.
    script = str(REPO / "scripts" / "stack.sh")
    subprocess.run([script, "up"], check=True, stdout=subprocess.DEVNULL)  # noqa: S603
    env: dict[str, str] = {}
    for line in (REPO / ".stack" / "env").read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name.strip()] = value.strip().strip("'\"")
    return {name: env[name] for name in wanted}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the real stack: mark it so (`-m integration`)."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """The bootstrap servers and Redis URL of the running stack."""
    return _stack_env()


OPERATOR_KEY_ID = "ops-test"
OPERATOR_KEY = "integration-tests-operator-key-0123456789abcdef"
"""The global operator key every sandbox's worker trusts and its CLI signs with."""


@dataclass
class Sandbox:
    """One test's own topic prefix, Redis key prefix, consumer group and data folder."""

    stack: dict[str, str]
    name: str
    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        """Kafka bootstrap servers."""
        return self.stack["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"]

    def topic(self, role: str) -> str:
        """Full name of a topic role in this sandbox."""
        return f"{self.name}.{role}"

    def operator_keys_file(self) -> Path:
        """The operator keys file of the sandbox's workers (written on first use)."""
        path = self.data_dir.parent / "operator-keys.yaml"
        if not path.exists():
            path.write_text(f"global:\n  - id: {OPERATOR_KEY_ID}\n    secret: {OPERATOR_KEY}\n")
        return path

    def env(self) -> dict[str, str]:
        """Environment for a `sendguard` process confined to this sandbox."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGUARD_")}
        env.update(self.stack)
        env.update(
            {
                "SENDGUARD_TOPIC_PREFIX": f"{self.name}.",
                "SENDGUARD_REDIS_KEY_PREFIX": self.name,
                "SENDGUARD_APP_ID": self.name,
                "SENDGUARD_DATA_DIR": str(self.data_dir),
                "SENDGUARD_TOPIC_PARTITIONS": "4",
                "SENDGUARD_KAFKA_SESSION_TIMEOUT_S": "6",
                "SENDGUARD_KAFKA_GROUP_INSTANCE_ID": f"{self.name}-worker",
                "SENDGUARD_BATCH_MAX_WAIT_MS": "20",
                "SENDGUARD_HEALTH_MIN_INTERVAL_S": "3600",
                "SENDGUARD_OPERATOR_KEYS_FILE": str(self.operator_keys_file()),
                "SENDGUARD_OPERATOR_KEY_ID": OPERATOR_KEY_ID,
                "SENDGUARD_OPERATOR_KEY": OPERATOR_KEY,
            }
        )
        env.update(self.extra_env)
        return env


@pytest.fixture
def sandbox(stack: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Sandbox:
    """A fresh sandbox named after the test."""
    short = request.node.name.replace("test_", "")[:24].replace("[", "-").strip("]-_")
    name = f"t-{short}-{uuid.uuid4().hex[:8]}".replace("_", "-")
    return Sandbox(stack, name, tmp_path / "data")


@pytest.fixture
async def redis(sandbox: Sandbox) -> AsyncIterator[Redis]:
    """A Redis client; the sandbox's keys are deleted afterwards."""
    client = Redis.from_url(sandbox.stack["SENDGUARD_REDIS_URL"])
    yield client
    keys = [key async for key in client.scan_iter(match=f"{sandbox.name}:*", count=1000)]
    for start in range(0, len(keys), 1000):
        await client.unlink(*keys[start : start + 1000])
    await client.aclose()


@pytest.fixture
async def producer(sandbox: Sandbox) -> AsyncIterator[AIOKafkaProducer]:
    """A producer that waits for all replicas (the default partitioner, as the MTA would)."""
    client = AIOKafkaProducer(bootstrap_servers=sandbox.bootstrap, acks="all")
    await client.start()
    yield client
    await client.stop()


def run_cli(
    sandbox: Sandbox, *args: str, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a `sendguard` command in the sandbox."""
    return subprocess.run(  # noqa: S603  # the test's own interpreter and arguments
        [sys.executable, "-m", "processor", *args],
        env=sandbox.env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
        cwd=sandbox.data_dir.parent,
    )


class WorkerProcess:
    """`sendguard worker` as a real process, started and stopped by tests."""

    def __init__(
        self, sandbox: Sandbox, *, name: str = "worker", env: dict[str, str] | None = None
    ) -> None:
        self.sandbox = sandbox
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = sandbox.data_dir.parent / f"{name}.log"
        self.env = dict(env or {})
        """Overrides of the sandbox's environment for this process only."""

    def _ready_lines(self) -> list[str]:
        roles = self.env.get("SENDGUARD_WORKER_ROLES", "detect,resume")
        return ["Worker ready", *(["detection consumer ready"] if "detect" in roles else [])]

    async def start(self, *, ready_timeout_s: float = 90) -> None:
        """Start and wait until the worker has its partitions (its log says so)."""
        self.sandbox.data_dir.mkdir(parents=True, exist_ok=True)
        start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(  # noqa: ASYNC220  # a long-lived child, not awaited here
                [sys.executable, "-m", "processor", "worker"],
                env={**self.sandbox.env(), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.sandbox.data_dir.parent,
            )
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[start:].decode(errors="replace")
            if all(line in text for line in self._ready_lines()):
                return
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.2)
        await self.stop()
        tail = self.log_path.read_text(errors="replace")[-4000:]
        pytest.fail(f"worker did not become ready; log tail:\n{tail}")

    async def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Stop the worker (SIGTERM by default, SIGKILL to simulate a crash)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            for _ in range(300):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.1)
            else:
                self.process.kill()
        code = self.process.wait()
        self.process = None
        return code

    def log_text(self) -> str:
        """Everything the worker logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
async def worker(sandbox: Sandbox, redis: Redis) -> AsyncIterator[WorkerProcess]:  # noqa: ARG001  # its teardown deletes the keys the worker wrote
    """A worker for the sandbox (not started); always stopped at the end, its keys deleted."""
    process = WorkerProcess(sandbox)
    yield process
    await process.stop()


async def read_topic(
    sandbox: Sandbox,
    topic: str,
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout_s: float = 60,
) -> list[dict[str, Any]]:
    """Read a topic from the beginning until `until(messages)` holds or the deadline passes.

    Messages are JSON-decoded values with `_key` and `_partition` added.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=sandbox.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    messages: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    value = json.loads(record.value) if record.value else {}
                    value["_key"] = record.key.decode() if record.key else None
                    value["_partition"] = tp.partition
                    messages.append(value)
            if until(messages):
                return messages
    finally:
        await consumer.stop()
    return messages


async def until(condition: Callable[[], Awaitable[bool]], timeout_s: float = 30) -> None:
    """Wait until `condition()` holds, polling; fail the test at the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never met"
        await asyncio.sleep(0.05)


def event(
    *,
    event_id: str,
    tenant: str,
    campaign: str,
    kind: str,
    at: float,
    contact: str,
    bounce_class: str | None = None,
) -> dict[str, Any]:
    """A normalized delivery event as JSON (epoch seconds `at`)."""
    from datetime import UTC, datetime  # noqa: PLC0415  # local helper import keeps the header short

    body: dict[str, Any] = {
        "event_id": event_id,
        "tenant_id": tenant,
        "campaign_id": campaign,
        "recipient": {"contact_id": contact, "address": f"{contact}@example.com"},
        "type": kind,
        "occurred_at": datetime.fromtimestamp(at, tz=UTC).isoformat(),
    }
    if bounce_class is not None:
        body["bounce_class"] = bounce_class
    return body


async def produce(
    producer: AIOKafkaProducer, topic: str, events: list[dict[str, Any]], *, raw: bool = False
) -> None:
    """Produce events keyed `tenant:campaign`, and wait until all are acknowledged."""
    futures = []
    for body in events:
        key = f"{body.get('tenant_id')}:{body.get('campaign_id')}".encode()
        value = body if raw else json.dumps(body).encode()
        futures.append(await producer.send(topic, value=value, key=key))
    await asyncio.gather(*futures)
