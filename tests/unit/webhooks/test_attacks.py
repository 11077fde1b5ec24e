"""The receiver under attack, in process: bad credentials, slow or broken bodies, huge batches.

Kafka and Redis are the in-memory twins of test_auth; the app runs on a loopback port with
aiohttp's production runner (the test server cancels handlers of dropped connections, the real
one does not).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import pytest
from aiohttp import web

from processor.config.settings import Settings
from processor.webhooks.batch import DEAD_LETTER_EXCERPT_BYTES, REPORTED_MAX
from processor.webhooks.credentials import parse_credentials
from processor.webhooks.server import create_webhook_app
from tests.unit.webhooks.test_auth import (
    ENV,
    FakeProducer,
    FakeRedis,
    basic,
    credentials_yaml,
    mailgun_block,
    notification,
    rsa_key,
    self_signed,
    sg_keys,
    sign_sendgrid,
    sns_signed,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from redis.asyncio import Redis

__all__ = ["rsa_key", "sg_keys"]  # fixtures of test_auth, used here by name

BETA = {"Authorization": basic("beta-hooks", "beta-password-0123456789")}
BOUNCE = {
    "RecordType": "Bounce",
    "Type": "HardBounce",
    "TypeCode": 1,
    "ID": 42,
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "Email": "someone@example.com",
    "BouncedAt": "2026-11-24T10:00:00Z",
    "Tag": "welcome",
}


class Receiver:
    """A receiver app on a loopback port, a client session, and the producer it publishes to."""

    def __init__(self, session: aiohttp.ClientSession, port: int, producer: FakeProducer) -> None:
        self.session = session
        self.port = port
        self.producer = producer

    async def post(self, path: str, **options: Any) -> aiohttp.ClientResponse:
        """POST to the receiver; the answer is read by the caller."""
        return await self.session.post(f"http://127.0.0.1:{self.port}{path}", **options)

    def topics(self) -> list[str]:
        """The topic of each published record, in order."""
        return [topic for topic, _, _ in self.producer.sent]

    async def raw_request(self, head: bytes, body: bytes = b"", *, close: bool = False) -> bytes:
        """Send bytes over a socket of our own; the answer, or b"" if none came within 5 s."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(head + body)
        await writer.drain()
        if close:  # once the server is reading the body: a client gone half-way
            await asyncio.sleep(0.3)
            writer.transport.abort()
            return b""
        try:
            async with asyncio.timeout(5):
                return await reader.read(65536)
        except TimeoutError:
            return b""
        finally:
            writer.close()


@pytest.fixture
async def receiver(
    tmp_path: Path, sg_keys: tuple[Any, Any], rsa_key: rsa.RSAPrivateKey
) -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """Start receivers (tenants acme and beta of test_auth) with settings overrides."""
    (tmp_path / "sns.pem").write_bytes(self_signed(rsa_key))
    creds = parse_credentials(credentials_yaml(sg_keys[0]), base_dir=tmp_path, environ=ENV)
    runners: list[web.AppRunner] = []
    async with aiohttp.ClientSession() as session:

        async def start(**overrides: Any) -> Receiver:
            producer = FakeProducer()
            settings = Settings(topic_prefix="unit.", **overrides)
            app = create_webhook_app(settings, creds, producer, cast("Redis", FakeRedis()))
            runner = web.AppRunner(app)  # as run_webhooks builds it
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            port = runner.addresses[0][1]
            return Receiver(session, port, producer)

        yield start
        for runner in runners:
            await runner.cleanup()


def records(filler: object, count: int, *last: object) -> bytes:
    """A JSON batch of `count` copies of `filler`, then `last`."""
    return json.dumps([filler] * count + list(last)).encode()


# --- bounded work and output per request --------------------------------------------------------


async def test_a_batch_of_rejections_gives_one_dead_letter_and_a_small_answer(
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    """20,000 rejected records and one good one: 1 event, 1 dead letter, the first 100 reasons."""
    hooks = await receiver(webhook_max_records=50_000)
    body = records({}, 20_000, BOUNCE)
    started = time.monotonic()
    response = await hooks.post("/webhooks/postmark", data=body, headers=BETA)
    answer = await response.read()
    assert response.status == 200, answer
    assert time.monotonic() - started < 10  # was 21.8 s for this body: quadratic
    assert len(answer) < 20_000
    reply = json.loads(answer)
    assert (reply["published"], reply["rejected_count"]) == (1, 20_000)
    assert len(reply["rejected"]) == REPORTED_MAX
    assert hooks.topics() == ["unit.delivery-events", "unit.dead-letter", "unit.webhooks-raw"]
    letter = json.loads(hooks.producer.sent[1][2] or b"")
    assert letter["error"].startswith("20000 record(s) rejected")
    assert letter["error"].endswith("; and 19900 more")
    assert len(letter["error"]) < 30_000
    assert base64.b64decode(letter["original"]) == body[:DEAD_LETTER_EXCERPT_BYTES]


async def test_a_wholly_rejected_batch_gets_a_small_400_and_log_line(
    receiver: Callable[..., Awaitable[Receiver]], caplog: pytest.LogCaptureFixture
) -> None:
    """A 400 lists at most 100 reasons and counts the rest, in the answer and in the log."""
    hooks = await receiver()
    with caplog.at_level(logging.WARNING, logger="processor.webhooks"):
        response = await hooks.post("/webhooks/postmark", data=records({}, 10_000), headers=BETA)
    reply = await response.json()
    assert (response.status, reply["rejected_count"], len(reply["rejected"])) == (400, 10_000, 100)
    [line] = [r for r in caplog.records if r.getMessage().startswith("webhook refused")]
    assert (line.__dict__["rejected_count"], len(line.__dict__["rejected"])) == (10_000, 100)
    assert hooks.producer.sent == []


@pytest.mark.parametrize("filler", [[], {}, 0])
async def test_a_megabyte_of_empty_records_is_refused_quickly_before_they_are_built(
    receiver: Callable[..., Awaitable[Receiver]], filler: object
) -> None:
    """1 MiB of empty records (300,000+) is 413 at once: over SENDGUARD_WEBHOOK_MAX_RECORDS."""
    hooks = await receiver()
    unit = json.dumps(filler).encode()
    body = b"[" + b",".join([unit] * ((1024 * 1024 - 2) // (len(unit) + 1))) + b"]"
    started = time.monotonic()
    response = await hooks.post("/webhooks/postmark", data=body, headers=BETA)
    elapsed = time.monotonic() - started
    reply = await response.json()
    assert (response.status, reply["error"]) == (413, "too_many_records"), reply
    assert elapsed < 2  # 0.05-0.12 s on the 2-vCPU development VM
    assert hooks.producer.sent == []


# --- malformed authentication input is refused, never a 500 -------------------------------------


async def test_non_ascii_sendgrid_signature_header_is_403(
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    """A signature header with non-ASCII bytes is a forged signature (403), not a crash."""
    hooks = await receiver()
    head = (
        "POST /webhooks/sendgrid/acme HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        "X-Twilio-Email-Event-Webhook-Signature: \u00e9\u00e9\u00e9\u00e9\r\n"
        f"X-Twilio-Email-Event-Webhook-Timestamp: {int(time.time())}\r\n\r\n"
    ).encode()
    answer = await hooks.raw_request(head, b"[]")
    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert b"not base64" in answer


async def test_non_ascii_sendgrid_timestamp_digits_are_403(
    receiver: Callable[..., Awaitable[Receiver]], sg_keys: tuple[ec.EllipticCurvePrivateKey, Any]
) -> None:
    """Arabic-Indic digits are not epoch seconds, however `float()` reads them."""
    hooks = await receiver()
    digits = str(int(time.time())).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    headers = {
        "X-Twilio-Email-Event-Webhook-Signature": sign_sendgrid(sg_keys[0], digits, b"[]"),
        "X-Twilio-Email-Event-Webhook-Timestamp": digits,
    }
    response = await hooks.post("/webhooks/sendgrid/acme", data=b"[]", headers=headers)
    assert response.status in {401, 403}, await response.text()


def _sns_post(message: dict[str, Any]) -> str:
    # ensure_ascii keeps a lone surrogate as its \ud800 escape: valid JSON, invalid Unicode.
    return json.dumps(message, ensure_ascii=True)


@pytest.mark.parametrize(
    "change",
    [
        {"Signature": "\u00e9" * 8},  # non-ASCII base64
        {"Message": "hello \ud800 world"},  # a lone surrogate in the signed text
    ],
)
async def test_sns_signature_or_message_that_cannot_be_decoded_is_403(
    receiver: Callable[..., Awaitable[Receiver]], rsa_key: rsa.RSAPrivateKey, change: Any
) -> None:
    """An SNS envelope whose Signature or Message cannot be encoded is refused (403)."""
    hooks = await receiver(webhook_sns_max_age_s=10**10)
    envelope = {**sns_signed(rsa_key, notification()), **change}
    response = await hooks.post("/webhooks/ses/acme", data=_sns_post(envelope))
    assert response.status == 403, await response.text()


@pytest.mark.parametrize("field", ["token", "signature", "timestamp"])
async def test_mailgun_lone_surrogate_in_the_signature_block_is_403(
    receiver: Callable[..., Awaitable[Receiver]], field: str
) -> None:
    """A Mailgun signature block holding a lone surrogate is refused, not a 500."""
    hooks = await receiver()
    block = mailgun_block(b"key-acme", str(int(time.time())))
    block[field] = block[field][:4] + "\ud800"
    body = _sns_post({"signature": block, "event-data": {}})
    response = await hooks.post("/webhooks/mailgun/acme", data=body)
    assert response.status == 403, await response.text()


# --- bodies: encoding, time, and refusing before reading ----------------------------------------


async def test_an_invalid_gzip_body_is_400_without_a_traceback(
    receiver: Callable[..., Awaitable[Receiver]], caplog: pytest.LogCaptureFixture
) -> None:
    """`Content-Encoding: gzip` on bytes that are not gzip is a 400, logged as one warning."""
    hooks = await receiver()
    with caplog.at_level(logging.DEBUG):
        response = await hooks.post(
            "/webhooks/postmark",
            data=b"certainly not gzip",
            headers={**BETA, "Content-Encoding": "gzip"},
        )
        assert response.status == 400, await response.text()
        assert (await response.json())["error"] == "invalid_body"
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


async def test_a_body_slower_than_the_timeout_is_408(
    receiver: Callable[..., Awaitable[Receiver]],
) -> None:
    """A body still trickling in after SENDGUARD_WEBHOOK_BODY_TIMEOUT_S is answered 408."""
    hooks = await receiver(webhook_body_timeout_s=0.5)

    async def trickle() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" "
            await asyncio.sleep(0.2)  # the slow client under test, not a wait for Kafka

    started = time.monotonic()
    response = await hooks.post("/webhooks/postmark", data=trickle(), headers=BETA)
    assert response.status == 408, await response.text()
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/webhooks/postmark", "", 401),
        ("/webhooks/postmark", f"Authorization: {basic('beta-hooks', 'wrong-password')}\r\n", 403),
        ("/webhooks/sparkpost/acme", "", 403),  # acme has no SparkPost credential at all
        ("/webhooks/sendgrid/acme", "", 401),
        ("/webhooks/sendgrid/acme", "X-Twilio-Email-Event-Webhook-Timestamp: 1\r\n", 401),
        (
            "/webhooks/sendgrid/acme",
            (
                "X-Twilio-Email-Event-Webhook-Signature: AAAA\r\n"
                "X-Twilio-Email-Event-Webhook-Timestamp: 1000000000\r\n"
            ),
            403,
        ),
    ],
)
async def test_header_authenticated_requests_are_refused_before_the_body_arrives(
    receiver: Callable[..., Awaitable[Receiver]], path: str, headers: str, status: int
) -> None:
    """Bad basic auth or SendGrid headers are answered while the announced body never comes."""
    hooks = await receiver(webhook_body_timeout_s=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n{headers}\r\n"
    answer = await hooks.raw_request(head.encode())
    assert answer.startswith(f"HTTP/1.1 {status}".encode()), answer


async def test_a_dropped_connection_logs_no_traceback(
    receiver: Callable[..., Awaitable[Receiver]], caplog: pytest.LogCaptureFixture
) -> None:
    """A client that disconnects in the middle of its body leaves one warning, no traceback."""
    hooks = await receiver()
    head = f"POST /webhooks/postmark HTTP/1.1\r\nHost: x\r\nAuthorization: {BETA['Authorization']}"
    with caplog.at_level(logging.DEBUG):
        await hooks.raw_request(
            f"{head}\r\nContent-Length: 1000\r\n\r\n".encode(), b"[{", close=True
        )
        for _ in range(100):  # the server notices the reset on its own schedule: poll, 5 s
            if any("closed the connection" in r.getMessage() for r in caplog.records):
                break
            await asyncio.sleep(0.05)
    assert any("closed the connection" in r.getMessage() for r in caplog.records), [
        (r.name, r.getMessage()) for r in caplog.records
    ]
    assert [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []
