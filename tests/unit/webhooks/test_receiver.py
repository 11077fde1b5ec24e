"""The webhook receiver when Redis fails: 503 to retry later, never a 500 or a lost token."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, cast

from aiohttp.test_utils import TestClient, TestServer
from redis.exceptions import ConnectionError as RedisConnectionError

from processor.config.settings import Settings
from processor.webhooks.credentials import parse_credentials
from processor.webhooks.server import create_webhook_app
from tests.unit.webhooks.test_auth import FakeRedis

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from redis.asyncio import Redis

CREDENTIALS = """
tenants:
  acme:
    attribution: {fallback_campaign_id: c1}
    mailgun: {signing_key: key-acme}
"""


class DownRedis:
    """A Redis client whose every command fails as redis-py fails on a refused connection."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def set(self, key: str, _value: bytes, *, nx: bool, ex: int) -> bool | None:
        """SET: the connection is refused."""
        self.calls.append(f"set {key} nx={nx} ex={ex > 0}")
        raise RedisConnectionError("Error 111 connecting to localhost:6379. Connection refused.")

    async def delete(self, key: str) -> int:
        """DEL: the connection is refused."""
        self.calls.append(f"delete {key}")
        raise RedisConnectionError("Error 111 connecting to localhost:6379. Connection refused.")


class Producer:
    """Acknowledges every record, or none when `down` (Kafka unreachable)."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.sent: list[str] = []

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to flush."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> asyncio.Future[None]:
        """Record and acknowledge, or fail the acknowledgement."""
        del value, key
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.down:
            done.set_exception(TimeoutError("no broker"))
        else:
            self.sent.append(topic)
            done.set_result(None)
        return done


def mailgun_post() -> str:
    """A freshly signed Mailgun delivery webhook of tenant acme."""
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    digest = hmac.new(b"key-acme", (timestamp + token).encode(), hashlib.sha256).hexdigest()
    event = {"event": "delivered", "recipient": "a@example.com", "id": "e1", "timestamp": 1e9}
    signature = {"timestamp": timestamp, "token": token, "signature": digest}
    return json.dumps({"signature": signature, "event-data": event})


async def post(tmp_path: Path, redis: object, producer: Producer) -> tuple[int, dict[str, str]]:
    """Post one Mailgun webhook to a receiver on `redis` and `producer`; the status and body."""
    creds = parse_credentials(CREDENTIALS, base_dir=tmp_path, environ={})
    settings = Settings(topic_prefix="unit.", webhook_publish_timeout_s=1)
    app = create_webhook_app(settings, creds, producer, cast("Redis", redis))
    async with TestClient(TestServer(app)) as client:
        response = await client.post("/webhooks/mailgun", data=mailgun_post())
        return response.status, await response.json()


async def test_redis_down_answers_503_unavailable_and_publishes_nothing(tmp_path: Path) -> None:
    """With the replay store down, a signed Mailgun post gets 503 (retry later), not a 500."""
    redis, producer = DownRedis(), Producer()
    status, body = await post(tmp_path, redis, producer)
    assert (status, body["error"]) == (503, "unavailable")
    assert body["reason"] == "the replay store (Redis) is unavailable; retry later"
    assert producer.sent == []
    assert [call.split()[0] for call in redis.calls] == ["set"]


async def test_a_token_that_cannot_be_released_is_logged_and_the_answer_stays_503(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kafka down after the token was claimed: 503, and a failed release is a warning, no crash."""

    class ReleaseFails(FakeRedis):
        async def delete(self, key: str) -> int:
            raise RedisConnectionError(f"Connection refused while deleting {len(key)} bytes")

    with caplog.at_level(logging.WARNING, logger="processor.webhooks"):
        status, body = await post(tmp_path, ReleaseFails(), Producer(down=True))
    assert (status, body["error"]) == (503, "unavailable")
    assert "Kafka did not acknowledge" in body["reason"]
    released = [r for r in caplog.records if r.getMessage() == "could not release a webhook token"]
    assert len(released) == 1
    assert "releasing a webhook token failed: Connection refused" in released[0].__dict__["error"]


async def test_a_refused_post_releases_its_token_for_the_providers_retry(tmp_path: Path) -> None:
    """Kafka down: 503, and the claimed token is forgotten so that the retry is not a replay."""
    redis = FakeRedis()
    status, _ = await post(tmp_path, redis, Producer(down=True))
    assert status == 503
    assert redis.values == {}
