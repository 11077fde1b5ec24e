"""Security edges on the real broker: logs at DEBUG, topic retention, full-size raw records."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.integration.conftest import event, produce, read_topic, run_cli
from tests.integration.test_webhooks import (
    MAILGUN_KEY,
    PASSWORDS,
    _free_port,
    basic,
    material,
    sample,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiokafka import AIOKafkaProducer

    from tests.integration.conftest import Sandbox, WorkerProcess
    from tests.integration.test_webhooks import Material

__all__ = ["material"]  # the credentials fixture of test_webhooks, used here by name

ADDRESS = "john@example.com"  # the recipient of Postmark's bounce_hard sample


@contextlib.asynccontextmanager
async def webhooks_cli(sandbox: Sandbox, material: Material, **env: str) -> AsyncIterator[str]:
    """`sendguard webhooks` as a process in the sandbox; yields its base URL, then stops it."""
    sandbox.data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = sandbox.data_dir / "webhooks.log"
    environment = {
        **sandbox.env(),
        "SENDGUARD_WEBHOOK_CREDENTIALS_FILE": str(material.credentials_file),
        "TEST_MAILGUN_KEY": MAILGUN_KEY,
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220, S603  # a long-lived child we signal below
            [sys.executable, "-m", "processor", "webhooks", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=sandbox.data_dir.parent,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            status = None
            while status != 200 and time.monotonic() < deadline and process.poll() is None:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"{url}/healthz") as response:
                        status = response.status
                if status != 200:
                    await asyncio.sleep(0.2)
        assert status == 200, log_path.read_text()
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def topic_configs(sandbox: Sandbox, role: str) -> dict[str, str]:
    """The configs of one sandbox topic, as the broker reports them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=sandbox.bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, sandbox.topic(role))]
        )
    finally:
        await admin.close()
    [resource] = response.resources
    return {entry[0]: entry[1] for entry in resource[4]}


async def test_topics_holding_addresses_are_created_with_a_bounded_retention(
    sandbox: Sandbox,
) -> None:
    """`sendguard topics create`: webhooks-raw and dead-letter keep 7 days; raw fits 1 MiB."""
    created = run_cli(sandbox, "topics", "create")
    assert created.returncode == 0, created.stderr
    week_ms = str(7 * 86400 * 1000)
    raw = await topic_configs(sandbox, "webhooks-raw")
    assert (raw["retention.ms"], int(raw["max.message.bytes"]) > 4 * 1024 * 1024 // 3) == (
        week_ms,
        True,
    )
    assert (await topic_configs(sandbox, "dead-letter"))["retention.ms"] == week_ms


async def test_the_receiver_at_debug_logs_no_address_and_publishes_a_full_size_body(
    sandbox: Sandbox, material: Material
) -> None:
    """At DEBUG the receiver logs no address and a body near 1 MiB is published whole.

    Its own DEBUG lines are there (hashed), no library's record dump; the raw copy of the big
    body is over Kafka's 1 MB default.
    """
    assert run_cli(sandbox, "topics", "create").returncode == 0
    bounce = json.loads(sample("postmark", "bounce_hard.json"))
    padded = json.dumps({**bounce, "Content": "x" * 900_000}).encode()
    async with (
        webhooks_cli(sandbox, material, SENDGUARD_LOG_LEVEL="DEBUG") as url,
        aiohttp.ClientSession() as session,
    ):
        for body in (json.dumps(bounce).encode(), padded):
            async with session.post(
                f"{url}/webhooks/postmark/acme", data=body, headers=basic("acme")
            ) as response:
                assert response.status == 200, await response.text()
    raws = await read_topic(sandbox, sandbox.topic("webhooks-raw"), until=lambda m: len(m) >= 2)
    assert max(len(base64.b64decode(r["body"])) for r in raws) == len(padded)

    log = (sandbox.data_dir / "webhooks.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert ADDRESS not in log
    assert "webhook event published" in {line["message"] for line in lines}  # ours: DEBUG
    assert [
        line for line in lines if line["level"] == "debug" and "aiokafka" in line["logger"]
    ] == []
    assert PASSWORDS["acme"] not in log


async def test_the_worker_at_debug_logs_no_address(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """A worker at SENDGUARD_LOG_LEVEL=DEBUG logs no address; all its lines are JSON."""
    worker.env["SENDGUARD_LOG_LEVEL"] = "DEBUG"
    await worker.start()
    now = time.time()
    events: list[dict[str, Any]] = [
        event(
            event_id=f"e{i}",
            tenant="acme",
            campaign="welcome",
            kind="delivered",
            at=now,
            contact=f"secret-contact-{i}",
        )
        for i in range(20)
    ]
    await produce(producer, sandbox.topic("delivery-events"), events)
    await read_topic(sandbox, sandbox.topic("health"), until=bool)
    assert await worker.stop() == 0
    log = worker.log_text()
    assert "secret-contact-" not in log
    assert "@example.com" not in log
    lines = [line for line in log.splitlines() if line.strip()]
    assert lines
    assert all(line.startswith("{") for line in lines), [
        line for line in lines if not line.startswith("{")
    ][:5]
