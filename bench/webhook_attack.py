"""Webhook attack: how long a real receiver takes to answer the worst authenticated bodies.

Usage: `.venv/bin/python -m bench.webhook_attack [--max-records N]`.

Starts `python -m processor webhooks` on loopback against the local stack, in a sandbox of its
own (topic and key prefix; topics made by `sendguard topics create`, as deployed), with a
generated credentials file for tenant `acme` (Postmark basic auth and a SendGrid key). Each case
posts one authenticated body and records the status, the answer's size and time, the longest
`/healthz` answer while it ran (other tenants' view), and the receiver's RSS. The worst shape is
a batch of empty records (each one a rejection) plus one valid record, so the request is not
refused as a whole. `--max-records` passes `SENDGUARD_WEBHOOK_MAX_RECORDS` to the receiver
(default: the receiver's own default), to time the rejection path itself on a megabyte of
records.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import secrets
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.common import (
    REPO,
    Sandbox,
    load_average,
    machine_info,
    new_name,
    remove_sandbox,
    rss_bytes,
    run_cli,
    stack_env,
    write_result,
)

if TYPE_CHECKING:
    from pathlib import Path

MIB = 1024 * 1024
SAMPLES = REPO.parent / "shared" / "provider-samples"
BAR_S = 1.0
"""The issue's bar: the worst 1 MiB body answered in well under a second."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def batch(filler: bytes, valid: bytes, size: int) -> bytes:
    """A JSON array of `filler` records, then one `valid` record, about `size` bytes long."""
    count = max(0, (size - len(valid) - 2) // (len(filler) + 1))
    return b"[" + b",".join([filler] * count + [valid]) + b"]"


def batch_of(filler: bytes, valid: bytes, records: int) -> bytes:
    """A JSON array of `records - 1` filler records and one valid record."""
    return b"[" + b",".join([filler] * (records - 1) + [valid]) + b"]"


class Receiver:
    """`python -m processor webhooks` in the sandbox, with generated credentials."""

    def __init__(self, sandbox: Sandbox, max_records: int | None) -> None:
        self.sandbox = sandbox
        self.max_records = max_records
        self.port = _free_port()
        self.password = secrets.token_hex(16)
        self.sendgrid_key = ec.generate_private_key(ec.SECP256R1())
        self.process: subprocess.Popen[bytes] | None = None

    def _credentials(self, folder: Path) -> Path:
        der = self.sendgrid_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        path = folder / "credentials.yaml"
        path.write_text(
            "tenants:\n"
            "  acme:\n"
            "    attribution: {fallback_campaign_id: attack}\n"
            f'    sendgrid: {{public_key: "{base64.b64encode(der).decode()}"}}\n'
            "    postmark: {username: acme-hooks, password: env:BENCH_POSTMARK_PASSWORD}\n"
        )
        return path

    async def start(self) -> None:
        """Start the receiver and wait for `/healthz` to answer 200."""
        folder = self.sandbox.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        env = {
            **self.sandbox.env(),
            "SENDGUARD_WEBHOOK_CREDENTIALS_FILE": str(self._credentials(folder)),
            "BENCH_POSTMARK_PASSWORD": self.password,
            "SENDGUARD_LOG_LEVEL": "INFO",
        }
        if self.max_records is not None:
            env["SENDGUARD_WEBHOOK_MAX_RECORDS"] = str(self.max_records)
        with (folder / "webhooks.log").open("wb") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220, S603  # a long-lived child; fixed argv
                [sys.executable, "-m", "processor", "webhooks", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with session.get(self.url("/healthz")) as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise RuntimeError("the receiver did not start: " + (folder / "webhooks.log").read_text())

    def stop(self) -> None:
        """Stop the receiver (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def url(self, path: str) -> str:
        """A URL of the receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def postmark(self, _body: bytes) -> tuple[str, dict[str, str]]:
        """Path and headers of acme's Postmark post (basic auth: the body is not signed)."""
        pair = base64.b64encode(f"acme-hooks:{self.password}".encode()).decode()
        return "/webhooks/postmark/acme", {"Authorization": f"Basic {pair}"}

    def sendgrid(self, body: bytes) -> tuple[str, dict[str, str]]:
        """Path and headers of acme's SendGrid post of `body`, signed now."""
        timestamp = str(int(time.time()))
        signature = self.sendgrid_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return "/webhooks/sendgrid/acme", {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            "Content-Type": "application/json",
        }


async def attack(
    receiver: Receiver, session: aiohttp.ClientSession, name: str, provider: str, body: bytes
) -> dict[str, Any]:
    """Post one body; time it, and the slowest `/healthz` answer while it ran."""
    path, headers = getattr(receiver, provider)(body)
    pid = receiver.process.pid if receiver.process else 0
    rss_before = rss_bytes(pid)
    done = asyncio.Event()
    health_ms: list[float] = []

    async def probe() -> None:
        while not done.is_set():
            started = time.monotonic()
            async with session.get(receiver.url("/healthz")) as response:
                await response.read()
            health_ms.append(1000 * (time.monotonic() - started))
            await asyncio.sleep(0.02)

    prober = asyncio.create_task(probe())
    started = time.monotonic()
    async with session.post(receiver.url(path), data=body, headers=headers) as response:
        answer = await response.read()
        status = response.status
    seconds = time.monotonic() - started
    done.set()
    await prober
    parsed = json.loads(answer)
    result = {
        "case": name,
        "provider": provider,
        "body_bytes": len(body),
        "records": body.count(b",") + 1,
        "status": status,
        "answer_s": round(seconds, 3),
        "answer_bytes": len(answer),
        "error": parsed.get("error"),
        "rejected_count": parsed.get("rejected_count"),
        "healthz_max_ms": round(max(health_ms, default=0.0), 1),
        "rss_before_mb": round((rss_before or 0) / MIB, 1),
        "rss_after_mb": round((rss_bytes(pid) or 0) / MIB, 1),
    }
    print(json.dumps(result), flush=True)
    return result


async def run(max_records: int | None) -> dict[str, Any]:
    """Every case against one receiver; the sandbox is removed afterwards."""
    sandbox = Sandbox(stack_env(), new_name("webhook-attack"))
    receiver = Receiver(sandbox, max_records)
    postmark_valid = (SAMPLES / "postmark" / "bounce_hard.json").read_bytes().strip()
    [sendgrid_record] = json.loads((SAMPLES / "sendgrid" / "bounce.json").read_bytes())
    sendgrid_valid = json.dumps(sendgrid_record)
    valid = {"postmark": postmark_valid, "sendgrid": sendgrid_valid.encode()}
    cases = [
        ("1 MiB of [] records + 1 valid", "postmark", batch(b"[]", valid["postmark"], MIB)),
        ("1 MiB of {} records + 1 valid", "postmark", batch(b"{}", valid["postmark"], MIB)),
        ("1 MiB of {} records + 1 valid", "sendgrid", batch(b"{}", valid["sendgrid"], MIB)),
        ("1 MiB of 0 records + 1 valid", "sendgrid", batch(b"0", valid["sendgrid"], MIB)),
        (
            "issue: 20,000 {} + 1 valid (60 KB)",
            "sendgrid",
            batch_of(b"{}", valid["sendgrid"], 20_001),
        ),
        ("10,000 [] records + 1 valid", "postmark", batch_of(b"[]", valid["postmark"], 10_000)),
        ("10,000 {} records (all rejected)", "postmark", batch_of(b"{}", b"{}", 10_000)),
    ]
    try:
        run_cli(sandbox, "topics", "create")  # as deployed: sizes and retention from the catalog
        await receiver.start()
        results = []
        async with aiohttp.ClientSession() as session:
            for name, provider, body in cases:
                results.append(await attack(receiver, session, name, provider, body))
    finally:
        receiver.stop()
        await remove_sandbox(sandbox)
    one_mib = [r for r in results if r["body_bytes"] >= MIB - 1024]
    return {
        "machine": machine_info(),
        "load_average": load_average(),
        "max_records": max_records,
        "bar_s": BAR_S,
        "worst_1mib_answer_s": max(r["answer_s"] for r in one_mib),
        "cases": results,
    }


def main() -> None:
    """Run the cases and write bench/results/webhook_attack-*.json."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-records", type=int, default=None)
    args = parser.parse_args()
    result = asyncio.run(run(args.max_records))
    path = write_result("webhook_attack", result)
    print(f"worst 1 MiB answer: {result['worst_1mib_answer_s']} s (bar {BAR_S} s); {path}")


if __name__ == "__main__":
    main()
