"""The bridges on the real broker and Redis, against local HTTP servers.

KumoMTA cannot be installed here: its side is `FakeKumod` (bridge_servers.py), a local aiohttp
server that follows the published kumod.openapi.json and validates every request body against
its SuspendV1Request / SuspendV1CancelRequest schemas. The webhook receiver verifies the
signature with the procedure docs/BRIDGES.md gives, written out here from the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr

from processor.adapters.kafka import declare_topics
from processor.config.settings import Settings
from processor.ports.bridge import CountingMetrics
from processor.runtime.bridge import BridgeTarget, kumomta_target, run_bridge, webhook_target
from tests.integration.bridge_servers import FakeKumod, FakeReceiver, serve
from tests.integration.conftest import read_topic, until
from tests.unit.services.bridge_support import campaign_pause, resume, tenant_pause

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from schemas.control import PauseCommand, ResumeCommand
    from tests.integration.conftest import Sandbox

WEEK_S = 7 * 86400
SECRET = "whsec-test-0123456789"  # noqa: S105  # a test key, not a credential


def _settings(sandbox: Sandbox, **overrides: Any) -> Settings:
    return Settings(
        kafka_bootstrap_servers=sandbox.bootstrap,
        redis_url=SecretStr(sandbox.stack["SENDGUARD_REDIS_URL"]),
        topic_prefix=f"{sandbox.name}.",
        redis_key_prefix=sandbox.name,
        app_id=sandbox.name,
        topic_partitions=1,
        kafka_session_timeout_s=6,
        batch_max_wait_ms=20,
        bridge_backoff_initial_s=0.05,
        bridge_backoff_max_s=0.2,
        bridge_max_attempts=4,
        bridge_request_timeout_s=5,
        bridge_webhook_secret=SecretStr(SECRET),
        bridge_kumomta_username="kumo",
        bridge_kumomta_password=SecretStr("pw"),
        **overrides,
    )


class RunningBridge:
    """`run_bridge` in a task of the test's loop, stopped like SIGTERM stops it."""

    def __init__(self, settings: Settings, target: BridgeTarget) -> None:
        self.settings = settings
        self.target = target
        self.metrics = CountingMetrics()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start it in the background."""
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(
            run_bridge(self.settings, self.target, stop=self._stop, metrics=self.metrics)
        )

    async def stop(self) -> None:
        """Stop it and wait until it has left the group."""
        if self._task is not None:
            self._stop.set()
            await asyncio.wait_for(self._task, timeout=30)
            self._task = None


@pytest.fixture
async def kumod() -> AsyncIterator[tuple[FakeKumod, str]]:
    """A schema-checking KumoMTA suspend API on a free port."""
    fake = FakeKumod()
    async for url in serve(fake.app()):
        yield fake, url


@pytest.fixture
async def bridges() -> AsyncIterator[list[RunningBridge]]:
    """Bridges the test started; all stopped at the end."""
    started: list[RunningBridge] = []
    yield started
    for bridge in started:
        with contextlib.suppress(Exception):
            await bridge.stop()


async def _bridge(
    bridges: list[RunningBridge], settings: Settings, target: BridgeTarget
) -> RunningBridge:
    bridge = RunningBridge(settings, target)
    await bridge.start()
    bridges.append(bridge)
    return bridge


async def _send(
    producer: AIOKafkaProducer, sandbox: Sandbox, *commands: PauseCommand | ResumeCommand
) -> None:
    for command in commands:
        key = f"{command.tenant_id}:{command.campaign_id or '*'}".encode()
        await (
            await producer.send(
                sandbox.topic("control"), key=key, value=command.model_dump_json().encode()
            )
        )


async def _committed(sandbox: Sandbox, group: str) -> int:
    probe = AIOKafkaConsumer(bootstrap_servers=sandbox.bootstrap, group_id=group)
    await probe.start()
    try:
        offset = await probe.committed(TopicPartition(sandbox.topic("control"), 0))
        return offset or 0
    finally:
        await probe.stop()


async def _rewind(sandbox: Sandbox, group: str) -> None:
    """Commit offset 0 for the group: as if the bridge had crashed before every commit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=sandbox.bootstrap, group_id=group)
    await consumer.start()
    try:
        tp = TopicPartition(sandbox.topic("control"), 0)
        consumer.assign([tp])
        await consumer.commit({tp: 0})
    finally:
        await consumer.stop()


def _group(sandbox: Sandbox, bridge: str) -> str:
    return f"{sandbox.name}-bridge-{bridge}"


async def test_a_pause_reaches_kumomta_and_a_resume_lifts_it(
    sandbox: Sandbox,
    producer: AIOKafkaProducer,
    redis: Redis,  # noqa: ARG001  # its teardown deletes the ledger's keys
    kumod: tuple[FakeKumod, str],
    bridges: list[RunningBridge],
) -> None:
    """A pause becomes a suspension with its evidence; a resume lifts it by the stored id.

    A campaign pause suspends tenant AND campaign, a tenant pause the tenant.
    """
    fake, url = kumod
    settings = _settings(sandbox)
    await declare_topics(settings)
    await _bridge(bridges, settings, kumomta_target(settings, url, WEEK_S))
    pause = campaign_pause()
    await _send(producer, sandbox, pause, tenant_pause(tenant="beta"))

    await until(lambda: _true(len(fake.suspensions) == 2), timeout_s=60)
    assert fake.invalid == []
    by_tenant = {s["tenant"]: s for s in fake.suspensions.values()}
    assert by_tenant["acme"]["campaign"] == "spring-sale"
    assert "hard_bounce rate 7.50% over 1h" in by_tenant["acme"]["reason"]
    assert pause.command_id in by_tenant["acme"]["reason"]
    assert by_tenant["acme"]["duration"] == f"{WEEK_S}s"
    assert "campaign" not in by_tenant["beta"]
    assert fake.authorization == "Basic a3Vtbzpwdw=="
    [acme_id] = [sid for sid, s in fake.suspensions.items() if s["tenant"] == "acme"]

    await _send(producer, sandbox, resume())
    await until(lambda: _true(acme_id not in fake.suspensions), timeout_s=30)
    assert ("DELETE", {"id": acme_id}) in fake.requests
    assert [s["tenant"] for s in fake.suspensions.values()] == ["beta"]
    await until(lambda: _at(sandbox, "kumomta", 3), timeout_s=30)
    assert fake.invalid == []


async def test_a_redelivered_pause_suspends_once(
    sandbox: Sandbox,
    producer: AIOKafkaProducer,
    redis: Redis,  # noqa: ARG001  # its teardown deletes the ledger's keys
    kumod: tuple[FakeKumod, str],
    bridges: list[RunningBridge],
) -> None:
    """A pause republished, and read again after a restart before the commit, suspends once.

    The Redis ledger knows the command and its suspension id across the restart.
    """
    fake, url = kumod
    settings = _settings(sandbox)
    await declare_topics(settings)
    pause = campaign_pause()
    await _send(producer, sandbox, pause, pause)  # the worker's crash-republish
    bridge = await _bridge(bridges, settings, kumomta_target(settings, url, WEEK_S))
    await until(lambda: _at(sandbox, "kumomta", 2), timeout_s=60)
    await bridge.stop()
    await _rewind(sandbox, _group(sandbox, "kumomta"))

    restarted = await _bridge(bridges, settings, kumomta_target(settings, url, WEEK_S))
    await until(lambda: _true(restarted.metrics.commands.get(("kumomta", "skipped"), 0) == 2))
    assert len(fake.suspensions) == 1
    assert [m for m, _ in fake.requests].count("POST") == 1
    # ...and the restarted bridge still knows which suspension to lift.
    await _send(producer, sandbox, resume())
    await until(lambda: _true(not fake.suspensions), timeout_s=30)


async def test_a_failing_mta_is_retried_and_the_offset_committed_only_after_it_answered(
    sandbox: Sandbox,
    producer: AIOKafkaProducer,
    redis: Redis,  # noqa: ARG001  # its teardown deletes the ledger's keys
    kumod: tuple[FakeKumod, str],
    bridges: list[RunningBridge],
) -> None:
    """Two 503s, then a success held open: nothing is committed until the MTA answered."""
    fake, url = kumod
    fake.fail_posts = 2
    fake.hold_posts = asyncio.Event()
    settings = _settings(sandbox)
    await declare_topics(settings)
    bridge = await _bridge(bridges, settings, kumomta_target(settings, url, WEEK_S))
    await _send(producer, sandbox, campaign_pause())

    await asyncio.wait_for(fake.post_waiting.wait(), timeout=60)
    assert [m for m, _ in fake.requests].count("POST") == 3
    assert await _committed(sandbox, _group(sandbox, "kumomta")) == 0
    fake.hold_posts.set()
    await until(lambda: _at(sandbox, "kumomta", 1), timeout_s=30)
    assert len(fake.suspensions) == 1
    assert bridge.metrics.commands == {("kumomta", "applied"): 1}


async def test_an_mta_that_always_fails_ends_in_a_dead_letter_and_the_bridge_goes_on(
    sandbox: Sandbox,
    producer: AIOKafkaProducer,
    redis: Redis,  # noqa: ARG001  # its teardown deletes the ledger's keys
    kumod: tuple[FakeKumod, str],
    bridges: list[RunningBridge],
) -> None:
    """After the bounded attempts a pause is dead-lettered with the reason; the next applies."""
    fake, url = kumod
    fake.failing_tenants = {"doomed"}
    settings = _settings(sandbox)
    await declare_topics(settings)
    bridge = await _bridge(bridges, settings, kumomta_target(settings, url, WEEK_S))
    doomed = campaign_pause(tenant="doomed", command_id="d" * 32)
    await _send(producer, sandbox, doomed, campaign_pause())

    letters = await read_topic(sandbox, sandbox.topic("dead-letter"), until=lambda m: len(m) >= 1)
    [letter] = letters
    assert letter["error_type"] == "bridge_unavailable"
    assert "after 4 attempt(s)" in letter["error"]
    assert "answered 500" in letter["error"]
    assert letter["source_topic"] == sandbox.topic("control")
    await until(lambda: _at(sandbox, "kumomta", 2), timeout_s=30)
    assert [s["tenant"] for s in fake.suspensions.values()] == ["acme"]
    assert bridge.metrics.failures == {"kumomta": 1}


async def test_the_webhook_bridge_posts_signed_commands_a_receiver_can_verify(
    sandbox: Sandbox,
    producer: AIOKafkaProducer,
    redis: Redis,  # noqa: ARG001  # its teardown deletes the ledger's keys
    bridges: list[RunningBridge],
) -> None:
    """Each command is posted once with its id as Idempotency-Key and a verifiable signature.

    The signature verifies by the documented procedure, and fails under another secret.
    """
    receiver = FakeReceiver()
    settings = _settings(sandbox)
    await declare_topics(settings)
    async for base in serve(receiver.app()):
        url = f"{base}/hooks/sendguard"
        await _bridge(bridges, settings, webhook_target(settings, url, "ops"))
        pause = campaign_pause()
        await _send(producer, sandbox, pause, pause, resume())
        await until(lambda: _at(sandbox, "webhook-ops", 3), timeout_s=60)
    assert [json.loads(r.body)["command"] for r in receiver.received] == ["pause", "resume"]
    for post in receiver.received:
        command = json.loads(post.body)
        assert post.headers["Idempotency-Key"] == command["command_id"]
        assert post.headers["Content-Type"] == "application/json"
        assert _verify(post.headers["X-Sendguard-Signature"], post.body, SECRET)
        assert not _verify(post.headers["X-Sendguard-Signature"], post.body, "another")
        assert not _verify(post.headers["X-Sendguard-Signature"], post.body + b" ", SECRET)


def _verify(header: str, body: bytes, secret: str, tolerance_s: int = 300) -> bool:
    """docs/BRIDGES.md, "Verifying a webhook", step by step."""
    # 1. Split the header on commas; each item is key=value. Take t and every v1.
    items = [item.split("=", 1) for item in header.split(",")]
    timestamps = [value for key, value in items if key == "t"]
    signatures = [value for key, value in items if key == "v1"]
    if len(timestamps) != 1 or not signatures:
        return False
    # 2. Refuse a timestamp further than the tolerance from your clock (replays).
    if abs(time.time() - int(timestamps[0])) > tolerance_s:
        return False
    # 3. HMAC-SHA256, keyed with your secret, of the timestamp, a dot and the raw body.
    expected = hmac.new(
        secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    # 4. Accept if any v1 equals it, compared in constant time.
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


async def _true(value: bool) -> bool:  # noqa: FBT001  # adapts a plain condition to `until`
    return value


async def _at(sandbox: Sandbox, bridge: str, offset: int) -> bool:
    return await _committed(sandbox, _group(sandbox, bridge)) >= offset
