"""The resume agent end to end: a real worker process on the real broker and Redis.

Campaigns are paused by the detector from produced delivery events; every expected recipient set
is computed independently, from the produced events and updates with the pure transitions.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from processor.adapters.keys import Keys
from processor.adapters.redis_contacts import RedisContactStore
from processor.config.operator_keys import signed
from processor.services.resume_outbox import clone_campaign_id
from schemas.audience import ConsentState
from schemas.base import campaign_key
from schemas.resume import ResumeRequest
from tests.integration.conftest import (
    OPERATOR_KEY,
    OPERATOR_KEY_ID,
    WorkerProcess,
    produce,
    read_topic,
    run_cli,
)
from tests.integration.resume_support import (
    DAY_S,
    History,
    audience,
    brute_force,
    check_set,
    produce_updates,
    read_set,
    resume_cli,
    settle,
    until,
    wait_for_audience,
    wait_for_pauses,
)

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox


def varied_history(ids: list[str], now: float) -> History:
    """Campaign c1 pauses over ids[:300]; the rest get every kind of exclusion from c-old."""
    day_ago = now - DAY_S
    sixteen_sends = [("sent", now - 20 * DAY_S + n * 3600) for n in range(16)]
    events: list[tuple[list[str], list[tuple[str, float]]]] = [
        (ids[300:310], [("unsubscribe", day_ago)]),
        (ids[310:315], [("complaint", day_ago)]),
        (ids[315:320], [("bounce", day_ago)]),
        (ids[320:330], [("sent", now - 30 * DAY_S + n * 3600) for n in range(11)]),  # unengaged
        (ids[330:335], [("sent", now - 200 * DAY_S)]),  # not emailed recently
        (ids[335:340], [("open", now - 40 * DAY_S), *sixteen_sends]),  # engaged before
        (ids[340:345], [("click", day_ago)]),
        (["u361"], [("unsubscribe", day_ago)]),  # re-subscribed by an update later
    ]
    history = History("acme")
    for contacts, steps in events:
        for contact in contacts:
            for kind, at in steps:
                extra = {"bounce_class": "hard"} if kind == "bounce" else {}
                history.event("c-old", kind, contact, at, **extra)
    history.pausing("c1", ids[:300], now)
    updates: list[tuple[list[str], dict[str, Any]]] = [
        (ids[345:350], {"consent": ConsentState.REVOKED}),
        (ids[350:355], {"deleted": True}),
        (ids[355:360], {"unsubscribed": True}),
        (["u360"], {"consent": ConsentState.GRANTED}),
    ]
    for contacts, fields in updates:
        for contact in contacts:
            history.update(contact, **fields)
    return history


async def test_a_paused_campaign_is_resumed_with_its_filtered_remainder(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """The CLI's request gets the brute-force set, a resume command and a resumed snapshot."""
    await worker.start()
    store = RedisContactStore(redis, Keys(sandbox.name), campaign_ttl_ms=60_000)
    ids = [f"u{n}" for n in range(600)]
    planned = [*ids[:500], "u400", *ids[500:]]  # u400 is planned twice
    await produce(producer, sandbox.topic("audience"), audience("acme", "c1", planned, 250))
    history = varied_history(ids, time.time())
    await produce(producer, sandbox.topic("delivery-events"), history.events)
    await produce_updates(producer, sandbox, history.updates)
    await settle(store, history, ids[300:])
    await produce_updates(producer, sandbox, [history.update("u361", unsubscribed=False)])
    await settle(store, history, ids[300:])
    await wait_for_audience(redis, sandbox, "acme", "c1", 3)
    await wait_for_pauses(sandbox, {"acme:c1"})

    code, outcome = resume_cli(sandbox, "acme", "c1", "--request-id", "req-1")

    assert code == 0, json.dumps(outcome)
    clone = clone_campaign_id("c1", "req-1")
    expected = brute_force(history, planned, "c1", datetime.now(UTC))
    assert outcome["accepted"]
    assert outcome["clone_campaign_id"] == clone
    assert outcome["excluded"] == expected["excluded"]
    assert set(expected["excluded"]) == {
        "no_consent", "unsubscribed", "hard_bounced", "complained", "not_emailed_recently",
        "unengaged",
    }  # fmt: skip
    assert (outcome["total_recipients"], outcome["already_attempted"]) == (245, 300)
    check_set(await read_set(sandbox, clone), expected, 1000)
    control = await read_topic(
        sandbox, sandbox.topic("control"), until=lambda m: any(c["command"] == "resume" for c in m)
    )
    (command,) = [c for c in control if c["command"] == "resume"]
    assert (command["_key"], command["clone_campaign_id"]) == ("acme:c1", clone)
    assert command["recipient_count"] == 245

    def resumed(messages: list[dict[str, Any]]) -> bool:
        return any(m["status"] == "resumed" for m in messages)

    health = await read_topic(sandbox, sandbox.topic("health"), until=resumed)
    (snapshot,) = [m for m in health if m["status"] == "resumed"]
    assert (snapshot["_key"], snapshot["status_changed"]) == ("acme:c1", True)
    await check_answers_after_the_resume(sandbox, clone, outcome)


async def check_answers_after_the_resume(
    sandbox: Sandbox, clone: str, outcome: dict[str, Any]
) -> None:
    """The same request id answers again without a second set; a new one finds it not paused."""
    again_code, again = resume_cli(sandbox, "acme", "c1", "--request-id", "req-1")
    assert (again_code, again) == (0, outcome)
    outcomes = await read_topic(
        sandbox, sandbox.topic("resume-outcomes"), until=lambda m: len(m) >= 2
    )
    assert [o["request_id"] for o in outcomes] == ["req-1", "req-1"]
    assert len(await read_set(sandbox, clone)) == 2  # one chunk and one manifest, still

    late_code, late = resume_cli(sandbox, "acme", "c1")
    assert late_code == 1
    assert late["rejection"] == "not_paused"
    human = run_cli(sandbox, "resume", "--tenant", "acme", "--campaign", "c1", "--by", "ops")
    assert human.returncode == 1
    assert human.stdout.startswith("rejected (not_paused): campaign c1 is not paused")


async def test_each_unacceptable_request_is_rejected_with_its_reason(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Each unacceptable request is refused with its reason; only a signed one lifts a pause."""
    await worker.start()
    now = time.time()
    acme, big = History("acme"), History("big")
    done = [f"d{n}" for n in range(230)]
    acme.pausing("c-done", done, now)
    acme.event("c-fine", "sent", "f0", now)
    plans = [*audience("acme", "c-done", done, 100), *audience("acme", "c-fine", ["f0", "f1"], 2)]
    for campaign in ("b1", "b2", "b3"):
        contacts = [f"{campaign}-{n}" for n in range(220)]
        big.pausing(campaign, contacts, now)
        fresh = [f"{campaign}-new{n}" for n in range(20)]
        plans += audience("big", campaign, [*contacts, *fresh], 80)
    await produce(producer, sandbox.topic("audience"), plans)
    await produce(producer, sandbox.topic("delivery-events"), acme.events + big.events)
    await wait_for_pauses(sandbox, {"acme:c-done", "big:b1", "big:b2", "big:b3", "big:*"})
    await wait_for_audience(redis, sandbox, "acme", "c-done", 3)
    await wait_for_audience(redis, sandbox, "acme", "c-fine", 1)
    await wait_for_audience(redis, sandbox, "big", "b1", 3)
    store = RedisContactStore(redis, Keys(sandbox.name), campaign_ttl_ms=60_000)

    async def attempted() -> bool:
        flags = await store.attempted("big", "b1", [f"b1-{n}" for n in range(220)])
        return all(flags) and all(await store.attempted("acme", "c-done", done))

    await until(attempted, "the attempted sets")
    requests = {
        "unknown": ("acme", "c-nowhere", False),
        "intruder": ("intruder", "c-fine", False),
        "fine": ("acme", "c-fine", False),
        "done": ("acme", "c-done", False),
        "plain": ("big", "b1", False),
        "privileged": ("big", "b1", True),
        "forged": ("big", "b1", True),
        "signed": ("big", "b1", True),
    }
    topic = sandbox.topic("resume-requests")
    await producer.send_and_wait(topic, b"{broken", key=b"acme:c-done")
    for request_id, (tenant, campaign, privileged) in requests.items():
        body = ResumeRequest(
            request_id=request_id,
            tenant_id=tenant,
            campaign_id=campaign,
            requested_by="ops",
            privileged=privileged,
            requested_at=datetime.now(UTC),
        )
        if request_id == "signed":
            body = signed(body, OPERATOR_KEY_ID, OPERATOR_KEY)
        elif request_id == "forged":
            body = signed(body, OPERATOR_KEY_ID, "a guess at the operator key, 32+ chars")
        key = campaign_key(tenant, campaign).encode()
        await producer.send_and_wait(topic, body.model_dump_json().encode(), key=key)

    answers = await read_topic(
        sandbox, sandbox.topic("resume-outcomes"), until=lambda m: len(m) >= len(requests)
    )
    by_id = {a["request_id"]: a for a in answers}
    assert {rid: by_id[rid]["rejection"] for rid in requests} == {
        "unknown": "unknown_campaign",
        "intruder": "unknown_campaign",
        "fine": "not_paused",
        "done": "no_recipients_remain",
        "plain": "privileged_pause",
        "privileged": "unauthorized",
        "forged": "unauthorized",
        "signed": None,
    }
    assert (by_id["done"]["already_attempted"], by_id["done"]["total_recipients"]) == (230, 0)
    assert "not signed" in by_id["privileged"]["detail"]
    assert "does not verify" in by_id["forged"]["detail"]
    assert by_id["signed"]["accepted"]
    assert by_id["signed"]["total_recipients"] == 20
    letters = await read_topic(sandbox, sandbox.topic("dead-letter"), until=lambda m: len(m) >= 1)
    assert [(d["error_type"], d["source_topic"]) for d in letters] == [("invalid_json", topic)]
    clone = clone_campaign_id("b1", "signed")
    *_, manifest = await read_set(sandbox, clone)
    assert manifest["total_recipients"] == 20

    await worker.stop()
    code, error = resume_cli(sandbox, "acme", "c-done", "--timeout", "3")
    assert code == 2
    assert "no answer" in error


async def test_roles_in_separate_processes_and_a_resume_waits_for_detection(
    sandbox: Sandbox, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Detection and resume in two processes (SENDGUARD_WORKER_ROLES).

    With detection stopped after the pause, unsubscribes produced meanwhile are not merged yet:
    a resume is refused as contacts_behind rather than mail them. Once detection runs again,
    the same request id is accepted, without them.
    """

    def role(name: str, roles: str) -> WorkerProcess:
        return WorkerProcess(
            sandbox,
            name=name,
            env={
                "SENDGUARD_WORKER_ROLES": roles,
                "SENDGUARD_KAFKA_GROUP_INSTANCE_ID": f"{sandbox.name}-{name}",
                "SENDGUARD_RESUME_CONTACTS_WAIT_S": "1",
            },
        )

    detect, resume = role("detect", "detect"), role("resume", "resume")
    try:
        await detect.start()
        await resume.start()
        ids = [f"u{n}" for n in range(320)]
        await produce(producer, sandbox.topic("audience"), audience("acme", "c1", ids, 160))
        now = time.time()
        history = History("acme")
        history.pausing("c1", ids[:300], now)
        await produce(producer, sandbox.topic("delivery-events"), history.events)
        await wait_for_audience(redis, sandbox, "acme", "c1", 2)
        await wait_for_pauses(sandbox, {"acme:c1"})
        assert await detect.stop() == 0

        paused = len(history.events)
        for contact in ids[300:310]:
            history.event("c-old", "unsubscribe", contact, now - 60)
        await produce(producer, sandbox.topic("delivery-events"), history.events[paused:])
        code, refused = resume_cli(sandbox, "acme", "c1", "--request-id", "req-1")
        assert code == 1, json.dumps(refused)
        assert refused["rejection"] == "contacts_behind"
        assert "10 delivery events behind" in refused["detail"]

        await detect.start()
        code, outcome = resume_cli(sandbox, "acme", "c1", "--request-id", "req-1")
        assert code == 0, json.dumps(outcome)
        expected = brute_force(history, ids, "c1", datetime.now(UTC))
        assert outcome["excluded"] == expected["excluded"] == {"unsubscribed": 10}
        assert (outcome["total_recipients"], outcome["already_attempted"]) == (10, 300)
        check_set(await read_set(sandbox, clone_campaign_id("c1", "req-1")), expected, 1000)
        assert "detection consumer ready" not in resume.log_text()
    finally:
        await detect.stop()
        await resume.stop()
