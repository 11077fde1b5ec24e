"""A running worker's /metrics, scraped while it works: the counters move with the events."""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from typing import TYPE_CHECKING

from processor.runtime.observe import EVENT_TYPES
from tests.integration.conftest import WorkerProcess, produce, read_topic, until
from tests.integration.test_detection import bad_list, counter_of

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from tests.integration.conftest import Sandbox


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> str:
    """The text of /metrics on a local port."""
    # Our own worker on loopback, a fixed http:// URL: nothing user-controlled is opened.
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:  # see above
        body: bytes = response.read()
        return body.decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample; 0 when the series does not exist yet."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(name + (f"{{{wanted}}}" if labels else "")) + r" (\S+)"
    found = re.search(rf"^{pattern}$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _applied(text: str) -> float:
    """Applied events of every type."""
    return sum(sample(text, "sendguard_events_applied_total", type=t) for t in EVENT_TYPES)


async def test_the_worker_metrics_move_with_the_events(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """Events by type, Redis calls, a dead letter, a pause, batch timings and lag: on /metrics."""
    port = free_port()
    worker = WorkerProcess(sandbox, env={"SENDGUARD_METRICS_PORT": str(port)})
    await worker.start()
    try:
        before = await asyncio.to_thread(scrape, port)
        assert sample(before, "sendguard_events_applied_total", type="sent") == 0
        topic = sandbox.topic("delivery-events")
        events = bad_list("acme", "metrics-bad", range(400), time.time())
        await produce(producer, topic, events)
        await producer.send_and_wait(topic, value=b"{not json", key=b"acme:metrics-bad")
        await read_topic(sandbox, sandbox.topic("control"), until=bool)

        async def counted() -> bool:
            text = await asyncio.to_thread(scrape, port)
            return (
                _applied(text) >= len(events)
                and sample(text, "sendguard_dead_letters_total", reason="invalid_json") == 1
            )

        await until(counted, timeout_s=20)
        text = await asyncio.to_thread(scrape, port)
        assert _applied(text) == len(events)
        by_type: dict[str, int] = {}
        for event in events:
            type_ = counter_of(event).name.lower()
            by_type[type_] = by_type.get(type_, 0) + 1
        assert set(by_type) == {"sent", "delivered", "hard_bounce"}
        for type_, count in by_type.items():
            assert sample(text, "sendguard_events_applied_total", type=type_) == count
        assert (
            sample(text, "sendguard_commands_published_total", command="pause", scope="campaign")
            == 1
        )
        assert sample(text, "sendguard_batch_apply_seconds_count") >= 1
        assert sample(text, "sendguard_decision_latency_seconds_count") == 1
        assert sample(text, "sendguard_campaigns", status="paused") == 1
        assert sample(text, "sendguard_last_batch_timestamp_seconds") > 0
        loads = sample(
            text, "sendguard_redis_call_seconds_count", operation="loading campaign state"
        )
        assert loads >= 1
        assert sample(text, "sendguard_redis_errors_total", operation="writing campaign state") == 0
        assert 'process="worker"' in text
    finally:
        await worker.stop()


def test_a_taken_metrics_port_stops_the_worker_with_a_clear_message(sandbox: Sandbox) -> None:
    """Two processes on one metrics port: the second says so and exits 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        sandbox.extra_env["SENDGUARD_METRICS_PORT"] = str(port)
        from tests.integration.conftest import run_cli  # noqa: PLC0415  # only this test needs it

        result = run_cli(sandbox, "worker", timeout_s=60)
    assert result.returncode != 0
    assert f"metrics endpoint 127.0.0.1:{port} cannot listen" in result.stdout + result.stderr
