"""Signed operator requests end to end: `sendguard lock`, `unlock` and `resume --privileged`.

A real worker verifies each; whoever can produce to resume-requests without the operator key
can neither lock, unlock nor lift a tenant-wide pause.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from processor.adapters.keys import Keys
from processor.config.operator_keys import signed
from schemas.base import campaign_key
from schemas.resume import OperatorAction, ResumeRequest
from tests.integration.conftest import OPERATOR_KEY, OPERATOR_KEY_ID, produce, read_topic, run_cli
from tests.integration.resume_support import (
    History,
    audience,
    resume_cli,
    wait_for_audience,
    wait_for_pauses,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox, WorkerProcess

CONTACTS = [f"u{n}" for n in range(220)]
FRESH = [f"new{n}" for n in range(20)]


def lock_cli(sandbox: Sandbox, command: str, *extra: str) -> tuple[int, str, str]:
    """`sendguard lock|unlock --tenant acme --campaign c1 --by jane`: code, stdout, stderr."""
    result = run_cli(
        sandbox, command, "--tenant", "acme", "--campaign", "c1", "--by", "jane", *extra,
        timeout_s=90,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


async def produce_request(
    producer: AIOKafkaProducer, sandbox: Sandbox, body: ResumeRequest
) -> None:
    """A request on resume-requests, as anyone with write access could produce it."""
    key = campaign_key(body.tenant_id, body.campaign_id).encode()
    topic = sandbox.topic("resume-requests")
    await producer.send_and_wait(topic, body.model_dump_json().encode(), key=key)


async def test_only_signed_requests_lock_unlock_or_lift_a_pause(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Unsigned, forged and stale requests are refused `unauthorized`; signed ones work."""
    await worker.start()
    history = History("acme")
    history.pausing("c1", CONTACTS, time.time())
    await produce(
        producer, sandbox.topic("audience"), audience("acme", "c1", CONTACTS + FRESH, 100)
    )
    await produce(producer, sandbox.topic("delivery-events"), history.events)
    await wait_for_pauses(sandbox, {"acme:c1"})
    await wait_for_audience(redis, sandbox, "acme", "c1", 3)
    lock_key = Keys(sandbox.name).campaign_lock("acme", "c1")

    no_key = sandbox.extra_env
    no_key["SENDGUARD_OPERATOR_KEY"] = ""
    code, _, error = lock_cli(sandbox, "lock")
    assert (code, "SENDGUARD_OPERATOR_KEY" in error) == (2, True)
    no_key["SENDGUARD_OPERATOR_KEY"] = "a wrong guess at the operator key, long enough"
    code, out, _ = lock_cli(sandbox, "lock", "--json")
    assert (code, json.loads(out)["rejection"]) == (1, "unauthorized")
    assert "wrong guess" not in worker.log_text()
    no_key.clear()
    assert await redis.get(lock_key) is None

    code, out, error = lock_cli(sandbox, "lock", "--reason", "legal hold")
    assert code == 0, error
    assert out == "locked acme:c1 (by jane)\n"
    assert json.loads(await redis.get(lock_key) or b"{}")["key_id"] == OPERATOR_KEY_ID

    now = datetime.now(UTC)
    unsigned_unlock = ResumeRequest(
        schema_version=2, request_id="forged-unlock", tenant_id="acme", campaign_id="c1",
        action=OperatorAction.UNLOCK, requested_by="mallory", requested_at=now,
    )  # fmt: skip
    declared = ResumeRequest(
        request_id="declared", tenant_id="acme", campaign_id="c1", requested_by="mallory",
        privileged=True, requested_at=now,
    )  # fmt: skip
    stale = signed(
        declared.model_copy(
            update={"request_id": "stale", "requested_at": now - timedelta(minutes=10)}
        ),
        OPERATOR_KEY_ID,
        OPERATOR_KEY,
    )
    for body in (unsigned_unlock, declared, stale):
        await produce_request(producer, sandbox, body)
    answers = await read_topic(
        sandbox, sandbox.topic("resume-outcomes"), until=lambda m: len(m) >= 5
    )
    by_id = {a["request_id"]: a for a in answers}
    assert [by_id[r]["rejection"] for r in ("forged-unlock", "declared", "stale")] == [
        "unauthorized"
    ] * 3
    assert "freshness window" in by_id["stale"]["detail"]
    assert await redis.get(lock_key) is not None
    assert worker.log_text().count("operator request refused: unauthorized") == 4

    code, plain = resume_cli(sandbox, "acme", "c1")
    assert (code, plain["rejection"]) == (1, "privileged_pause")
    code, out, error = lock_cli(sandbox, "unlock")
    assert code == 0, error
    assert await redis.get(lock_key) is None
    code, accepted = resume_cli(sandbox, "acme", "c1")
    assert code == 0, accepted
    assert accepted["total_recipients"] == len(FRESH)
