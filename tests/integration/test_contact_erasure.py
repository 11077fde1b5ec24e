"""The right to erasure on real Redis: a `deleted` contact update erases the contact.

What is left is read straight from Redis's keys: the shard field holds only the deleted mark,
no attempted set or planned audience of the tenant names the contact, and the same contact id
of another tenant, and the tenant's other contacts, are untouched.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from processor.adapters.keys import Keys
from processor.adapters.redis_contact_reads import unpack_audience
from processor.adapters.redis_contacts import RedisContactStore
from processor.domain.contact_codec import decode_contact
from processor.domain.contact_state import ERASED
from processor.ports.contact_store import contact_digest
from schemas.audience import AudienceChunk, ConsentState, ContactUpdate
from schemas.events import DeliveryEvent, EventType, Recipient

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SHARDS = 8


def sent(tenant: str, campaign: str, contact: str, at: datetime = T0) -> DeliveryEvent:
    """A send of the campaign to the contact."""
    return DeliveryEvent(
        event_id=f"{tenant}-{campaign}-{contact}-{at.isoformat()}",
        tenant_id=tenant,
        campaign_id=campaign,
        recipient=Recipient(contact_id=contact, address=f"{contact}@example.com"),
        type=EventType.SENT,
        occurred_at=at,
    )


def plan(tenant: str, campaign: str, index: int, contacts: list[str]) -> AudienceChunk:
    """An audience chunk of the campaign."""
    recipients = [Recipient(contact_id=c, address=f"{c}@example.com") for c in contacts]
    return AudienceChunk(
        tenant_id=tenant, campaign_id=campaign, chunk_index=index, recipients=recipients
    )


async def field(redis: Redis, keys: Keys, tenant: str, contact: str) -> bytes | None:
    """The raw value of the contact's field in its shard."""
    value = await redis.hget(keys.contacts(tenant, contact, SHARDS), contact)
    return value if isinstance(value, bytes) else None


async def planned(redis: Redis, keys: Keys, tenant: str, campaign: str) -> list[list[str]]:
    """The contact ids of each stored chunk of the campaign's audience, by index."""
    chunks = await redis.hgetall(keys.campaign_audience(tenant, campaign))
    by_index = {int(f): v for f, v in chunks.items() if isinstance(v, bytes) and f.isdigit()}
    return [[r.contact_id for r in unpack_audience(by_index[i])] for i in sorted(by_index)]


async def test_a_deleted_contact_is_erased_from_every_key_of_its_tenant(
    sandbox: Sandbox, redis: Redis
) -> None:
    """State, attempted sets and audiences of every campaign forget it; nothing else changes."""
    keys = Keys(sandbox.name)
    store = RedisContactStore(redis, keys, campaign_ttl_ms=600_000, shards=SHARDS)
    for campaign in ("welcome", "promo"):
        await store.store_audience_chunk(plan("acme", campaign, 0, ["gone", "kept"]))
        await store.store_audience_chunk(plan("acme", campaign, 1, ["gone"]))
    await store.store_audience_chunk(plan("globex", "welcome", 0, ["gone"]))
    await store.apply_events(
        [
            *(
                sent("acme", c, contact)
                for c in ("welcome", "promo")
                for contact in ("gone", "kept")
            ),
            sent("globex", "welcome", "gone"),
        ]
    )
    await store.apply_updates(
        [ContactUpdate(tenant_id="acme", contact_id="gone", consent=ConsentState.GRANTED,
                       occurred_at=T0)]
    )  # fmt: skip
    # A resume of the same campaign id keeps its own keys, never matched as an attempted set.
    await store.save_resume_record("acme", "welcome", "q:attempted", "{}")
    kept_before = await field(redis, keys, "acme", "kept")
    assert await field(redis, keys, "acme", "gone") is not None

    deletion = ContactUpdate(
        tenant_id="acme", contact_id="gone", deleted=True, occurred_at=T0 + timedelta(days=1)
    )
    await store.apply_updates([deletion])

    erased = await field(redis, keys, "acme", "gone")
    assert erased is not None
    assert decode_contact(erased) == ERASED  # the deleted mark, no sends, consent or times
    assert len(erased) == 14  # version, flags and three zero times: no recent sends
    gone, kept = contact_digest("gone"), contact_digest("kept")
    for campaign in ("welcome", "promo"):
        attempted = keys.campaign_attempted("acme", campaign)
        assert await redis.smismember(attempted, [gone, kept]) == [0, 1]
        assert await planned(redis, keys, "acme", campaign) == [["kept"], []]
    assert await store.audience_progress("acme", "welcome") == (2, None)
    assert await field(redis, keys, "acme", "kept") == kept_before
    assert await store.states("acme", ["gone"]) == [ERASED]
    other = keys.campaign_attempted("globex", "welcome")
    assert await redis.smismember(other, [gone]) == [1]
    assert await planned(redis, keys, "globex", "welcome") == [["gone"]]
    assert (await store.states("globex", ["gone"]))[0].last_marketing_send_at is not None
    assert await store.resume_record("acme", "welcome", "q:attempted") == "{}"

    # Late events of the erased contact keep nothing; the deletion read again changes nothing.
    await store.apply_events([sent("acme", "welcome", "gone", T0 + timedelta(days=2))])
    await store.apply_updates([deletion])
    assert await field(redis, keys, "acme", "gone") == erased
