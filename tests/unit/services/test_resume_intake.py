"""Unit tests of the resume agents' inputs: detection's contact feed, intakes, bad records."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from processor.config.settings import Settings
from processor.domain.contact_state import ContactState, stored_instant
from processor.domain.recipients import FilterRules
from processor.services.detection import DetectionService
from processor.services.resume_intake import AudienceIntake, ContactUpdateIntake
from schemas.audience import AudienceChunk, ConsentState, ContactUpdate
from schemas.events import EventType
from schemas.health import CampaignStatus
from schemas.resume import ExclusionReason, ResumeRequest
from schemas.topics import TopicRole
from tests.unit.services.resume_world import (
    BOOK,
    DECIDED,
    NOW,
    World,
    brute_force,
    delivery,
    raw,
    recipient,
    request,
)


async def test_detection_feeds_the_attempted_set_and_contact_state() -> None:
    """Delivery events applied by detection pause the campaign and mark attempted contacts."""
    world = World()
    audience = await world.plan("t1", "c1", [[f"u{n}" for n in range(300)]])
    detection = DetectionService(
        world.store, world.publisher, lambda: BOOK, contacts=world.contacts
    )
    events = [delivery(f"u{n}", EventType.SENT, NOW, campaign_id="c1") for n in range(220)]
    events += [
        delivery(f"u{n}", EventType.BOUNCE, NOW, campaign_id="c1", bounce_class="hard")
        for n in range(0, 220, 10)
    ]
    events.append(delivery("u250", EventType.UNSUBSCRIBE, NOW))
    records = [
        raw("delivery-events", e.model_dump_json().encode(), offset)
        for offset, e in enumerate(events)
    ]
    await detection.apply(records)
    await detection.landed()
    assert world.state("t1", "c1")[1].status is CampaignStatus.PAUSED
    world.publisher.messages.clear()

    outcome = await world.service.handle(request())

    expected = brute_force(world, audience, "c1", FilterRules(), 1000)
    assert (outcome.already_attempted, outcome.total_recipients) == (220, 79)
    assert outcome.excluded == {ExclusionReason.UNSUBSCRIBED: 1}
    manifest = world.publisher.on(TopicRole.RECIPIENT_SETS)[-1]
    assert manifest["checksum"] == expected["checksum"]


async def test_bad_requests_are_dead_lettered_and_the_others_answered() -> None:
    """Invalid JSON, an invalid request and a bug each dead-letter one record only."""
    world = World()
    await world.plan("t1", "c1", [["a"]])
    world.pause("t1", "c1")

    async def broken(_request: ResumeRequest) -> None:
        raise ZeroDivisionError

    good = request().model_dump_json().encode()
    await world.service.apply([raw("rq", b"{nope", 0), raw("rq", b'{"tenant_id": "t1"}', 1)])
    await world.service.apply([raw("rq", good, 2)])
    world.service.handle = broken  # type: ignore[method-assign, assignment]  # a bug seam
    await world.service.apply([raw("rq", good, 3)])
    letters = world.publisher.on(TopicRole.DEAD_LETTER)
    kinds = [letter["error_type"] for letter in letters]
    assert kinds == ["invalid_json", "invalid_request", "processing_error"]
    assert "request_id" in letters[1]["error"]
    assert len(world.publisher.on(TopicRole.RESUME_OUTCOMES)) == 1


async def test_the_audience_intake_stores_chunks_and_dead_letters_bad_ones() -> None:
    """Good chunks are stored, another tenant's `c1` as its own campaign; bad ones dead-lettered."""
    world = World()
    intake = AudienceIntake(world.contacts, world.publisher, wall_clock=lambda: DECIDED)

    def chunk(tenant: str, index: int, ids: list[str]) -> bytes:
        body = AudienceChunk(
            tenant_id=tenant,
            campaign_id="c1",
            chunk_index=index,
            recipients=[recipient(c) for c in ids],
        )
        return body.model_dump_json().encode()

    await intake.apply(
        [
            raw("aud", chunk("t1", 1, ["b"]), 0),
            raw("aud", chunk("t1", 0, ["a"]), 1),
            raw("aud", chunk("t2", 2, ["x"]), 2),
            raw("aud", b'{"tenant_id": "t1", "campaign_id": "c1", "chunk_index": -1}', 3),
            raw("aud", None, 4),
        ]
    )
    stored = [c async for c in world.contacts.audience_chunks("t1", "c1")]
    assert [[r.contact_id for r in c] for c in stored] == [["a"], ["b"]]
    other = [c async for c in world.contacts.audience_chunks("t2", "c1")]
    assert [[r.contact_id for r in c] for c in other] == [["x"]]
    letters = world.publisher.on(TopicRole.DEAD_LETTER)
    kinds = [letter["error_type"] for letter in letters]
    assert kinds == ["invalid_audience_chunk", "empty_value"]
    assert [letter["source_offset"] for letter in letters] == [3, 4]


async def test_the_contact_update_intake_merges_in_order_and_skips_tombstones() -> None:
    """Updates merge in order, a tombstone is ignored and an invalid update is dead-lettered."""
    world = World()
    intake = ContactUpdateIntake(world.contacts, world.publisher, wall_clock=lambda: DECIDED)
    later = NOW + timedelta(seconds=1)

    def update(**fields: Any) -> bytes:
        fields.setdefault("occurred_at", NOW)
        body = ContactUpdate(tenant_id="t1", contact_id="a", **fields)
        return body.model_dump_json().encode()

    await intake.apply(
        [
            raw("cu", update(unsubscribed=True), 0),
            raw("cu", None, 1),
            raw("cu", b'{"tenant_id": "t1"}', 2),
            raw("cu", update(unsubscribed=False, consent="revoked", occurred_at=later), 3),
        ]
    )
    (state,) = await world.contacts.states("t1", ["a"])
    stated = stored_instant(later)
    assert state == ContactState(
        consent=ConsentState.REVOKED, unsubscribed=False, unsubscribed_stated_at=stated
    )
    kinds = [letter["error_type"] for letter in world.publisher.on(TopicRole.DEAD_LETTER)]
    assert kinds == ["invalid_contact_update"]


def test_resume_rules_layer_defaults_then_all_tenants_then_the_tenant() -> None:
    """`resume_rules` "*" overrides the defaults and a tenant's entry overrides "*"."""
    settings = Settings.model_validate(
        {
            "resume_rules": {
                "*": {"stale_after": "P90D"},
                "acme": {"require_explicit_consent": True, "unengaged_never_engaged_sends": 3},
            }
        }
    )
    assert settings.filter_rules("other") == FilterRules(stale_after=timedelta(days=90))
    assert settings.filter_rules("acme") == FilterRules(
        require_explicit_consent=True,
        stale_after=timedelta(days=90),
        unengaged_never_engaged_sends=3,
    )
    with pytest.raises(ValueError, match="stale_after"):
        Settings.model_validate({"resume_rules": {"acme": {"stale_after": 0}}})
