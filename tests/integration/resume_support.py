"""Shared helpers of the resume end-to-end tests: histories, brute force, polling, the CLI.

A `History` records what a test produces and replays it through the pure transitions, so every
expected recipient set is computed independently of the worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.keys import Keys
from processor.domain.contact_state import (
    ContactState,
    apply_contact_update,
    apply_delivery_event,
)
from processor.domain.recipients import FilterRules, exclusion_reason
from schemas.audience import ContactUpdate
from schemas.events import DeliveryEvent
from tests.integration.conftest import event, read_topic, run_cli

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from processor.adapters.redis_contacts import RedisContactStore
    from tests.integration.conftest import Sandbox

DAY_S = 86_400


class History:
    """What a test produces for one tenant, replayed through the pure transitions."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.events: list[dict[str, Any]] = []
        self.updates: list[ContactUpdate] = []
        self.ops: list[DeliveryEvent | ContactUpdate] = []

    def event(self, campaign: str, kind: str, contact: str, at: float, **extra: str) -> None:
        """A delivery event of the tenant."""
        body = event(
            event_id=f"{campaign}-{contact}-{kind}-{len(self.events)}",
            tenant=self.tenant,
            campaign=campaign,
            kind=kind,
            at=at,
            contact=contact,
            **extra,
        )
        self.events.append(body)
        self.ops.append(DeliveryEvent.model_validate(body))

    def pausing(self, campaign: str, contacts: list[str], at: float) -> None:
        """Sends to all, hard bounces from every tenth: enough to pause the campaign."""
        for contact in contacts:
            self.event(campaign, "sent", contact, at)
        for contact in contacts[::10]:
            self.event(campaign, "bounce", contact, at + 1, bounce_class="hard")

    def update(self, contact: str, **fields: Any) -> ContactUpdate:
        """A contact update of the tenant (occurred now unless stated)."""
        fields.setdefault("occurred_at", datetime.now(UTC))
        body = ContactUpdate(tenant_id=self.tenant, contact_id=contact, **fields)
        self.updates.append(body)
        self.ops.append(body)
        return body

    def states(self) -> dict[str, ContactState]:
        """Each contact's state after everything, in production order."""
        states: dict[str, ContactState] = {}
        for op in self.ops:
            if isinstance(op, ContactUpdate):
                contact = op.contact_id
                states[contact] = apply_contact_update(states.get(contact, EMPTY), op)
            else:
                contact = op.recipient.contact_id
                before = states.get(contact, EMPTY)
                states[contact] = apply_delivery_event(
                    before, op.type, op.bounce_class, op.occurred_at
                )
        return states

    def attempted(self, campaign: str) -> set[str]:
        """Contacts that any event of the campaign names."""
        return {e["recipient"]["contact_id"] for e in self.events if e["campaign_id"] == campaign}


EMPTY = ContactState.empty()


def audience(tenant: str, campaign: str, ids: list[str], size: int) -> list[dict[str, Any]]:
    """Audience chunk messages of `size` recipients."""
    return [
        {
            "tenant_id": tenant,
            "campaign_id": campaign,
            "chunk_index": index,
            "recipients": [
                {"contact_id": c, "address": f"{c}@example.com"} for c in ids[start : start + size]
            ],
        }
        for index, start in enumerate(range(0, len(ids), size))
    ]


def brute_force(
    history: History, planned: list[str], campaign: str, now: datetime
) -> dict[str, Any]:
    """The expected set: first occurrences, not attempted, no exclusion reason, in order.

    A deleted contact is not there at all: its deletion erased it from the planned audience.
    """
    states, attempted = history.states(), history.attempted(campaign)
    kept: list[str] = []
    excluded: Counter[str] = Counter()
    seen: set[str] = set()
    for contact in planned:
        if states.get(contact, EMPTY).deleted:
            continue  # erased from the planned audience (these tests plan before deleting)
        if contact in seen or contact in attempted:
            seen.add(contact)
            continue
        seen.add(contact)
        reason = exclusion_reason(states.get(contact, EMPTY), FilterRules(), now)
        if reason is None:
            kept.append(contact)
        else:
            excluded[reason.value] += 1
    return {
        "kept": kept,
        "already_attempted": len(seen & attempted),
        "excluded": dict(excluded),
        "checksum": hashlib.sha256("".join(f"{c}\n" for c in kept).encode()).hexdigest(),
    }


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    """Poll `check` until it holds, or fail at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


async def settle(store: RedisContactStore, history: History, contacts: list[str]) -> None:
    """Wait until the worker's contact states equal the pure transitions of the history."""
    expected = history.states()

    async def merged() -> bool:
        return await store.states(history.tenant, contacts) == [
            expected.get(c, EMPTY) for c in contacts
        ]

    await until(merged, "the contact states to merge")


async def wait_for_audience(
    redis: Redis, sandbox: Sandbox, tenant: str, campaign: str, n: int
) -> None:
    """Wait until the worker stored `n` audience chunks of the campaign."""
    key = Keys(sandbox.name).campaign_audience(tenant, campaign)

    async def stored() -> bool:
        return int(await redis.hlen(key)) == n

    await until(stored, f"{n} audience chunks of {campaign}")


async def wait_for_pauses(sandbox: Sandbox, keys: set[str]) -> None:
    """Wait until a pause command with each of these keys is on the control topic."""

    def paused(messages: list[dict[str, Any]]) -> bool:
        return keys <= {m["_key"] for m in messages if m["command"] == "pause"}

    assert paused(await read_topic(sandbox, sandbox.topic("control"), until=paused))


async def produce_updates(
    producer: AIOKafkaProducer, sandbox: Sandbox, updates: list[ContactUpdate]
) -> None:
    """Produce contact updates keyed `tenant:contact`."""
    topic = sandbox.topic("contact-updates")
    for update in updates:
        await producer.send_and_wait(
            topic, update.model_dump_json().encode(), key=update.key.encode()
        )


async def read_set(sandbox: Sandbox, clone: str, *, manifests: int = 1) -> list[dict[str, Any]]:
    """The recipient-set messages of a clone, once `manifests` manifests are in."""

    def complete(messages: list[dict[str, Any]]) -> bool:
        kinds = [m["kind"] for m in messages if m["clone_campaign_id"] == clone]
        return kinds.count("manifest") >= manifests

    messages = await read_topic(sandbox, sandbox.topic("recipient-sets"), until=complete)
    return [m for m in messages if m["clone_campaign_id"] == clone]


def resume_cli(sandbox: Sandbox, tenant: str, campaign: str, *extra: str) -> tuple[int, Any]:
    """`sendguard resume ... --json`: exit code and decoded outcome (or stderr)."""
    result = run_cli(
        sandbox, "resume", "--tenant", tenant, "--campaign", campaign, "--by", "ops", "--json",
        *extra, timeout_s=90,
    )  # fmt: skip
    body = json.loads(result.stdout) if result.stdout.strip() else result.stderr
    return result.returncode, body


def check_set(messages: list[dict[str, Any]], expected: dict[str, Any], chunk_size: int) -> None:
    """Chunks in order then one manifest, equal to the brute-force set."""
    *chunks, manifest = messages
    kept = expected["kept"]
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert [r["contact_id"] for c in chunks for r in c["recipients"]] == kept
    assert [len(c["recipients"]) for c in chunks[:-1]] == [chunk_size] * (len(chunks) - 1)
    assert manifest["kind"] == "manifest"
    assert manifest["total_recipients"] == len(kept)
    assert manifest["chunk_count"] == len(chunks)
    assert manifest["checksum"] == expected["checksum"]
    assert manifest["excluded"] == expected["excluded"]
    assert manifest["already_attempted"] == expected["already_attempted"]
