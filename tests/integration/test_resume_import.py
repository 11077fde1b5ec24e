"""Suppression imports end to end: bad rows are reported, and a large resume excludes the rest."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from processor.adapters.keys import Keys
from processor.adapters.redis_contacts import RedisContactStore
from processor.services.resume_outbox import clone_campaign_id
from tests.integration.conftest import produce, read_topic, run_cli
from tests.integration.resume_support import (
    History,
    audience,
    brute_force,
    check_set,
    read_set,
    resume_cli,
    settle,
    wait_for_audience,
    wait_for_pauses,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox, WorkerProcess


async def test_imported_suppressions_are_excluded_from_a_large_resume(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Imported opt-outs are excluded as unsubscribed from a resume of 25 000 recipients."""
    await worker.start()
    csv_path = sandbox.data_dir.parent / "optouts.csv"
    rows = ["contact_id,Email Address,Status,Timestamp"]
    rows += [f"u{n},u{n}@example.com,unsubscribed,2025-01-0{1 + n % 9}" for n in range(1000, 1010)]
    rows += [
        "u2000,not-an-email,unsubscribed,",
        "u2001,u2001@example.com,subscribed,",
        "u2002,u2002@example.com,bounced,yesterday",
        "",
        "u2003,u2003@example.com,,1735689600",
    ]
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")

    result = run_cli(sandbox, "import-suppressions", str(csv_path), "--tenant", "acme")

    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("sendguard: line")]
    assert [e.split(":")[1].strip() for e in errors] == ["line 12", "line 13", "line 14"]
    assert "not an email address" in errors[0]
    assert "not an opt-out status" in errors[1]
    assert "not a timestamp" in errors[2]
    assert "imported 11 opt-outs" in result.stdout
    updates = await read_topic(
        sandbox, sandbox.topic("contact-updates"), until=lambda m: len(m) >= 11
    )
    assert sorted(u["_key"] for u in updates) == sorted(
        [f"acme:u{n}" for n in range(1000, 1010)] + ["acme:u2003"]
    )
    assert {u["unsubscribed"] for u in updates} == {True}

    history = History("acme")
    for update in updates:
        at = datetime.fromisoformat(update["occurred_at"])
        history.update(update["contact_id"], unsubscribed=True, occurred_at=at)
    ids = [f"u{n}" for n in range(25_000)]
    await produce(producer, sandbox.topic("audience"), audience("acme", "big", ids, 5000))
    history.pausing("big", ids[:220], time.time())
    await produce(producer, sandbox.topic("delivery-events"), history.events)
    store = RedisContactStore(redis, Keys(sandbox.name), campaign_ttl_ms=60_000)
    await settle(store, history, [f"u{n}" for n in range(1000, 1010)])
    await wait_for_audience(redis, sandbox, "acme", "big", 5)
    await wait_for_pauses(sandbox, {"acme:big"})

    code, outcome = resume_cli(sandbox, "acme", "big", "--request-id", "big-1")

    assert code == 0, json.dumps(outcome)
    expected = brute_force(history, ids, "big", datetime.now(UTC))
    assert outcome["excluded"] == {"unsubscribed": 11} == expected["excluded"]
    assert (outcome["total_recipients"], outcome["chunk_count"]) == (24_769, 25)
    check_set(await read_set(sandbox, clone_campaign_id("big", "big-1")), expected, 1000)

    missing = sandbox.data_dir.parent / "no-email.csv"
    missing.write_text("name,status\nbob,unsubscribed\n", encoding="utf-8")
    broken = run_cli(sandbox, "import-suppressions", str(missing), "--tenant", "acme")
    assert broken.returncode == 2
    assert "no email column" in broken.stderr
