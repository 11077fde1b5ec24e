"""Bounce and feedback mail, one-click unsubscribe and KumoMTA log topics on the real broker.

The listener is driven by a real SMTP client (smtplib, in a thread) on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import smtplib
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from processor.adapters.kafka import client_options
from processor.adapters.metrics import MESSAGE_OUTCOMES, Metrics
from processor.config.settings import Settings
from processor.domain.signed_tokens import (
    UnsubscribeToken,
    VerpToken,
    mint_unsubscribe_token,
    verp_address,
)
from processor.mail import serve_mail
from processor.webhooks import create_webhook_app, parse_credentials
from tests.integration.conftest import read_topic, run_cli, until
from tests.integration.test_metrics import free_port, sample, scrape

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox, WorkerProcess

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "mta-samples" / "kumomta"
KEY = "integration-test-key-0123456789"
DOMAIN = "bounce.sender.example"
FBL = "fbl@sender.example"
RELAYED = {"source": "kumomta_logs", "outcome": "accepted"}
REJECTED = {"source": "kumomta_logs", "outcome": "rejected"}


def settings_of(sandbox: Sandbox, **overrides: Any) -> Settings:
    """Settings confined to the sandbox, with a token key, a bounce domain and an FBL address."""
    values: dict[str, Any] = {
        "kafka_bootstrap_servers": sandbox.bootstrap,
        "redis_url": SecretStr(sandbox.stack["SENDGUARD_REDIS_URL"]),
        "topic_prefix": f"{sandbox.name}.",
        "redis_key_prefix": sandbox.name,
        "token_key": SecretStr(KEY),
        "mail_bounce_domains": (DOMAIN,),
        "mail_plain_addresses": (FBL,),
        "mail_max_message_bytes": 64 * 1024,
        **overrides,
    }
    return Settings(**values)


class UnreachableKafka:
    """A producer whose every send fails as if the brokers were down."""

    async def start(self) -> None:
        """Pretend to connect."""

    async def stop(self) -> None:
        """Nothing to flush."""

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        """Fail like aiokafka does without brokers."""
        raise KafkaConnectionError(f"no broker for {topic} ({len(value or b'')} bytes, {key!r})")


@contextlib.asynccontextmanager
async def listener(
    sandbox: Sandbox, producer: Any = None, metrics: Metrics | None = None
) -> AsyncIterator[int]:
    """The mail listener on a free loopback port; yields the SMTP port."""
    settings = settings_of(sandbox)
    kafka = producer or AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True
    )
    async with serve_mail(
        settings, kafka, host="127.0.0.1", smtp_port=0, lmtp_port=None, metrics=metrics
    ) as ports:
        assert ports.smtp_port is not None
        yield ports.smtp_port


def _outcomes(metrics: Metrics, source: str = "smtp") -> dict[str, float]:
    """The listener's messages by outcome."""
    return {
        outcome: metrics.registry.get_sample_value(
            "sendguard_mail_messages_total", {"source": source, "outcome": outcome}
        )
        or 0.0
        for outcome in MESSAGE_OUTCOMES
    }


def send(port: int, recipients: list[str], data: bytes) -> dict[str, tuple[int, bytes]]:
    """One SMTP transaction with a null sender; returns the refused recipients (smtplib's)."""
    wire = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # SMTP lines end in CRLF
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail("<>", recipients, wire)


def verp(contact: str = "contact-7") -> str:
    """A signed return path of tenant beta, campaign launch."""
    return verp_address(
        VerpToken("beta", "launch", contact), KEY.encode(), prefix="b", domain=DOMAIN
    )


async def test_a_dsn_to_a_verp_address_becomes_a_bounce_on_delivery_events(
    sandbox: Sandbox,
) -> None:
    """Postfix's DSN sample sent to a signed return path is a bounce of beta/launch, and 250."""
    data = (SHARED / "rfc3464" / "5.eml").read_bytes()
    metrics = Metrics("mail")
    async with listener(sandbox, metrics=metrics) as port:
        refused = await asyncio.to_thread(send, port, [verp()], data)
    assert refused == {}
    assert _outcomes(metrics) == {"accepted": 1, "deferred": 0, "rejected": 0, "ignored": 0}
    [event] = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 1
    )
    assert (event["_key"], event["type"], event["bounce_class"]) == (
        "beta:launch",
        "bounce",
        "soft",
    )
    assert event["recipient"] == {"contact_id": "contact-7", "address": "recipient@domain.com"}


async def test_an_arf_report_to_the_feedback_address_becomes_a_complaint(sandbox: Sandbox) -> None:
    """An abuse report whose Original-Mail-From is a signed return path is a complaint."""
    data = (SHARED / "rfc5965" / "3.eml").read_bytes()
    data = data.replace(b"<test1@example.com>", f"<{verp('c-9')}>".encode())
    async with listener(sandbox) as port:
        assert await asyncio.to_thread(send, port, [FBL], data) == {}
    [event] = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 1
    )
    assert (event["_key"], event["type"]) == ("beta:launch", "complaint")
    assert event["recipient"]["contact_id"] == "c-9"


async def test_the_listener_answers_with_the_codes_a_mail_operator_expects(
    sandbox: Sandbox,
) -> None:
    """550 5.1.1 for an unknown or forged address, 552 over the size limit, 250 for an autoreply.

    The autoreply publishes nothing; a bounce naming no tenant is taken and dead-lettered.
    Counted: two recipients refused and the dead-lettered bounce rejected, the autoreply ignored.
    """
    metrics = Metrics("mail")
    vacation = (
        b"From: frank@example.com\r\nSubject: Out of office\r\n"
        b"Auto-Submitted: auto-replied\r\n\r\naway\r\n"
    )
    async with listener(sandbox, metrics=metrics) as port:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as unknown:
            await asyncio.to_thread(send, port, [f"nobody@{DOMAIN}"], b"Subject: x\r\n\r\nx\r\n")
        assert unknown.value.recipients[f"nobody@{DOMAIN}"][0] == 550
        assert b"5.1.1" in unknown.value.recipients[f"nobody@{DOMAIN}"][1]
        forged = verp().replace("b+", "b+a", 1)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            await asyncio.to_thread(send, port, [forged], b"Subject: x\r\n\r\nx\r\n")
        with pytest.raises(smtplib.SMTPResponseException) as too_big:
            await asyncio.to_thread(send, port, [FBL], b"Subject: x\r\n\r\n" + b"y" * 70_000)
        assert too_big.value.smtp_code == 552
        assert await asyncio.to_thread(send, port, [FBL], vacation) == {}
        unattributed = (SHARED / "rfc3464" / "2.eml").read_bytes()
        assert await asyncio.to_thread(send, port, [FBL], unattributed) == {}
    letters = await read_topic(sandbox, sandbox.topic("dead-letter"), until=lambda m: len(m) >= 1)
    assert letters[0]["error_type"] == "invalid_mail_report"
    assert "tenant: missing" in letters[0]["error"]
    assert _outcomes(metrics) == {"accepted": 0, "deferred": 0, "rejected": 3, "ignored": 1}


async def test_a_dsn_is_deferred_with_451_while_kafka_is_down(sandbox: Sandbox) -> None:
    """No acknowledgement, no 250: the sending MTA keeps the DSN and retries."""
    data = (SHARED / "rfc3464" / "5.eml").read_bytes()
    metrics = Metrics("mail")
    async with listener(sandbox, UnreachableKafka(), metrics) as port:
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            await asyncio.to_thread(send, port, [verp()], data)
    assert deferred.value.smtp_code == 451
    assert _outcomes(metrics)["deferred"] == 1
    assert b"4.3.0" in deferred.value.smtp_error


async def test_one_click_twice_is_one_unsubscribe_counted_once(
    sandbox: Sandbox, worker: WorkerProcess, redis: Redis
) -> None:
    """Two one-click POSTs publish two events of one id; the worker counts one unsubscribe.

    Both contact updates say unsubscribed; a forged token is 403, a wrong body 400.
    """
    settings = settings_of(sandbox)
    credentials = parse_credentials(
        "tenants: {acme: {postmark: {username: u, password: p-0123456789abcdef}}}\n",
        base_dir=REPO,
        environ={},
    )
    producer = AIOKafkaProducer(**client_options(settings), acks="all", enable_idempotence=True)
    token = mint_unsubscribe_token(
        UnsubscribeToken("acme", "spring", "u1", "u1@example.com", int(time.time()) + 3600),
        KEY.encode(),
    )
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with TestClient(
        TestServer(create_webhook_app(settings, credentials, producer, redis))
    ) as client:
        answers = [
            await client.post(
                f"/unsubscribe/{token}", data=b"List-Unsubscribe=One-Click", headers=form
            )
            for _ in range(2)
        ]
        assert [a.status for a in answers] == [200, 200], await answers[0].text()
        forged = await client.post(
            f"/unsubscribe/{token[:-2]}xx", data=b"List-Unsubscribe=One-Click", headers=form
        )
        assert forged.status == 403
        wrong_body = await client.post(
            f"/unsubscribe/{token}", data=b"unsubscribe=yes", headers=form
        )
        assert wrong_body.status == 400
    events = await read_topic(
        sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 2
    )
    assert len({e["event_id"] for e in events}) == 1
    updates = await read_topic(
        sandbox, sandbox.topic("contact-updates"), until=lambda m: len(m) >= 2
    )
    assert {(u["_key"], u["unsubscribed"]) for u in updates} == {("acme:u1", True)}

    await worker.start()

    async def counted_once() -> bool:
        result = await asyncio.to_thread(
            run_cli, sandbox, "explain", "--tenant", "acme", "--campaign", "spring", "--json"
        )
        if result.returncode != 0:
            return False
        lifetime = json.loads(result.stdout)["windows"][-1]
        return bool(lifetime["counts"].get("unsubscribe") == 1)

    await until(counted_once, timeout_s=60)


async def test_kumomta_log_records_on_a_topic_reach_delivery_events(
    sandbox: Sandbox, producer: AIOKafkaProducer
) -> None:
    """`sendguard mta-logs` relays a Bounce record (tenant from its queue) as a hard bounce.

    A record naming no tenant is dead-lettered; a replayed record keeps its event id; the
    records are counted by outcome on the relay's /metrics.
    """
    logs = sandbox.topic("kumo-logs")
    record = {
        "type": "Bounce",
        "id": "spool-1",
        "queue": "launch:beta@example.com",
        "recipient": "gone@example.com",
        "timestamp": int(time.time()),
        "bounce_classification": "InvalidRecipient",
        "response": {"code": 550, "content": "5.1.1 user unknown"},
    }
    for value in (record, {**record, "queue": "example.com"}, record):
        await producer.send_and_wait(logs, json.dumps(value).encode(), key=b"k")
    sandbox.extra_env["SENDGUARD_KUMOMTA_LOG_TOPICS"] = logs
    metrics_port = free_port()
    sandbox.extra_env["SENDGUARD_METRICS_PORT"] = str(metrics_port)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "processor",
        "mta-logs",
        env=sandbox.env(),
        cwd=sandbox.data_dir.parent.as_posix(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        events = await read_topic(
            sandbox, sandbox.topic("delivery-events"), until=lambda m: len(m) >= 2
        )
        letters = await read_topic(
            sandbox, sandbox.topic("dead-letter"), until=lambda m: len(m) >= 1
        )

        async def counted() -> bool:
            text = await asyncio.to_thread(scrape, metrics_port)
            relayed = sample(text, "sendguard_mail_messages_total", **RELAYED)
            return relayed == 2  # the record and its replay

        await until(counted, timeout_s=20)
        text = await asyncio.to_thread(scrape, metrics_port)
        assert sample(text, "sendguard_mail_messages_total", **REJECTED) == 1
        assert 'process="mta-logs"' in text
    finally:
        if process.returncode is None:
            process.terminate()
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert [(e["_key"], e["type"], e["bounce_class"]) for e in events] == [
        ("beta:launch", "bounce", "hard")
    ] * 2
    assert events[0]["event_id"] == events[1]["event_id"]
    assert "names no tenant" in letters[0]["error"]
    assert letters[0]["source_topic"] == logs


async def test_the_mail_command_serves_its_messages_by_outcome_on_metrics(
    sandbox: Sandbox,
) -> None:
    """`sendguard mail` with SENDGUARD_METRICS_PORT: a DSN taken is counted accepted."""
    smtp_port, metrics_port = free_port(), free_port()
    sandbox.extra_env.update(
        {
            "SENDGUARD_METRICS_PORT": str(metrics_port),
            "SENDGUARD_TOKEN_KEY": KEY,
            "SENDGUARD_MAIL_BOUNCE_DOMAINS": DOMAIN,
            "SENDGUARD_MAIL_PLAIN_ADDRESSES": FBL,
        }
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "processor",
        "mail",
        "--smtp-port",
        str(smtp_port),
        env=sandbox.env(),
        cwd=sandbox.data_dir.parent.as_posix(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    accepted = {"source": "smtp", "outcome": "accepted"}
    try:

        async def listening() -> bool:
            try:
                text = await asyncio.to_thread(scrape, metrics_port)
            except OSError:
                return False
            return 'process="mail"' in text and "sendguard_mail_messages_total" in text

        await until(listening, timeout_s=30)
        data = (SHARED / "rfc3464" / "5.eml").read_bytes()

        async def sent() -> bool:
            try:
                return await asyncio.to_thread(send, smtp_port, [verp()], data) == {}
            except OSError:  # the SMTP socket opens just after the metrics one
                return False

        await until(sent, timeout_s=30)
        text = await asyncio.to_thread(scrape, metrics_port)
        assert sample(text, "sendguard_mail_messages_total", **accepted) == 1
    finally:
        if process.returncode is None:
            process.terminate()
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
