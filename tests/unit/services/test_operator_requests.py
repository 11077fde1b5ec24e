"""Signed operator requests in the resume service: refusals, locks and unlocks."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from processor.ports.detection_store import CampaignRef
from schemas.resume import OperatorAction, RejectionReason
from schemas.topics import TopicRole
from tests.unit.services.resume_world import NOW, World, request, signed_request

if TYPE_CHECKING:
    import pytest

REF = CampaignRef("t1", "c1")
LOCK: dict[str, Any] = {"action": OperatorAction.LOCK, "schema_version": 2}
UNLOCK: dict[str, Any] = {"action": OperatorAction.UNLOCK, "schema_version": 2}


async def test_an_unsigned_lock_or_unlock_changes_nothing_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Without a signature a lock sets no lock, an unlock lifts none; both are logged refusals."""
    world = World()
    await world.store.set_campaign_lock(REF, '{"by": "jane"}')
    with caplog.at_level(logging.WARNING):
        unlocked = await world.service.handle(request(request_id="u1", **UNLOCK))
        locked = await world.service.handle(request("c2", request_id="l1", **LOCK))
    assert [unlocked.rejection, locked.rejection] == [RejectionReason.UNAUTHORIZED] * 2
    assert [unlocked.action, locked.action] == [OperatorAction.UNLOCK, OperatorAction.LOCK]
    assert await world.store.campaign_lock(REF) == '{"by": "jane"}'
    assert await world.store.campaign_lock(CampaignRef("t1", "c2")) is None
    refusals = [r for r in caplog.records if r.getMessage().startswith("operator request refused")]
    assert [(r.request_id, r.why) for r in refusals] == [  # type: ignore[attr-defined]  # logging extras
        ("u1", "the request is not signed with an operator key"),
        ("l1", "the request is not signed with an operator key"),
    ]


async def test_a_signed_lock_holds_the_pause_until_a_signed_unlock() -> None:
    """The lock names who locked it and its key; a plain resume is refused until the unlock."""
    world = World()
    await world.plan("t1", "c1", [["a", "b"]])
    world.pause("t1", "c1")
    locked = await world.service.handle(
        signed_request(request_id="l1", requested_by="jane", reason="legal hold", **LOCK)
    )
    assert locked.accepted
    assert locked.detail == "locked t1:c1 (by jane)"
    lock = json.loads(await world.store.campaign_lock(REF) or "{}")
    assert (lock["by"], lock["reason"], lock["key_id"]) == ("jane", "legal hold", "ops-1")
    refused = await world.service.handle(request(request_id="r1"))
    assert refused.rejection is RejectionReason.PRIVILEGED_PAUSE
    unlocked = await world.service.handle(signed_request(request_id="u1", **UNLOCK))
    assert unlocked.accepted
    assert await world.store.campaign_lock(REF) is None
    assert (await world.service.handle(request(request_id="r2"))).accepted
    outcomes = world.publisher.on(TopicRole.RESUME_OUTCOMES)
    assert [o["action"] for o in outcomes] == ["lock", "resume", "unlock", "resume"]
    assert len(world.publisher.on(TopicRole.CONTROL)) == 1  # only the resume commands anything


async def test_a_replayed_lock_is_answered_again_without_locking_again() -> None:
    """The same signed request id is answered from its record: a replay re-locks nothing."""
    world = World()
    world.pause("t1", "c1")
    lock = signed_request(request_id="l1", **LOCK)
    await world.service.handle(lock)
    await world.service.handle(signed_request(request_id="u1", **UNLOCK))
    again = await world.service.handle(lock)
    assert again.accepted
    assert await world.store.campaign_lock(REF) is None


async def test_a_refused_request_is_not_saved_so_it_cannot_pre_empt_the_operators() -> None:
    """A forged request with the operator's future request id does not decide that id."""
    world = World()
    await world.plan("t1", "c1", [["a"]])
    world.pause("t1", "c1")
    world.store.paused_tenants.add("t1")
    forged = await world.service.handle(request(request_id="op-1", privileged=True))
    genuine = await world.service.handle(signed_request(request_id="op-1", privileged=True))
    assert forged.rejection is RejectionReason.UNAUTHORIZED
    assert genuine.accepted


async def test_locking_a_campaign_without_state_is_refused_and_an_unlock_says_none() -> None:
    """A typo is not silently locked; unlocking a campaign without a lock says so."""
    world = World()
    typo = await world.service.handle(signed_request("c-typo", request_id="l1", **LOCK))
    unlock = await world.service.handle(signed_request(request_id="u1", **UNLOCK))
    assert typo.rejection is RejectionReason.UNKNOWN_CAMPAIGN
    assert "nothing locked" in typo.detail
    assert await world.store.campaign_lock(CampaignRef("t1", "c-typo")) is None
    assert (unlock.accepted, unlock.detail) == (True, "t1:c1 had no lock: nothing to do")


async def test_a_stale_signed_request_is_refused() -> None:
    """A signature made longer ago than the freshness window (300 s here) authorizes nothing."""
    world = World()
    stale = signed_request(requested_at=NOW - timedelta(seconds=400), **LOCK)
    outcome = await world.service.handle(stale)
    assert outcome.rejection is RejectionReason.UNAUTHORIZED
    assert "freshness window" in outcome.detail
    assert await world.store.campaign_lock(REF) is None
