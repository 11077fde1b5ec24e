"""scripts/stack.sh on a private stack of its own (own state folder, ports and processes).

Never touches the shared stack: every pid it signals is read from its own state folder.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio import Redis

from tests.integration.conftest import REPO

if TYPE_CHECKING:
    from collections.abc import Iterator

SCRIPT = str(REPO / "scripts" / "stack.sh")


def _stack(stack_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDGUARD_")}
    env["SENDGUARD_STACK_DIR"] = str(stack_dir)
    return subprocess.run(  # noqa: S603  # our own script, fixed arguments
        [SCRIPT, command], env=env, capture_output=True, text=True, timeout=180, check=False
    )


def _parse_env(text: str) -> dict[str, str]:
    pairs = (line.removeprefix("export ").partition("=") for line in text.splitlines())
    return {name: value.strip("'\"") for name, _, value in pairs if name}


@pytest.fixture
def private_stack(tmp_path: Path) -> Iterator[Path]:
    """A state folder for a stack of this test's own, taken down (data deleted) afterwards."""
    shared = Path(os.environ.get("SENDGUARD_STACK_DIR", REPO / ".stack"))
    if not (shared / "kafka-libs" / ".stamp").exists():
        pytest.skip(f"no Kafka jars in {shared}/kafka-libs to share (scripts/stack.sh up once)")
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    (stack_dir / "kafka-libs").symlink_to(shared / "kafka-libs")
    yield stack_dir
    _stack(stack_dir, "down")


def _kill(stack_dir: Path, name: str, must_contain: str) -> None:
    pid = int((stack_dir / f"{name}.pid").read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert must_contain in cmdline, f"pid {pid} is not this test's {name}: {cmdline}"
    os.kill(pid, signal.SIGKILL)


async def test_up_on_an_unhealthy_stack_restarts_what_died_keeping_ports_and_data(
    private_stack: Path,
) -> None:
    """After Redis and Kafka are killed, `up` restarts both on the same ports with their data."""
    started = await asyncio.to_thread(_stack, private_stack, "up")
    assert started.returncode == 0, started.stderr
    env = _parse_env(started.stdout)
    bootstrap, redis_url = env["SENDGUARD_KAFKA_BOOTSTRAP_SERVERS"], env["SENDGUARD_REDIS_URL"]
    redis = Redis.from_url(redis_url)
    await redis.set("survivor", "kept")
    await redis.aclose()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    await producer.send_and_wait("kept", b"record")
    await producer.stop()
    await asyncio.sleep(1.5)  # the append-only file is written to disk every second

    _kill(private_stack, "redis", redis_url.rsplit(":", 1)[1].split("/")[0])
    _kill(private_stack, "kafka", str(private_stack / "server.properties"))
    recovered = await asyncio.to_thread(_stack, private_stack, "up")

    assert recovered.returncode == 0, recovered.stderr
    assert "Redis restarted" in recovered.stderr
    assert "Kafka restarted" in recovered.stderr
    assert _parse_env(recovered.stdout) == env
    redis = Redis.from_url(redis_url)
    assert await redis.get("survivor") == b"kept"
    await redis.aclose()
    consumer = AIOKafkaConsumer(
        "kept", bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=20_000, max_records=1)
    finally:
        await consumer.stop()
    assert [r.value for records in batch.values() for r in records] == [b"record"]
