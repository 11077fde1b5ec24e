"""The webhook receiver on the real broker and Redis: real provider samples in, events out."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from processor.adapters.kafka import client_options
from processor.config.settings import Settings
from processor.webhooks import create_webhook_app, load_credentials
from processor.webhooks.auth import sns_canonical_string
from tests.integration.conftest import read_topic, run_cli

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aiohttp import web
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox

    Client = TestClient[web.Request, web.Application]


REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO.parent / "shared" / "provider-samples"
MAILGUN_FIXTURE = REPO / "tests" / "unit" / "adapters" / "providers" / "fixtures" / "mailgun"
SNS_ARN = "arn:aws:sns:us-west-2:123456789012:MyTopic"  # the TopicArn of the SNS samples
MAILGUN_KEY = secrets.token_hex(16)
PASSWORDS = {"acme": secrets.token_hex(16), "beta": secrets.token_hex(16)}


def sample(provider: str, name: str) -> bytes:
    """A real provider sample's bytes, read in place."""
    return (SAMPLES / provider / name).read_bytes()


@dataclass(frozen=True)
class Material:
    """Key material the tests generate, and the credentials file that configures it."""

    sendgrid: dict[str, ec.EllipticCurvePrivateKey]
    sns_key: rsa.RSAPrivateKey
    credentials_file: Path


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> Material:
    """Tenants acme (SendGrid, Mailgun, Postmark, SES; unattributed fallback) and beta."""
    folder = tmp_path_factory.mktemp("webhook-credentials")
    keys = {t: ec.generate_private_key(ec.SECP256R1()) for t in ("acme", "beta")}
    sns_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.invalid")])
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(sns_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(sns_key, hashes.SHA256())
    )
    (folder / "sns.pem").write_bytes(cert.public_bytes(Encoding.PEM))

    der = {
        tenant: base64.b64encode(
            key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        ).decode()
        for tenant, key in keys.items()
    }
    (folder / "credentials.yaml").write_text(
        f"""
tenants:
  acme:
    attribution: {{fallback_campaign_id: unattributed}}
    sendgrid: {{public_key: "{der["acme"]}"}}
    mailgun: {{signing_key: "env:TEST_MAILGUN_KEY"}}
    postmark: {{username: acme-hooks, password: "{PASSWORDS["acme"]}"}}
    kumomta: {{username: acme-kumo, password: "{PASSWORDS["acme"]}"}}
    ses: {{topics: [{{topic_arn: "{SNS_ARN}", signing_cert_files: [sns.pem]}}]}}
  beta:
    sendgrid: {{public_key: "{der["beta"]}"}}
    postmark: {{username: beta-hooks, password: "{PASSWORDS["beta"]}"}}
""",
        encoding="utf-8",
    )
    return Material(keys, sns_key, folder / "credentials.yaml")


def sendgrid_headers(
    key: ec.EllipticCurvePrivateKey, body: bytes, at: float | None = None
) -> dict[str, str]:
    """SendGrid's signature headers for `body`, signed now (or at `at`)."""
    timestamp = str(int(time.time() if at is None else at))
    signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def basic(tenant: str, password: str | None = None) -> dict[str, str]:
    """Postmark's basic-auth header for a tenant's account."""
    pair = f"{tenant}-hooks:{password or PASSWORDS[tenant]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def sns_envelope(key: rsa.RSAPrivateKey, name: str, **fields: str) -> bytes:
    """An SNS sample envelope, stamped now and re-signed (SignatureVersion 2) with the test key."""
    envelope = json.loads(sample("ses", name))
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    envelope.update({"Timestamp": now, "SignatureVersion": "2", **fields})
    raw = key.sign(sns_canonical_string(envelope), padding.PKCS1v15(), hashes.SHA256())
    envelope["Signature"] = base64.b64encode(raw).decode()
    return json.dumps(envelope).encode()


def mailgun_body(at: float | None = None) -> bytes:
    """Mailgun's documented delivered webhook with a fresh signature block under MAILGUN_KEY."""
    payload = json.loads((MAILGUN_FIXTURE / "webhook_delivered.json").read_bytes())
    timestamp, token = str(int(time.time() if at is None else at)), secrets.token_hex(25)
    digest = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256)
    payload["signature"] = {"timestamp": timestamp, "token": token, "signature": digest.hexdigest()}
    return json.dumps(payload).encode()


async def record_count(sandbox: Sandbox, role: str) -> int:
    """How many records a sandbox topic holds (0 when it was never created)."""
    topic = sandbox.topic(role)
    admin = AIOKafkaAdminClient(bootstrap_servers=sandbox.bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            return 0
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in description["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=sandbox.bootstrap)
    await consumer.start()
    try:
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


class UnreachableKafka:
    """A producer whose every send fails as if the brokers were down."""

    async def start(self) -> None:
        """Pretend to connect."""

    async def stop(self) -> None:
        """Nothing to flush."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        """Fail like aiokafka does without brokers."""
        raise KafkaConnectionError(f"no broker for {topic} ({len(value or b'')} bytes, {key!r})")


@pytest.fixture
async def receiver(
    sandbox: Sandbox, redis: Redis, material: Material
) -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    """Start receivers in-process on free ports, confined to the sandbox; stopped at the end."""
    credentials = load_credentials(material.credentials_file, {"TEST_MAILGUN_KEY": MAILGUN_KEY})
    async with contextlib.AsyncExitStack() as stack:

        async def start(*, producer: Any = None, max_body_bytes: int = 1024 * 1024) -> Client:
            settings = Settings(
                kafka_bootstrap_servers=sandbox.bootstrap,
                redis_url=SecretStr(sandbox.stack["SENDGUARD_REDIS_URL"]),
                topic_prefix=f"{sandbox.name}.",
                redis_key_prefix=sandbox.name,
                webhook_max_body_bytes=max_body_bytes,
            )
            kafka = producer or AIOKafkaProducer(
                **client_options(settings), acks="all", enable_idempotence=True
            )
            app = create_webhook_app(settings, credentials, kafka, redis)
            client = TestClient(TestServer(app))
            stack.push_async_callback(client.close)  # closes the session even if start fails
            await client.start_server()
            return client

        yield start


async def test_signed_sendgrid_batch_is_published_with_its_raw_record(
    sandbox: Sandbox, receiver: Callable[..., Awaitable[Client]], material: Material
) -> None:
    """SendGrid's documented batch, signed by acme's key, becomes ten events and one raw record."""
    client = await receiver()
    body = sample("sendgrid", "batch_all_event_types.json")
    headers = sendgrid_headers(material.sendgrid["acme"], body)
    response = await client.post("/webhooks/sendgrid", data=body, headers=headers)
    answer = await response.json()
    assert response.status == 200, answer
    assert (answer["tenant_id"], answer["published"], answer["rejected"]) == ("acme", 10, [])
    assert [i["field"] for i in answer["ignored"]] == ["sendgrid[10].event"]

    events = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 10
    )
    sent = [r["event"] for r in json.loads(body) if r["event"] != "group_resubscribe"]
    assert {e["event_id"] for e in events} == {f"sendgrid:{kind}:sg_event_id" for kind in sent}
    assert {e["_key"] for e in events} == {"acme:unattributed"}
    bounce = next(e for e in events if e["type"] == "bounce")
    assert (bounce["bounce_class"], bounce["provider"]) == ("hard", "sendgrid")
    raws = await read_topic(sandbox, sandbox.topic("webhooks-raw"), until=lambda m: len(m) >= 1)
    assert [(r["_key"], r["provider"], r["tenant_id"]) for r in raws] == [
        ("acme", "sendgrid", "acme")
    ]
    assert base64.b64decode(raws[0]["body"]) == body
    assert "x-twilio-email-event-webhook-signature" in raws[0]["headers"]
    health = await client.get("/healthz")
    assert (health.status, await health.json()) == (200, {"status": "ok"})
    assert await record_count(sandbox, "dead-letter") == 0


async def test_postmark_bounce_with_basic_auth_is_published(
    sandbox: Sandbox, receiver: Callable[..., Awaitable[Client]]
) -> None:
    """Postmark's hard-bounce sample posted with acme's basic auth becomes one hard bounce."""
    client = await receiver()
    body = sample("postmark", "bounce_hard.json")
    response = await client.post("/webhooks/postmark/acme", data=body, headers=basic("acme"))
    assert response.status == 200, await response.text()

    events = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 1
    )
    assert [(e["_key"], e["type"], e["bounce_class"], e["provider"]) for e in events] == [
        ("acme:Test", "bounce", "hard", "postmark")
    ]
    assert events[0]["provider_message_id"] == "883953f4-6105-42a2-a16a-77a8eac79483"
    raws = await read_topic(sandbox, sandbox.topic("webhooks-raw"), until=lambda m: len(m) >= 1)
    assert "authorization" not in raws[0]["headers"]


async def test_a_kumomta_log_hook_batch_with_basic_auth_is_published(
    sandbox: Sandbox, receiver: Callable[..., Awaitable[Client]]
) -> None:
    """A KumoMTA log hook's batch: the Uncategorized Gmail 5.1.1 bounce is hard, by its answer."""
    client = await receiver()
    record = {
        "id": "1d98076abbbc11ed940250ebf67f93bd",
        "recipient": "ana@gmail.com",
        "queue": "spring:acme@gmail.com",
        "timestamp": 1757675281,
        "num_attempts": 1,
        "bounce_classification": "Uncategorized",
        "response": {
            "code": 550,
            "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
            "content": "The email account that you tried to reach does not exist.",
        },
    }
    body = json.dumps([record | {"type": "Reception"}, record | {"type": "Bounce"}]).encode()
    pair = base64.b64encode(f"acme-kumo:{PASSWORDS['acme']}".encode()).decode()
    auth = {"Authorization": f"Basic {pair}"}

    refused = await client.post("/webhooks/kumomta/acme", data=body)
    response = await client.post("/webhooks/kumomta/acme", data=body, headers=auth)

    assert refused.status == 401
    assert response.status == 200, await response.text()
    events = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 2
    )
    assert [(e["_key"], e["type"], e["bounce_class"], e["bounce_category"]) for e in events] == [
        ("acme:spring", "sent", None, None),
        ("acme:spring", "bounce", "hard", "bad_mailbox"),
    ]


async def test_sns_envelopes_are_verified_and_confirmations_only_logged(
    sandbox: Sandbox,
    receiver: Callable[..., Awaitable[Client]],
    material: Material,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A re-signed SES bounce is published; a subscription confirmation is only logged."""
    client = await receiver()
    message = sample("ses", "event_publishing_bounce.json").decode()
    notification = sns_envelope(
        material.sns_key, "sns_http_envelope_notification.json", Message=message
    )
    confirmation = sns_envelope(
        material.sns_key, "sns_http_envelope_subscription_confirmation.json"
    )
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": "Notification",
    }
    with caplog.at_level(logging.WARNING, logger="processor.webhooks"):
        first = await client.post("/webhooks/ses", data=notification, headers=headers)
        second = await client.post("/webhooks/ses/acme", data=confirmation)
    assert (first.status, second.status) == (200, 200), await first.text()
    assert (await second.json())["subscription_confirmations"] == [
        {"type": "SubscriptionConfirmation", "topic_arn": SNS_ARN, "confirmed": False}
    ]
    logged = [r for r in caplog.records if getattr(r, "sns_type", None)]
    assert [r.__dict__["action"] for r in logged] == ["confirm manually"]
    assert "Action=ConfirmSubscription" in logged[0].__dict__["subscribe_url"]
    assert "confirm it manually" in logged[0].getMessage()

    events = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 1
    )
    assert [(e["_key"], e["type"], e["bounce_class"]) for e in events] == [
        ("acme:ConfigSet", "bounce", "hard")
    ]
    assert await record_count(sandbox, "delivery-events") == 1
    assert await record_count(sandbox, "webhooks-raw") == 2


async def test_refused_requests_publish_nothing(
    sandbox: Sandbox, receiver: Callable[..., Awaitable[Client]], material: Material
) -> None:
    """Bad credentials, a wrong tenant, oversize or unusable bodies publish nothing at all."""
    client = await receiver(max_body_bytes=3000)
    acme, beta = material.sendgrid["acme"], material.sendgrid["beta"]
    small = sample("sendgrid", "bounce.json")
    big = sample("sendgrid", "batch_all_event_types.json")  # 3676 bytes
    not_json = b"[{not json"

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield small * 2

    notification = sns_envelope(
        material.sns_key, "sns_http_envelope_notification.json", TopicArn=SNS_ARN + "-other"
    )
    cases: list[tuple[str, Any, dict[str, str], int]] = [
        ("/webhooks/sendgrid", small, {}, 401),
        ("/webhooks/sendgrid", small + b" ", sendgrid_headers(acme, small), 403),
        ("/webhooks/sendgrid", small, sendgrid_headers(acme, small, time.time() - 600), 403),
        ("/webhooks/sendgrid/beta", small, sendgrid_headers(acme, small), 403),
        ("/webhooks/sendgrid", big, sendgrid_headers(acme, big), 413),
        ("/webhooks/sendgrid", chunked(), sendgrid_headers(acme, small), 413),
        ("/webhooks/sendgrid", not_json, sendgrid_headers(acme, not_json), 400),
        ("/webhooks/sendgrid/beta", small, sendgrid_headers(beta, small), 400),
        ("/webhooks/postmark", small, {}, 401),
        ("/webhooks/postmark", small, basic("acme", "wrong-password"), 403),
        ("/webhooks/postmark/beta", small, basic("acme"), 403),
        ("/webhooks/ses", notification, {}, 403),
        ("/webhooks/mailgun", not_json, {}, 400),
        ("/webhooks/mandrill", small, {}, 404),
    ]
    answers = []
    for path, body, headers, _ in cases:
        response = await client.post(path, data=body, headers=headers)
        answers.append((response.status, await response.json(), response.headers))
    assert [status for status, *_ in answers] == [status for *_, status in cases], answers
    assert answers[0][1]["error"] == "unauthenticated"
    assert answers[2][1]["reason"].startswith("the SendGrid timestamp is outside")
    assert answers[6][1]["rejected"][0]["field"] == "sendgrid"
    assert "names no campaign" in answers[7][1]["rejected"][0]["problem"]
    assert answers[8][2]["WWW-Authenticate"].startswith("Basic ")
    for role in ("delivery-events", "webhooks-raw", "dead-letter"):
        assert await record_count(sandbox, role) == 0, role


async def test_partly_rejected_batch_publishes_the_good_events_and_dead_letters_the_rest(
    sandbox: Sandbox, receiver: Callable[..., Awaitable[Client]], material: Material
) -> None:
    """Beta's campaign-less record is reported and dead-lettered (with the body); others publish."""
    client = await receiver()
    records: list[Any] = []
    for name in ("marketing_campaign_processed.json", "singlesend_open.json", "bounce.json"):
        loaded = json.loads(sample("sendgrid", name))
        records.extend(loaded if isinstance(loaded, list) else [loaded])
    body = json.dumps(records).encode()
    headers = sendgrid_headers(material.sendgrid["beta"], body)
    response = await client.post("/webhooks/sendgrid", data=body, headers=headers)
    answer = await response.json()
    assert response.status == 200, answer
    assert (answer["tenant_id"], answer["published"]) == ("beta", 2)
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [
        (2, "sendgrid[2].campaign_id")
    ]

    events = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 2
    )
    assert sorted(e["_key"] for e in events) == ["beta:12345", "beta:sendgrid_singlesend_id"]
    letters = await read_topic(sandbox, sandbox.topic("dead-letter"), until=lambda m: len(m) >= 1)
    assert [(d["_key"], d["error_type"], d["source_topic"]) for d in letters] == [
        ("beta", "invalid_webhook_event", sandbox.topic("webhooks-raw"))
    ]
    assert base64.b64decode(letters[0]["original"]) == body
    assert answer["request_id"] in letters[0]["error"]
    assert "sendgrid[2].campaign_id" in letters[0]["error"]


async def test_mailgun_token_is_released_on_kafka_failure_and_refused_on_replay(
    sandbox: Sandbox, receiver: Callable[..., Awaitable[Client]], redis: Redis
) -> None:
    """Kafka down gives 503 and frees the token for the retry; a replay or stale post is 403."""
    body = mailgun_body()
    down = await receiver(producer=UnreachableKafka())
    failed = await down.post("/webhooks/mailgun", data=body)
    assert failed.status == 503, await failed.text()
    assert [key async for key in redis.scan_iter(match=f"{sandbox.name}:webhook-token:*")] == []

    client = await receiver()
    retried = await client.post("/webhooks/mailgun", data=body)
    replayed = await client.post("/webhooks/mailgun/acme", data=body)
    stale = await client.post("/webhooks/mailgun", data=mailgun_body(time.time() - 600))
    assert (retried.status, replayed.status, stale.status) == (200, 403, 403)
    assert "already used" in (await replayed.json())["reason"]
    events = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 1
    )
    assert [e["event_id"] for e in events] == [
        "mailgun:delivered:CPgfbmQMTCKtHW6uIWtuVe:1521472262"
    ]
    assert await record_count(sandbox, "delivery-events") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_cli_serves_until_sigterm(sandbox: Sandbox, material: Material) -> None:
    """`sendguard webhooks` answers /healthz once Kafka is connected and exits 0 on SIGTERM."""
    sandbox.data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **sandbox.env(),
        "SENDGUARD_WEBHOOK_CREDENTIALS_FILE": str(material.credentials_file),
        "TEST_MAILGUN_KEY": MAILGUN_KEY,
    }
    port = _free_port()
    log_path = sandbox.data_dir / "webhooks.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: ASYNC220, S603  # a long-lived child we signal below
            [sys.executable, "-m", "processor", "webhooks", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=sandbox.data_dir.parent,
        )
    try:
        status = None
        async with aiohttp.ClientSession() as session:
            deadline = time.monotonic() + 60
            while status != 200 and time.monotonic() < deadline and process.poll() is None:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        status = response.status
                if status != 200:
                    await asyncio.sleep(0.2)
        assert status == 200, log_path.read_text()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert "webhook receiver listening" in [line["message"] for line in lines]


def test_cli_without_credentials_file_stops_with_the_variable_named(sandbox: Sandbox) -> None:
    """Without SENDGUARD_WEBHOOK_CREDENTIALS_FILE the command exits 2 and names the variable."""
    sandbox.data_dir.mkdir(parents=True, exist_ok=True)
    result = run_cli(sandbox, "webhooks")
    assert result.returncode == 2
    assert "SENDGUARD_WEBHOOK_CREDENTIALS_FILE" in result.stderr
