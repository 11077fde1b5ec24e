"""Shared set-up of detection and resume unit tests: stores, publisher, hand clock, brute force."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from processor.config.operator_keys import parse_operator_keys, signed
from processor.domain.campaign_state import CampaignState
from processor.domain.codec import decode_state, encode_state
from processor.domain.contact_state import ContactState
from processor.domain.policy import PolicyBook
from processor.domain.recipients import FilterRules, exclusion_reason
from processor.errors import PublishError
from processor.ports.contact_store import InMemoryContactStore
from processor.ports.detection_store import CampaignRef, InMemoryStore, OutboxMessage
from processor.ports.records import RawRecord, to_ms
from processor.services.resume import ResumeService
from schemas.audience import AudienceChunk, ConsentState, ContactUpdate
from schemas.events import BounceClass, DeliveryEvent, EventType, Recipient
from schemas.health import CampaignStatus
from schemas.resume import ExclusionReason, ResumeRequest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.services.resume import ContactProgress
    from schemas.topics import TopicRole

BOOK = PolicyBook()
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DECIDED = datetime(2025, 6, 1, 12, 0, 5, tzinfo=UTC)
OPERATOR_KEY_ID = "ops-1"
OPERATOR_KEY = "unit-tests-operator-key-of-t1-0123456789"
TENANT_KEYS = f"""
tenants:
  t1:
    - id: {OPERATOR_KEY_ID}
      secret: {OPERATOR_KEY}
"""
"""The operator keys of every World's resume service: one key of tenant t1."""
WATERMARK = NOW - timedelta(minutes=30)


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


class ListPublisher:
    """Keeps what is published; can be told to fail the next publishes."""

    def __init__(self) -> None:
        self.messages: list[OutboxMessage] = []
        self.failures = 0

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Record the messages, or fail."""
        if self.failures:
            self.failures -= 1
            raise PublishError("broker gone")
        self.messages.extend(messages)

    def on(self, role: TopicRole) -> list[dict[str, Any]]:
        """Published values of a role, decoded, with their key as `_key`."""
        return [
            {**json.loads(m.value), "_key": m.key} for m in self.messages if m.role == role.value
        ]


class World:
    """The stores, the publisher and the service under test."""

    def __init__(
        self,
        *,
        chunk_size: int = 1000,
        rules: FilterRules | None = None,
        contact_progress: ContactProgress | None = None,
    ) -> None:
        self.store = InMemoryStore()
        self.contacts = InMemoryContactStore()
        self.publisher = ListPublisher()
        runs = iter(range(1_000_000))
        self.service = ResumeService(
            self.store,
            self.contacts,
            self.publisher,
            lambda: BOOK,
            rules_for=lambda _tenant: rules or FilterRules(),
            chunk_size=chunk_size,
            wall_clock=lambda: DECIDED,
            run_ids=lambda: f"run{next(runs)}",
            contact_progress=contact_progress,
            contact_wait_s=2.5,
            operator_keys=parse_operator_keys(TENANT_KEYS, environ={}),
            operator_max_age_s=300,
        )

    async def plan(
        self,
        tenant: str,
        campaign: str,
        chunks: list[list[str]],
        *,
        total_chunks: int | None = None,
    ) -> list[Recipient]:
        """Store an audience of contact ids, chunk by chunk; returns it in order."""
        audience = []
        for index, ids in enumerate(chunks):
            recipients = [recipient(contact) for contact in ids]
            audience.extend(recipients)
            chunk = AudienceChunk(
                tenant_id=tenant,
                campaign_id=campaign,
                chunk_index=index,
                total_chunks=total_chunks,
                recipients=recipients,
            )
            await self.contacts.store_audience_chunk(chunk)
        return audience

    def pause(
        self, tenant: str, campaign: str, *, status: CampaignStatus = CampaignStatus.PAUSED
    ) -> None:
        """Give the campaign a detection state with this status (episode 1)."""
        state = CampaignState.fresh(BOOK.windows)
        state.windows.watermark_ms = to_ms(WATERMARK)
        state.status = status
        state.episode = 1
        self.store.campaigns[CampaignRef(tenant, campaign)] = (3, encode_state(state))

    def state(self, tenant: str, campaign: str) -> tuple[int, CampaignState]:
        """The campaign's stored version and state."""
        version, blob = self.store.campaigns[CampaignRef(tenant, campaign)]
        return version, decode_state(blob, BOOK.windows)


def recipient(contact: str) -> Recipient:
    """A recipient whose address derives from its contact id."""
    return Recipient(contact_id=contact, address=f"{contact}@example.com")


def request(campaign: str = "c1", **fields: Any) -> ResumeRequest:
    """A resume request of tenant t1 at NOW."""
    values: dict[str, Any] = {
        "request_id": "r1",
        "tenant_id": "t1",
        "campaign_id": campaign,
        "requested_by": "ops@example.com",
        "requested_at": NOW,
    }
    return ResumeRequest(**{**values, **fields})


def signed_request(campaign: str = "c1", **fields: Any) -> ResumeRequest:
    """`request(...)` signed with t1's operator key."""
    return signed(request(campaign, **fields), OPERATOR_KEY_ID, OPERATOR_KEY)


def delivery(contact: str, kind: EventType, at: datetime, **fields: Any) -> DeliveryEvent:
    """A delivery event of t1 (campaign c-old unless given)."""
    values: dict[str, Any] = {
        "event_id": f"{contact}-{kind}-{at.timestamp()}",
        "tenant_id": "t1",
        "campaign_id": "c-old",
        "recipient": recipient(contact),
        "type": kind,
        "occurred_at": at,
    }
    return DeliveryEvent(**{**values, **fields})


def brute_force(
    world: World,
    audience: list[Recipient],
    campaign: str,
    rules: FilterRules,
    chunk_size: int,
) -> dict[str, Any]:
    """The expected set, straight from the rules: first occurrences, not attempted, no reason."""
    attempted = world.contacts.attempted_sets.get(("t1", campaign), set())
    seen: set[str] = set()
    kept: list[str] = []
    excluded: Counter[ExclusionReason] = Counter()
    already = 0
    for planned in audience:
        contact = planned.contact_id
        if world.contacts.contacts.get(("t1", contact), ContactState.empty()).deleted:
            continue  # erased from the planned audience (these tests plan before deleting)
        if contact in seen:
            continue
        seen.add(contact)
        if contact in attempted:
            already += 1
            continue
        state = world.contacts.contacts.get(("t1", contact), ContactState.empty())
        reason = exclusion_reason(state, rules, NOW)
        if reason is None:
            kept.append(contact)
        else:
            excluded[reason] += 1
    return {
        "chunks": [kept[i : i + chunk_size] for i in range(0, len(kept), chunk_size)],
        "already_attempted": already,
        "excluded": {reason.value: n for reason, n in excluded.items()},
        "checksum": hashlib.sha256("".join(f"{c}\n" for c in kept).encode()).hexdigest(),
    }


async def varied_contacts(world: World, contacts: list[str], seed: int) -> None:
    """Give the contacts a random mix of histories (events and updates) and some attempts."""
    rng = random.Random(seed)  # noqa: S311  # a seeded workload, not cryptography
    events: list[DeliveryEvent] = []
    updates: list[ContactUpdate] = []
    for contact in contacts:
        roll = rng.random()
        at = NOW - timedelta(days=rng.choice([1, 30, 200]))
        if roll < 0.1:
            events.append(delivery(contact, EventType.SENT, at, campaign_id="c1"))
        elif roll < 0.2:
            bounce = rng.choice(list(BounceClass))
            events.append(delivery(contact, EventType.BOUNCE, at, bounce_class=bounce))
        elif roll < 0.3:
            kind = rng.choice([EventType.COMPLAINT, EventType.UNSUBSCRIBE, EventType.OPEN])
            events.append(delivery(contact, kind, at))
        elif roll < 0.45:
            engaged = rng.random() < 0.5
            if engaged:
                events.append(delivery(contact, EventType.CLICK, at - timedelta(days=60)))
            sends = range(rng.choice([3, 11, 16, 20]))
            events.extend(delivery(contact, EventType.SENT, at + timedelta(hours=n)) for n in sends)
        elif roll < 0.55:
            consent = rng.choice([*ConsentState, None])
            unsubscribed = rng.choice([True, False, None])
            updates.append(
                ContactUpdate(
                    tenant_id="t1",
                    contact_id=contact,
                    consent=consent,
                    unsubscribed=unsubscribed,
                    deleted=rng.random() < 0.2,
                    occurred_at=at,
                )
            )
        elif roll < 0.65:
            events.append(delivery(contact, EventType.SENT, at))
    await world.contacts.apply_events(events)
    await world.contacts.apply_updates(updates)


def raw(topic: str, value: bytes | None, offset: int = 0, key: bytes = b"k") -> RawRecord:
    """A Kafka record as the agents read it."""
    return RawRecord(topic, 0, offset, key, value, None)
