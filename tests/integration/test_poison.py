"""Poison of any size on the real broker: the worker counts every valid event and never exits.

The delivery-events topic takes records up to 8 MiB here (`max.message.bytes` raised), so a
1 MB and a 5 MB invalid record get in among valid events, with the other poison kinds.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from processor.domain.windows import Counter
from tests.integration.conftest import event, read_topic
from tests.integration.test_detection import wait_settled

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox, WorkerProcess

TOPIC_MAX_BYTES = 8 * 1024 * 1024
CAMPAIGNS = ("c1", "c2", "c3")
VALID_PER_CAMPAIGN = 400


async def _create_large_record_topic(sandbox: Sandbox, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=sandbox.bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(TOPIC_MAX_BYTES)}
        await admin.create_topics([NewTopic(topic, 4, 1, topic_configs=config)])
    finally:
        await admin.close()


def _poison(now: float) -> list[tuple[str, bytes]]:
    """(expected error type, value) of each bad record."""
    good = event(event_id="p", tenant="acme", campaign="c1", kind="sent", at=now, contact="p")

    def with_(**changes: Any) -> bytes:
        return json.dumps({**good, **changes}).encode()

    return [
        ("oversized_record", with_(note="x" * 1_000_000)),
        ("oversized_record", b"{" + b"x" * 5_000_000),
        ("invalid_utf8", with_(event_id="@").replace(b"@", b"\xff\xfe")),
        ("nested_too_deep", with_(note="@").replace(b'"@"', b"[" * 5000 + b"]" * 5000)),
        ("invalid_event", with_(occurred_at=12345)),
        ("invalid_event", with_(occurred_at="-1")),
        ("invalid_event", with_(event_id="x" * 300)),
        ("invalid_json", b"{not json"),
    ]


async def test_large_and_bad_records_are_dead_lettered_once_and_every_event_counted(
    sandbox: Sandbox, worker: WorkerProcess, redis: Redis
) -> None:
    """A 1 MB and a 5 MB invalid record among 1200 valid events: all counted, 8 dead letters.

    Each poison record has one dead letter with its reason, bounded (the 5 MB one carries 16
    KiB, its length and sha256); the worker is still running and logged no traceback.
    """
    topic = sandbox.topic("delivery-events")
    await _create_large_record_topic(sandbox, topic)
    await worker.start()
    producer = AIOKafkaProducer(
        bootstrap_servers=sandbox.bootstrap, acks="all", max_request_size=TOPIC_MAX_BYTES
    )
    await producer.start()
    now = time.time()
    poison = _poison(now)
    try:
        sends = []
        for n in range(VALID_PER_CAMPAIGN):
            for campaign in CAMPAIGNS:
                body = event(
                    event_id=f"{campaign}-{n}",
                    tenant="acme",
                    campaign=campaign,
                    kind="sent",
                    at=now,
                    contact=f"u{n}",
                )
                key = f"acme:{campaign}".encode()
                sends.append(await producer.send(topic, json.dumps(body).encode(), key=key))
            if n % 50 == 7 and n // 50 < len(poison):
                _, value = poison[n // 50]
                sends.append(await producer.send(topic, value, key=b"acme:c1"))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    for campaign in CAMPAIGNS:
        await wait_settled(
            redis,
            sandbox,
            "acme",
            campaign,
            lambda state: state.windows.lifetime[Counter.SENT] == VALID_PER_CAMPAIGN,
            timeout_s=90,
        )
    letters = await read_topic(
        sandbox, sandbox.topic("dead-letter"), until=lambda m: len(m) >= len(poison)
    )
    # Settle: a second copy of any letter would arrive within this read.
    letters = await read_topic(
        sandbox, sandbox.topic("dead-letter"), until=lambda _m: False, timeout_s=3
    )
    assert sorted(m["error_type"] for m in letters) == sorted(kind for kind, _ in poison)
    assert len({m["dead_letter_id"] for m in letters}) == len(poison)
    assert all(m["error"] and m["source_topic"] == topic for m in letters)
    sizes = {m["original_size"]: m for m in letters}
    largest = sizes[5_000_001]
    assert largest["original_truncated"] is True
    assert base64.b64decode(largest["original"]) == b"{" + b"x" * (16 * 1024 - 1)
    assert worker.process is not None
    assert worker.process.poll() is None
    assert "Traceback" not in worker.log_text()
