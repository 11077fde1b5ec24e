"""`sendguard status` and `sendguard explain` on a running worker's topics and Redis state."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from tests.integration.conftest import produce, read_topic, run_cli
from tests.integration.test_detection import bad_list

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from tests.integration.conftest import Sandbox, WorkerProcess


async def _paused_and_healthy(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """A bad list paused on hard bounces, a healthy campaign beside it, one of another tenant."""
    await worker.start()
    topic = sandbox.topic("delivery-events")
    now = time.time()
    healthy = [
        {**e, "type": "delivered", "bounce_class": None} if e["type"] == "bounce" else e
        for e in bad_list("acme", "fine", range(300), now)
    ]
    for body in healthy:
        body["event_id"] = body["event_id"].replace("-hard", "-delivered")
    await produce(producer, topic, bad_list("acme", "bad", range(400), now) + healthy)
    await produce(producer, topic, bad_list("globex", "other", range(50), now))
    await read_topic(sandbox, sandbox.topic("control"), until=bool)
    # The healthy campaign's snapshot is published with its batch; wait for all three.
    await read_topic(
        sandbox,
        sandbox.topic("health"),
        until=lambda m: (
            {(h["tenant_id"], h["campaign_id"]) for h in m}
            >= {("acme", "bad"), ("acme", "fine"), ("globex", "other")}
        ),
    )


async def test_status_lists_the_paused_campaign_with_its_rule_and_lock(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """JSON rows per campaign; the paused one names hard_bounce and shows the operator lock."""
    await _paused_and_healthy(sandbox, worker, producer)
    locked = await asyncio.to_thread(
        run_cli, sandbox, "lock", "--tenant", "acme", "--campaign", "bad", "--by", "ops"
    )
    assert locked.returncode == 0, locked.stderr

    result = await asyncio.to_thread(run_cli, sandbox, "status", "--json")
    assert result.returncode == 0, result.stderr
    rows = {(r["tenant_id"], r["campaign_id"]): r for r in map(json.loads, result.stdout.split())}
    assert set(rows) == {("acme", "bad"), ("acme", "fine"), ("globex", "other")}
    bad = rows["acme", "bad"]
    assert bad["status"] == "paused"
    assert bad["rule"].startswith("hard_bounce/")
    assert bad["locked"] is True
    assert bad["since"] is not None
    assert bad["pause"]["evidence"]["metric"] == "hard_bounce"
    assert rows["acme", "fine"]["status"] == "healthy"
    assert rows["acme", "fine"]["locked"] is None  # only paused campaigns have locks

    only = await asyncio.to_thread(
        run_cli, sandbox, "status", "--tenant", "acme", "--status", "locked"
    )
    assert only.returncode == 0, only.stderr
    lines = only.stdout.splitlines()
    assert lines[0].split()[:3] == ["TENANT", "CAMPAIGN", "STATUS"]
    assert lines[1].split()[:4] == ["acme", "bad", "paused", bad["rule"]]
    assert lines[1].split()[-1] == "yes"
    assert lines[-1] == "1 campaigns"


async def test_explain_says_which_rule_paused_the_campaign_and_why(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """Every rule is read against the windows; the pause rule is first, with its numbers."""
    await _paused_and_healthy(sandbox, worker, producer)

    async def explained() -> dict[str, object]:
        result = await asyncio.to_thread(
            run_cli, sandbox, "explain", "--tenant", "acme", "--campaign", "bad", "--json"
        )
        assert result.returncode == 0, result.stderr
        report: dict[str, object] = json.loads(result.stdout)
        return report

    report = await explained()
    assert report["status"] == "paused"
    rules = report["rules"]
    assert isinstance(rules, list)
    assert rules[0]["verdict"] == "pause"
    assert rules[0]["metric"] == "hard_bounce"
    assert rules[0]["wilson_lower_bound"] > rules[0]["pause"]
    assert "above the pause threshold" in rules[0]["why"]
    assert {r["metric"] for r in rules} == {"hard_bounce", "complaint", "unsubscribe"}
    assert report["timeline"][-1]["status"] == "paused"  # type: ignore[index]
    lifetime = report["windows"][-1]  # type: ignore[index]
    assert lifetime["window"] == "lifetime"
    assert lifetime["counts"]["sent"] == 400
    # The sequential rules beside them, each with its statistic against h. This bad list came
    # within half a second: its bounces wait in the current minute's step (or, astride a
    # minute, are held by the floor of 200 sends whose bounces are due).
    sequential = {r["metric"]: r for r in report["sequential"]}  # type: ignore[attr-defined]
    assert set(sequential) == {"hard_bounce", "complaint", "unsubscribe"}
    bounces = sequential["hard_bounce"]
    assert (bounces["h"], bounces["verdict"]) == (15.0, "ok")
    assert 0 < bounces["pending_events"] <= 40
    assert bounces["why"].startswith("statistic ")

    text = await asyncio.to_thread(
        run_cli, sandbox, "explain", "--tenant", "acme", "--campaign", "bad"
    )
    assert "PAUSE hard_bounce/" in text.stdout
    assert "rules (worst first):" in text.stdout
    assert "OK    hard_bounce/sequential: p0 3.00%, p1 8.00%" in text.stdout


def test_explain_of_an_unknown_campaign_says_so(sandbox: Sandbox) -> None:
    """No state in Redis: one line naming the campaign, exit status 2."""
    result = run_cli(sandbox, "explain", "--tenant", "acme", "--campaign", "nope")
    assert result.returncode == 2
    assert "no state for acme:nope" in result.stderr
    assert "Traceback" not in result.stderr
