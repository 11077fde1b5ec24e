"""Detection keeps each bounce's category, whichever decoder read the record."""

from __future__ import annotations

import json

import pytest

from processor.domain.codec import decode_state
from processor.ports.detection_store import CampaignAsk, CampaignRef, InMemoryStore
from processor.services.detection import DetectionService
from processor.services.event_input import LeanEvent, parse_batch
from schemas.events import BounceCategory, BounceClass, EventType
from tests.unit.services.resume_world import BOOK, NOW, ListPublisher, delivery, raw

REF = CampaignRef("t1", "c1")


def _bounces(*, contract_only: bool) -> list[bytes]:
    """Two bad_mailbox hard bounces, a spam block and a bounce without a category.

    With `contract_only`, each value carries a `+00:00` offset, which the fast decoder leaves
    to the contract.
    """
    shapes = [
        ("u1", BounceClass.HARD, BounceCategory.BAD_MAILBOX),
        ("u2", BounceClass.HARD, BounceCategory.BAD_MAILBOX),
        ("u3", BounceClass.BLOCK, BounceCategory.SPAM_BLOCK),
        ("u4", BounceClass.HARD, None),
    ]
    values = []
    for contact, bounce_class, category in shapes:
        event = delivery(
            contact,
            EventType.BOUNCE,
            NOW,
            campaign_id="c1",
            bounce_class=bounce_class,
            bounce_category=category,
        )
        body = json.loads(event.model_dump_json())
        if contract_only:
            body["occurred_at"] = body["occurred_at"].replace("Z", "+00:00")
        values.append(json.dumps(body).encode())
    return values


@pytest.mark.parametrize("contract_only", [False, True], ids=["fast-decoder", "contract"])
async def test_bounce_categories_reach_the_stored_state_from_either_decoder(
    *, contract_only: bool
) -> None:
    """The state counts categorized bounces by class and category; a bare bounce is not."""
    records = [
        raw("delivery-events", v, i) for i, v in enumerate(_bounces(contract_only=contract_only))
    ]
    decoded = [parsed[0] for parsed in parse_batch(records, -1) if isinstance(parsed, tuple)]
    assert len(decoded) == len(records)
    assert all(isinstance(e, LeanEvent) is not contract_only for e in decoded)
    store = InMemoryStore()
    service = DetectionService(store, ListPublisher(), lambda: BOOK, publish_periodic_health=False)
    await service.apply(records)
    (loaded,) = await store.load_campaigns([CampaignAsk(REF)])
    assert loaded.blob is not None
    state = decode_state(loaded.blob, BOOK.windows)
    assert state.bounce_categories == {
        BounceClass.HARD: {BounceCategory.BAD_MAILBOX: 2},
        BounceClass.BLOCK: {BounceCategory.SPAM_BLOCK: 1},
    }
