"""Replay and the live worker decide the same: same pause commands, same triggering events."""

from __future__ import annotations

import asyncio
import io
import json
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from processor.domain.policy import PolicyBook
from processor.ports.detection_store import InMemoryStore
from processor.services.replay import records_from_lines, replay
from processor.simulation.profiles import CampaignKind, CampaignProfile, Rates
from processor.simulation.workload import merged_events, to_json_line
from schemas.base import campaign_key
from tests.integration.conftest import read_topic

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer

    from tests.integration.conftest import Sandbox, WorkerProcess

SEED = 11


def _profiles() -> list[CampaignProfile]:
    healthy = Rates(hard_bounce=0.008, complaint=0.0002, unsubscribe=0.002)
    return [
        CampaignProfile("acme", "healthy", 3000, send_rate_per_s=20.0, rates=healthy),
        CampaignProfile(
            "acme", "bad-list", 3000, CampaignKind.BAD_LIST, send_rate_per_s=20.0,
            rates=healthy, bad_rates=Rates(hard_bounce=0.15), onset_fraction=0.3,
        ),
        CampaignProfile(
            "globex", "unsubscribes", 3000, CampaignKind.UNSUBSCRIBE_WAVE, send_rate_per_s=20.0,
            rates=healthy, bad_rates=Rates(unsubscribe=0.12), onset_fraction=0.0,
        ),
    ]  # fmt: skip


def _comparable(command: dict[str, Any]) -> dict[str, Any]:
    """A pause command without its Kafka position (a file has none)."""
    body = {k: v for k, v in command.items() if not k.startswith("_")}
    if body.get("trigger"):
        body["trigger"] = {k: body["trigger"][k] for k in ("event_id", "occurred_at")}
    return body


async def test_replay_and_the_live_worker_publish_identical_pause_commands(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """The worker (Kafka, Redis) and `replay` (embedded store) publish identical pause commands.

    Down to the triggering event and the evidence, for the same events.
    """
    now = datetime.fromtimestamp(time.time(), tz=UTC)
    # On a minute: the sequential rules move once a step (20 s) of event time, so which rule
    # pauses first must not depend on the second the test starts in.
    start = (now - timedelta(hours=4)).replace(second=0, microsecond=0)
    events = [e for e in merged_events(_profiles(), SEED, start) if e.occurred_at <= now]
    lines = [to_json_line(e) for e in events]

    out = io.StringIO()
    result = await replay(
        records_from_lines(lines),
        store=InMemoryStore(),
        policy_book=PolicyBook,
        out=out,
        errors=io.StringIO(),
    )
    replayed = [json.loads(line) for line in out.getvalue().splitlines()]
    replayed_pauses = [m for m in replayed if m.get("command") == "pause"]
    assert {(m["tenant_id"], m["campaign_id"]) for m in replayed_pauses} == {
        ("acme", "bad-list"),
        ("globex", "unsubscribes"),
    }
    assert result.applied == len(events)
    # Both are the sequential rules' (the bad list's onset comes after 900 healthy sends, which
    # dilute the 1 h window): the CUSUM's state in Redis (worker) and in memory (replay) is held
    # to the same decisions too.
    assert {m["campaign_id"]: m["evidence"]["window"] for m in replayed_pauses} == {
        "bad-list": "sequential",
        "unsubscribes": "sequential",
    }

    await worker.start()
    topic = sandbox.topic("delivery-events")
    sends = [
        await producer.send(
            topic, value=line.encode(), key=campaign_key(e.tenant_id, e.campaign_id).encode()
        )
        for e, line in zip(events, lines, strict=True)
    ]
    await asyncio.gather(*sends)
    live = await read_topic(
        sandbox, sandbox.topic("control"), until=lambda m: len(m) >= len(replayed_pauses)
    )
    live_pauses = sorted(map(_comparable, live), key=lambda m: m["campaign_id"])
    assert live_pauses == sorted(map(_comparable, replayed_pauses), key=lambda m: m["campaign_id"])
    for command in live:
        assert command["trigger"]["topic"] == topic
        assert command["trigger"]["offset"] is not None

    # The worker's health snapshot at the sequential pause shows the statistic at its bound.
    def wave_paused(messages: list[dict[str, Any]]) -> bool:
        return any(_is_wave_pause(m) for m in messages)

    health = await read_topic(sandbox, sandbox.topic("health"), until=wave_paused)
    snapshot = next(m for m in health if _is_wave_pause(m))
    entries = {entry["metric"]: entry for entry in snapshot["sequential"]}
    unsubscribes = entries["unsubscribe"]
    assert unsubscribes["h"] == 13.0
    assert unsubscribes["fraction_of_h"] >= 1.0
    assert unsubscribes["change_at"] is not None
    assert snapshot["reason"]["metric"] == "unsubscribe"


def _is_wave_pause(message: dict[str, Any]) -> bool:
    return bool(
        message.get("campaign_id") == "unsubscribes"
        and message.get("status_changed")
        and message.get("status") == "paused"
    )
