"""Detection end to end: a real `sendguard worker` process on the real Kafka broker and Redis.

Events go in on the delivery-events topic; the tests read what the worker decided on the control
and health topics, and its campaign state straight from Redis.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from collections import Counter as Tally
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from processor.domain.codec import decode_state
from processor.domain.policy import HOUR_MS, Policy, PolicyBook, wilson_lower_bound
from processor.domain.windows import Counter
from processor.services.outbox import deterministic_id
from schemas.base import campaign_key
from schemas.health import CampaignStatus
from tests.integration.conftest import event, produce, read_topic

if TYPE_CHECKING:
    from collections.abc import Callable

    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from processor.domain.campaign_state import CampaignState
    from tests.integration.conftest import Sandbox, WorkerProcess

BAD_EVERY = 10
"""In a bad list every 10th recipient hard-bounces: a 10% hard-bounce rate."""
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com")
Z = Policy(()).z
"""The default policy's z (95% confidence)."""
COUNTER_OF_KIND = {
    "sent": Counter.SENT,
    "delivered": Counter.DELIVERED,
    "complaint": Counter.COMPLAINT,
    "unsubscribe": Counter.UNSUBSCRIBE,
    "open": Counter.OPEN,
    "click": Counter.CLICK,
}
COUNTER_OF_BOUNCE = {"hard": Counter.HARD_BOUNCE, "soft": Counter.SOFT_BOUNCE}

Message = dict[str, Any]


# --- building events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recipient:
    """One addressee of a campaign; builds its delivery events (ids `campaign-contact-kind`)."""

    tenant: str
    campaign: str
    contact: str
    domain: str = "example.com"

    def event(self, kind: str, at: float, *, bounce_class: str | None = None) -> Message:
        """A delivery event of this recipient at epoch seconds `at` (conftest's `event`)."""
        body = event(
            event_id=f"{self.campaign}-{self.contact}-{bounce_class or kind}",
            tenant=self.tenant,
            campaign=self.campaign,
            kind=kind,
            at=at,
            contact=self.contact,
            bounce_class=bounce_class,
        )
        body["recipient"]["address"] = f"{self.contact}@{self.domain}"
        return body


def bad_list(tenant: str, campaign: str, recipients: range, at: float) -> list[Message]:
    """Per recipient a send, then a hard bounce for every 10th one and a delivery otherwise.

    Each bounce is categorized bad_mailbox, as the SMTP classifier would a 5.1.1.
    """
    events = []
    for i in recipients:
        who = Recipient(tenant, campaign, f"u{i}", DOMAINS[i % len(DOMAINS)])
        moment = at + i / 1000
        events.append(who.event("sent", moment))
        if i % BAD_EVERY == BAD_EVERY - 1:
            bounce = who.event("bounce", moment, bounce_class="hard")
            bounce["bounce_category"] = "bad_mailbox"
            events.append(bounce)
        else:
            events.append(who.event("delivered", moment))
    return events


def counter_of(body: Message) -> Counter:
    """The counter a delivery event increments."""
    if body["type"] == "bounce":
        return COUNTER_OF_BOUNCE[body["bounce_class"]]
    return COUNTER_OF_KIND[body["type"]]


def distinct_counts(events: list[Message]) -> list[int]:
    """Lifetime counts the worker must reach: one per distinct event id, by counter."""
    counts = [0] * len(Counter)
    for body in {e["event_id"]: e for e in events}.values():
        counts[counter_of(body)] += 1
    return counts


# --- Kafka and Redis helpers -----------------------------------------------------------------


async def produce_tracked(
    producer: AIOKafkaProducer, topic: str, events: list[Message]
) -> dict[str, tuple[int, int]]:
    """Produce like conftest's `produce`; returns each event id's (partition, offset)."""
    futures = []
    for body in events:
        key = f"{body['tenant_id']}:{body['campaign_id']}".encode()
        futures.append(await producer.send(topic, value=json.dumps(body).encode(), key=key))
    metadata = await asyncio.gather(*futures)
    return {
        body["event_id"]: (meta.partition, meta.offset)
        for body, meta in zip(events, metadata, strict=True)
    }


async def read_all(sandbox: Sandbox, topic: str, *, timeout_s: float = 30) -> list[Message]:
    """Every message on a topic up to its current end (no waiting for more).

    Values are JSON-decoded with `_key` and `_partition` added, as `read_topic` does.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=sandbox.bootstrap, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    messages: list[Message] = []
    try:
        # Assigned by hand, so no metadata refresh can reassign (and rewind) the partitions.
        cluster = await consumer._client.fetch_all_metadata()
        numbers = cluster.partitions_for_topic(topic)
        assert numbers, f"topic {topic} does not exist"
        partitions = [TopicPartition(topic, p) for p in sorted(numbers)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            batch = await consumer.getmany(*partitions, timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= ends[tp]:
                        continue
                    value = json.loads(record.value) if record.value else {}
                    value["_key"] = record.key.decode() if record.key else None
                    value["_partition"] = tp.partition
                    messages.append(value)
    finally:
        await consumer.stop()
    return messages


def state_key(sandbox: Sandbox, tenant: str, campaign: str) -> str:
    """The Redis hash of a campaign's detection state."""
    return f"{sandbox.name}:{{c:{tenant}:{campaign}}}:state"


async def load_state(
    redis: Redis, sandbox: Sandbox, tenant: str, campaign: str
) -> tuple[CampaignState | None, bool]:
    """A campaign's state as stored (None before its first event), and whether an outbox waits."""
    blob, outbox = await redis.hmget(state_key(sandbox, tenant, campaign), ["s", "o"])
    assert blob is None or isinstance(blob, bytes)
    state = decode_state(blob, PolicyBook().windows) if blob is not None else None
    return state, outbox is not None


async def wait_settled(
    redis: Redis,
    sandbox: Sandbox,
    tenant: str,
    campaign: str,
    until: Callable[[CampaignState], bool],
    *,
    timeout_s: float = 60,
) -> CampaignState:
    """Poll until the campaign's state satisfies `until` and its decisions are all published.

    The worker clears a campaign's outbox only after Kafka acknowledged its messages, so once
    the outbox is gone every decision of the applied events is on its topic.
    """
    deadline = time.monotonic() + timeout_s
    state, pending = None, False
    while time.monotonic() < deadline:
        state, pending = await load_state(redis, sandbox, tenant, campaign)
        if state is not None and not pending and until(state):
            return state
        await asyncio.sleep(0.1)
    lifetime = state.windows.lifetime if state is not None else None
    raise AssertionError(
        f"{campaign_key(tenant, campaign)} did not settle in {timeout_s} s: lifetime={lifetime}, "
        f"outbox pending={pending}"
    )


def counted(expected: list[int], *, duplicates: int = 0) -> Callable[[CampaignState], bool]:
    """A `wait_settled` condition: these lifetime counts and this many duplicates."""
    return lambda state: state.windows.lifetime == expected and state.duplicates == duplicates


def is_paused(state: CampaignState) -> bool:
    """A `wait_settled` condition: the campaign is paused."""
    return state.status is CampaignStatus.PAUSED


def is_tenant_pause(message: Message) -> bool:
    """True for a tenant-scoped pause command."""
    return bool(message.get("scope") == "tenant")


async def applied(redis: Redis, sandbox: Sandbox, tenant: str, campaigns: tuple[str, ...]) -> int:
    """How many events the campaigns' stored states have counted, in all."""
    total = 0
    for campaign in campaigns:
        state, _ = await load_state(redis, sandbox, tenant, campaign)
        total += sum(state.windows.lifetime) if state is not None else 0
    return total


def parse_time(text: str) -> datetime:
    """A timestamp as the messages carry it."""
    return datetime.fromisoformat(text)


# --- tests -----------------------------------------------------------------------------------


async def test_a_healthy_campaign_with_realistic_noise_is_never_paused(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """3000 sends with 1% hard bounces, rare complaints and unsubscribes publish no pause."""
    rng = random.Random(20240601)  # noqa: S311  # a seeded workload, not cryptography
    tenant, campaign, sends = "acme", "newsletter", 3000
    now = time.time()
    bounced = set(rng.sample(range(sends), 30))  # 1%
    delivered = [i for i in range(sends) if i not in bounced]
    later_kinds = {
        "complaint": set(rng.sample(delivered, 1)),  # 0.03%
        "unsubscribe": set(rng.sample(delivered, 9)),  # 0.3%
        "open": {i for i in delivered if rng.random() < 0.2},
    }
    timed: list[tuple[float, Message]] = []
    for i in range(sends):
        who = Recipient(tenant, campaign, f"u{i}", rng.choice(DOMAINS))
        sent_at = now - 1800 + i * 0.5
        timed.append((sent_at, who.event("sent", sent_at)))
        outcome_at = sent_at + rng.uniform(1, 60)
        if i in bounced:
            timed.append((outcome_at, who.event("bounce", outcome_at, bounce_class="hard")))
            continue
        timed.append((outcome_at, who.event("delivered", outcome_at)))
        later = outcome_at + rng.uniform(10, 200)
        for kind, chosen in later_kinds.items():
            if i in chosen:
                timed.append((later, who.event(kind, later)))
                later += 1
    timed.sort(key=lambda pair: pair[0])
    events = [body for _, body in timed]
    expected = distinct_counts(events)
    assert (expected[Counter.SENT], expected[Counter.HARD_BOUNCE]) == (3000, 30)
    assert (expected[Counter.COMPLAINT], expected[Counter.UNSUBSCRIBE]) == (1, 9)

    await worker.start()
    await produce(producer, sandbox.topic("delivery-events"), events)
    state = await wait_settled(redis, sandbox, tenant, campaign, counted(expected))

    assert state.status is CampaignStatus.HEALTHY
    assert await read_all(sandbox, sandbox.topic("control")) == []


async def test_a_bad_list_is_paused_once_right_after_the_floor_with_its_evidence(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """A 10% hard-bounce list is paused once, at its 200th send, with consistent evidence."""
    tenant, campaign = "acme", "spring"
    topic = sandbox.topic("delivery-events")
    now = time.time()
    await worker.start()
    first = bad_list(tenant, campaign, range(250), now - 60)
    positions = await produce_tracked(producer, topic, first)

    pauses = await read_topic(sandbox, sandbox.topic("control"), until=lambda m: len(m) >= 1)
    assert len(pauses) == 1
    pause = pauses[0]
    assert pause["_key"] == campaign_key(tenant, campaign)
    assert pause["command_id"] == deterministic_id("pause", tenant, campaign, 1)
    assert (pause["command"], pause["scope"], pause["episode"]) == ("pause", "campaign", 1)
    assert (pause["tenant_id"], pause["campaign_id"]) == (tenant, campaign)
    evidence = pause["evidence"]
    assert evidence["metric"] == "hard_bounce"
    assert evidence["window"] in {"1h", "24h", "lifetime"}
    # The floor is 200 sends; recipients 9, 19, ..., 189 have bounced by the 200th send.
    assert (evidence["numerator"], evidence["denominator"]) == (19, 200)
    assert evidence["rate"] == 19 / 200
    assert evidence["wilson_lower_bound"] == wilson_lower_bound(19, 200, Z)
    assert evidence["wilson_lower_bound"] > 0.05
    assert (evidence["threshold"], evidence["confidence"]) == (0.05, 0.95)
    top = evidence["top_domains"]
    assert top
    assert {d["domain"] for d in top} <= set(DOMAINS)
    assert sum(d["count"] for d in top) == evidence["numerator"]
    # Why they bounced, from the category each bounce carried.
    assert evidence["top_bounce_categories"] == [
        {"category": "bad_mailbox", "count": evidence["numerator"]}
    ]
    trigger = pause["trigger"]
    assert trigger["event_id"] == f"{campaign}-u199-sent"
    assert trigger["topic"] == topic
    assert (trigger["partition"], trigger["offset"]) == positions[trigger["event_id"]]
    assert parse_time(pause["decided_at"]) == parse_time(trigger["occurred_at"])

    more = bad_list(tenant, campaign, range(250, 600), now - 30)
    await produce(producer, topic, more)
    state = await wait_settled(
        redis, sandbox, tenant, campaign, counted(distinct_counts(first + more))
    )
    assert (state.status, state.episode) == (CampaignStatus.PAUSED, 1)
    control = await read_all(sandbox, sandbox.topic("control"))
    assert [m["command_id"] for m in control] == [pause["command_id"]]


async def test_a_complaint_spike_hours_after_delivery_pauses_on_the_complaint_rate(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """20 complaints now on 2000 deliveries of 5 h ago pause on the 24h/lifetime complaint rate."""
    tenant, campaign = "acme", "promo"
    now = time.time()
    early = now - 5 * 3600
    recipients = [Recipient(tenant, campaign, f"u{i}", DOMAINS[i % 3]) for i in range(2000)]
    deliveries = [
        body
        for i, who in enumerate(recipients)
        for body in (
            who.event("sent", early + i / 100),
            who.event("delivered", early + 30 + i / 100),
        )
    ]
    complaints = [who.event("complaint", now - 60 + i) for i, who in enumerate(recipients[:20])]
    # The first complaint count that meets the 24h rule's floor (8) and whose Wilson bound over
    # 2000 deliveries clears its 0.15% pause threshold.
    breach = next(k for k in range(8, 21) if wilson_lower_bound(k, 2000, Z) > 0.0015)

    await worker.start()
    topic = sandbox.topic("delivery-events")
    await produce(producer, topic, deliveries)
    positions = await produce_tracked(producer, topic, complaints)

    pauses = await read_topic(sandbox, sandbox.topic("control"), until=lambda m: len(m) >= 1)
    assert len(pauses) == 1
    evidence = pauses[0]["evidence"]
    assert evidence["metric"] == "complaint"
    assert evidence["window"] in {"24h", "lifetime"}
    assert (evidence["numerator"], evidence["denominator"]) == (breach, 2000)
    assert evidence["threshold"] == 0.0015
    assert evidence["wilson_lower_bound"] > 0.0015
    assert evidence["top_domains"]
    trigger = pauses[0]["trigger"]
    assert trigger["event_id"] == complaints[breach - 1]["event_id"]
    assert (trigger["partition"], trigger["offset"]) == positions[trigger["event_id"]]
    state = await wait_settled(
        redis, sandbox, tenant, campaign, counted(distinct_counts(deliveries + complaints))
    )
    assert state.status is CampaignStatus.PAUSED
    assert state.windows.window("1h")[Counter.DELIVERED] == 0


async def test_redeliveries_and_a_killed_worker_leave_every_count_exact(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Redelivered copies and a SIGKILL mid-stream leave counts exact, copies as duplicates."""
    rng = random.Random(7)  # noqa: S311  # a seeded workload, not cryptography
    tenant, campaigns = "acme", ("weekly", "daily")
    now = time.time()
    distinct: dict[str, list[Message]] = {c: [] for c in campaigns}
    for campaign in campaigns:
        for i in range(1500):
            who, at = Recipient(tenant, campaign, f"u{i}"), now - 900 + i / 10
            distinct[campaign].append(who.event("sent", at))
            if i % 50 == 0:
                distinct[campaign].append(who.event("bounce", at + 1, bounce_class="soft"))
            else:
                distinct[campaign].append(who.event("delivered", at + 1))
            if i % 3 == 0:
                distinct[campaign].append(who.event("open", at + 5))
    # Interleave the campaigns, and redeliver about one event in eight up to 400 records later.
    stream: list[Message] = []
    copies: Tally[str] = Tally()
    due: list[tuple[int, Message]] = []
    for body in (b for pair in zip(*distinct.values(), strict=True) for b in pair):
        stream.append(body)
        if rng.random() < 0.125:
            due.append((len(stream) + rng.randint(1, 400), body))
        ready = [copy for at, copy in due if at <= len(stream)]
        due = [(at, copy) for at, copy in due if at > len(stream)]
        stream.extend(ready)
        copies.update(copy["campaign_id"] for copy in ready)
    stream.extend(copy for _, copy in due)
    copies.update(copy["campaign_id"] for _, copy in due)
    assert min(copies.values()) > 100
    half = len(stream) // 2
    topic = sandbox.topic("delivery-events")

    await worker.start()
    producing = asyncio.create_task(produce(producer, topic, stream[:half]))
    # Kill while the worker is still working through the first half (about 3500 events).
    deadline = time.monotonic() + 60
    while await applied(redis, sandbox, tenant, campaigns) < 1500:
        assert time.monotonic() < deadline, "the worker did not apply the first half"
        await asyncio.sleep(0.01)
    assert await worker.stop(signal.SIGKILL) == -signal.SIGKILL
    await producing
    await worker.start()
    await produce(producer, topic, stream[half:])

    for campaign in campaigns:
        expected = distinct_counts(distinct[campaign])
        # Copies change no count but `duplicates`: wait for both, or trailing copies are missed.
        state = await wait_settled(
            redis, sandbox, tenant, campaign, counted(expected, duplicates=copies[campaign])
        )
        assert state.windows.lifetime == expected
        assert state.duplicates == copies[campaign]
        assert state.windows.late_events == 0


async def test_out_of_order_events_count_and_events_older_than_the_longest_window_are_late(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Older events count in the windows covering them; one 25 h behind counts only as late."""
    tenant, campaign = "acme", "digest"
    now = time.time()
    events = [
        Recipient(tenant, campaign, "newest").event("sent", now),
        Recipient(tenant, campaign, "half-hour").event("sent", now - 1800),
        Recipient(tenant, campaign, "half-hour").event("delivered", now - 600),
        Recipient(tenant, campaign, "three-hours").event("sent", now - 3 * 3600),
        Recipient(tenant, campaign, "day-old").event("sent", now - 25 * 3600),
    ]
    await worker.start()
    await produce(producer, sandbox.topic("delivery-events"), events)
    state = await wait_settled(
        redis, sandbox, tenant, campaign, lambda s: s.windows.late_events > 0
    )

    windows = state.windows
    assert windows.watermark_ms == int(now * 1000)
    assert windows.late_events == 1
    assert (windows.lifetime[Counter.SENT], windows.lifetime[Counter.DELIVERED]) == (3, 1)
    assert (windows.window("1h")[Counter.SENT], windows.window("1h")[Counter.DELIVERED]) == (2, 1)
    assert windows.window("24h")[Counter.SENT] == 3
    assert windows.watermark_ms - int((now - 25 * 3600) * 1000) > 24 * HOUR_MS


async def test_three_paused_campaigns_pause_their_tenant_exactly_once(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """Three campaign pauses publish one `tenant:*` pause naming them; a fourth publishes none."""
    tenant = "acme"
    first, fourth = ("jan", "feb", "mar"), "apr"
    now = time.time()
    topic = sandbox.topic("delivery-events")
    await worker.start()
    three = [
        body
        for i, campaign in enumerate(first)
        for body in bad_list(tenant, campaign, range(220), now - 300 + i)
    ]
    await produce(producer, topic, three)
    early = await read_topic(
        sandbox, sandbox.topic("control"), until=lambda ms: any(map(is_tenant_pause, ms))
    )
    assert any(map(is_tenant_pause, early))

    await produce(producer, topic, bad_list(tenant, fourth, range(220), now - 200))
    await wait_settled(redis, sandbox, tenant, fourth, is_paused)
    control = await read_all(sandbox, sandbox.topic("control"))

    campaign_pauses = sorted(m["campaign_id"] for m in control if m["scope"] == "campaign")
    assert campaign_pauses == sorted([*first, fourth])
    tenant_pauses = [m for m in control if is_tenant_pause(m)]
    assert len(tenant_pauses) == 1
    command = tenant_pauses[0]
    assert command["_key"] == f"{tenant}:*"
    assert command["command_id"] == deterministic_id("pause-tenant", tenant, 1)
    assert (command["tenant_id"], command["campaign_id"], command["episode"]) == (tenant, None, 1)
    assert (command["trigger"], command["evidence"]) == (None, None)
    # Each entry names one campaign pause as `<campaign>#<episode>`.
    assert sorted(command["paused_campaigns"]) == sorted(first)


async def test_a_pause_publishes_a_status_changed_health_snapshot(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis
) -> None:
    """The change to paused publishes one `status_changed` snapshot keyed `tenant:campaign`."""
    tenant, campaign = "acme", "summer"
    events = bad_list(tenant, campaign, range(260), time.time() - 60)
    await worker.start()
    await produce(producer, sandbox.topic("delivery-events"), events)
    await wait_settled(redis, sandbox, tenant, campaign, counted(distinct_counts(events)))

    health = await read_all(sandbox, sandbox.topic("health"))
    assert all(m["_key"] == campaign_key(tenant, campaign) for m in health)
    changes = [m for m in health if m["status_changed"]]
    assert len(changes) == 1
    snapshot = changes[0]
    assert (snapshot["tenant_id"], snapshot["campaign_id"]) == (tenant, campaign)
    assert snapshot["status"] == "paused"
    assert (snapshot["reason"]["metric"], snapshot["reason"]["threshold"]) == ("hard_bounce", 0.05)
    # The counts as they stood at the triggering event, the 200th send.
    lifetime = next(w for w in snapshot["windows"] if w["window"] == "lifetime")
    assert (lifetime["counts"]["sent"], lifetime["counts"]["hard_bounce"]) == (200, 19)
    assert snapshot["bounce_categories"] == {"hard": {"bad_mailbox": 19}}
