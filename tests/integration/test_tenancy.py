"""Two tenants with the same campaign id, end to end: a real worker on the real broker and Redis.

Audience, detection, escalation and resume of tenant A's `welcome` never see tenant B's, even
where B planned it first and a pre-upgrade global owner key names B.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from processor.adapters.keys import Keys
from processor.adapters.redis_contacts import RedisContactStore
from processor.services.resume_outbox import clone_campaign_id
from tests.integration.conftest import produce, read_topic
from tests.integration.resume_support import (
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

    from tests.integration.conftest import Sandbox, WorkerProcess

PAUSED = [f"u{n}" for n in range(220)]
"""Contact ids both tenants send `welcome` to (the same ids: contact state is per tenant too)."""
FRESH = [f"new{n}" for n in range(30)]
"""Contact ids both tenants planned and did not reach before the pause."""


def two_tenants(now: float) -> tuple[History, History]:
    """Tenant acme pauses `welcome` only; beta pauses it, `b2` and `b3`, so beta as a whole."""
    acme, beta = History("acme"), History("beta")
    acme.pausing("welcome", PAUSED, now)
    for campaign in ("welcome", "b2", "b3"):
        beta.pausing(campaign, PAUSED, now)
    for contact in FRESH[:5]:  # beta's new0..new4 unsubscribe; acme's contacts of the same id not
        beta.update(contact, unsubscribed=True)
    return acme, beta


async def start_two_tenants(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> tuple[History, History]:
    """Both tenants planned, paused and merged; beta planned `welcome` first."""
    keys = Keys(sandbox.name)
    # What a worker before per-tenant ownership left: beta "owns" the campaign id everywhere.
    await redis.set(keys.legacy_campaign_owner("welcome"), "beta", px=600_000)
    await worker.start()
    acme, beta = two_tenants(time.time())
    await produce(producer, sandbox.topic("audience"), audience("beta", "welcome", PAUSED, 100))
    await wait_for_audience(redis, sandbox, "beta", "welcome", 3)
    plans = audience("beta", "welcome", [*PAUSED, *FRESH], 100)
    plans += audience("acme", "welcome", [*PAUSED, *FRESH], 100)
    await produce(producer, sandbox.topic("audience"), plans)
    await produce(producer, sandbox.topic("delivery-events"), acme.events + beta.events)
    await produce_updates(producer, sandbox, beta.updates)
    await wait_for_pauses(sandbox, {"acme:welcome", "beta:welcome", "beta:b2", "beta:b3", "beta:*"})
    await wait_for_audience(redis, sandbox, "acme", "welcome", 3)
    await wait_for_audience(redis, sandbox, "beta", "welcome", 3)
    store = RedisContactStore(redis, keys, campaign_ttl_ms=60_000)
    await settle(store, acme, PAUSED + FRESH)
    await settle(store, beta, PAUSED + FRESH)

    async def attempted() -> bool:
        return all(
            [
                *await store.attempted("acme", "welcome", PAUSED),
                *await store.attempted("beta", "welcome", PAUSED),
            ]
        )

    await until(attempted, "both attempted sets")
    return acme, beta


async def test_two_tenants_with_the_same_campaign_id_are_independent_end_to_end(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Tenant acme's `welcome` is planned, paused and resumed as its own, whatever beta does."""
    acme, beta = await start_two_tenants(sandbox, worker, producer, redis)
    letters = await read_topic(
        sandbox, sandbox.topic("dead-letter"), until=lambda _m: False, timeout_s=1
    )
    assert letters == []  # no chunk was refused as another tenant's

    def both(messages: list[dict[str, Any]]) -> bool:
        return {"acme:welcome", "beta:*"} <= _keys_named(messages)

    control = await read_topic(sandbox, sandbox.topic("control"), until=both)
    assert "acme:*" not in _keys_named(control)  # beta's escalation is beta's

    code, outcome = resume_cli(sandbox, "acme", "welcome", "--request-id", "acme-1")
    assert code == 0, json.dumps(outcome)
    assert (outcome["total_recipients"], outcome["already_attempted"]) == (30, 220)
    expected = brute_force(acme, [*PAUSED, *FRESH], "welcome", datetime.now(UTC))
    check_set(await read_set(sandbox, clone_campaign_id("welcome", "acme-1")), expected, 1000)

    code, refused = resume_cli(sandbox, "beta", "welcome", "--request-id", "beta-1")
    assert code == 1
    assert refused["rejection"] == "privileged_pause"  # beta is paused as a whole; acme is not
    code, lifted = resume_cli(sandbox, "beta", "welcome", "--request-id", "beta-2", "--privileged")
    assert code == 0, json.dumps(lifted)
    assert (lifted["total_recipients"], lifted["excluded"]) == (25, {"unsubscribed": 5})
    expected = brute_force(beta, [*PAUSED, *FRESH], "welcome", datetime.now(UTC))
    check_set(await read_set(sandbox, clone_campaign_id("welcome", "beta-2")), expected, 1000)


def _keys_named(messages: list[dict[str, Any]]) -> set[str]:
    return {m["_key"] for m in messages}
