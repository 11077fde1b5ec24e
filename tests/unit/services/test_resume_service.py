"""Unit tests of the resume use case on the embedded stores, with a list publisher."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from processor.domain.codec import encode_state
from processor.domain.recipients import FilterRules
from processor.errors import PublishError
from processor.ports.detection_store import CampaignRef
from processor.services.resume_outbox import clone_campaign_id
from schemas.audience import ConsentState, ContactUpdate
from schemas.events import EventType
from schemas.health import CampaignStatus
from schemas.resume import ExclusionReason, RejectionReason
from schemas.topics import TopicRole
from tests.unit.services.resume_world import (
    DECIDED,
    NOW,
    WATERMARK,
    World,
    brute_force,
    delivery,
    request,
    signed_request,
    varied_contacts,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.ports.detection_store import OutboxMessage


# --- rejections --------------------------------------------------------------------------------


async def test_an_unknown_campaign_is_rejected() -> None:
    """A campaign with no planned audience is rejected as unknown, and nothing else happens."""
    world = World()
    world.pause("t1", "c1")
    outcome = await world.service.handle(request())
    assert outcome.rejection is RejectionReason.UNKNOWN_CAMPAIGN
    assert not outcome.accepted
    assert [m.role for m in world.publisher.messages] == [TopicRole.RESUME_OUTCOMES.value]
    assert world.publisher.on(TopicRole.RESUME_OUTCOMES)[0]["_key"] == "t1:c1"


async def test_another_tenants_campaign_of_the_same_id_is_not_this_tenants() -> None:
    """A campaign id another tenant planned and paused is, for this tenant, unknown."""
    world = World()
    await world.plan("t2", "c1", [["a"]])
    world.pause("t2", "c1")
    outcome = await world.service.handle(request())
    assert outcome.rejection is RejectionReason.UNKNOWN_CAMPAIGN
    assert "t2" not in outcome.detail


@pytest.mark.parametrize("status", [None, CampaignStatus.HEALTHY, CampaignStatus.RESUMED])
async def test_a_campaign_that_is_not_paused_is_rejected(status: CampaignStatus | None) -> None:
    """Unseen, healthy or already resumed campaigns are rejected as not paused."""
    world = World()
    await world.plan("t1", "c1", [["a"]])
    if status is not None:
        world.pause("t1", "c1", status=status)
    outcome = await world.service.handle(request())
    assert outcome.rejection is RejectionReason.NOT_PAUSED


async def test_a_tenant_wide_pause_is_lifted_only_by_a_signed_privileged_request() -> None:
    """While the tenant is paused a plain or self-declared privileged request is refused."""
    world = World()
    await world.plan("t1", "c1", [["a", "b"]])
    world.pause("t1", "c1")
    world.store.paused_tenants.add("t1")
    refused = await world.service.handle(request())
    declared = await world.service.handle(request(request_id="r2", privileged=True))
    accepted = await world.service.handle(signed_request(request_id="r3", privileged=True))
    assert refused.rejection is RejectionReason.PRIVILEGED_PAUSE
    assert declared.rejection is RejectionReason.UNAUTHORIZED
    assert accepted.accepted
    assert accepted.total_recipients == 2


async def test_an_operator_locked_pause_needs_a_privileged_request() -> None:
    """A pause an operator locked (`sendguard lock`) is lifted only by a privileged request."""
    world = World()
    await world.plan("t1", "c1", [["a", "b"]])
    world.pause("t1", "c1")
    lock = json.dumps({"by": "ops-jane", "reason": "legal hold"})
    await world.store.set_campaign_lock(CampaignRef("t1", "c1"), lock)
    refused = await world.service.handle(request())
    accepted = await world.service.handle(signed_request(request_id="r2", privileged=True))
    assert refused.rejection is RejectionReason.PRIVILEGED_PAUSE
    assert "ops-jane" in refused.detail
    assert accepted.accepted


async def test_no_engaged_recipient_left_is_rejected_with_the_counts() -> None:
    """All attempted or excluded: rejected with the counts per reason and no set published."""
    world = World()
    await world.plan("t1", "c1", [["a", "b", "c"]])
    world.pause("t1", "c1")
    await world.contacts.mark_attempted("t1", "c1", ["a", "b"])
    await world.contacts.apply_events([delivery("c", EventType.COMPLAINT, NOW)])
    outcome = await world.service.handle(request())
    assert outcome.rejection is RejectionReason.NO_RECIPIENTS_REMAIN
    assert (outcome.already_attempted, outcome.excluded) == (2, {ExclusionReason.COMPLAINED: 1})
    assert outcome.clone_campaign_id is None
    assert world.publisher.on(TopicRole.RECIPIENT_SETS) == []
    assert world.publisher.on(TopicRole.CONTROL) == []
    assert world.state("t1", "c1")[1].status is CampaignStatus.PAUSED


# --- the accepted set --------------------------------------------------------------------------


@pytest.mark.parametrize(("chunk_size", "seed"), [(1000, 1), (7, 2), (1, 3)])
async def test_the_published_set_equals_a_brute_force_filter(chunk_size: int, seed: int) -> None:
    """Chunks in order then the manifest: ids, counts and checksum as computed from the rules."""
    world = World(chunk_size=chunk_size)
    ids = [f"u{n}" for n in range(400)]
    audience = await world.plan("t1", "c1", [ids[i : i + 37] for i in range(0, 400, 37)])
    world.pause("t1", "c1")
    await varied_contacts(world, ids, seed)
    expected = brute_force(world, audience, "c1", FilterRules(), chunk_size)

    outcome = await world.service.handle(request())

    published = world.publisher.on(TopicRole.RECIPIENT_SETS)
    *chunks, manifest = published
    clone = clone_campaign_id("c1", "r1")
    assert [c["kind"] for c in chunks] == ["chunk"] * len(expected["chunks"])
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    assert [[r["contact_id"] for r in c["recipients"]] for c in chunks] == expected["chunks"]
    assert {m["_key"] for m in published} == {f"t1:{clone}"}
    assert manifest["kind"] == "manifest"
    assert manifest["checksum"] == expected["checksum"]
    assert manifest["excluded"] == expected["excluded"]
    assert manifest["already_attempted"] == expected["already_attempted"]
    assert manifest["total_recipients"] == sum(map(len, expected["chunks"]))
    assert (manifest["chunk_count"], manifest["chunk_size"]) == (len(chunks), chunk_size)
    assert outcome.accepted
    assert outcome.clone_campaign_id == clone
    assert outcome.total_recipients == manifest["total_recipients"]
    assert {r.value: n for r, n in outcome.excluded.items()} == expected["excluded"]
    assert len(expected["excluded"]) >= 4  # the mix really exercised the reasons


async def test_a_contact_planned_twice_is_considered_once() -> None:
    """Duplicates across and within audience chunks count and appear once, at the first place."""
    world = World()
    await world.plan("t1", "c1", [["a", "b", "a"], ["c", "b"], ["d"]])
    world.pause("t1", "c1")
    outcome = await world.service.handle(request())
    chunk = world.publisher.on(TopicRole.RECIPIENT_SETS)[0]
    assert [r["contact_id"] for r in chunk["recipients"]] == ["a", "b", "c", "d"]
    assert outcome.total_recipients == 4
    assert world.contacts.runs == {}


async def test_the_filter_judges_at_the_request_time_with_the_tenant_rules() -> None:
    """Staleness is measured from requested_at, and the tenant's rules apply."""
    rules = FilterRules(stale_after=timedelta(days=10), require_explicit_consent=True)
    world = World(rules=rules)
    await world.plan("t1", "c1", [["old", "recent", "consented"]])
    world.pause("t1", "c1")
    await world.contacts.apply_events(
        [
            delivery("old", EventType.SENT, NOW - timedelta(days=11)),
            delivery("recent", EventType.SENT, NOW - timedelta(days=9)),
        ]
    )
    await world.contacts.apply_updates(
        [
            ContactUpdate(
                tenant_id="t1", contact_id=c, consent=ConsentState.GRANTED, occurred_at=NOW
            )
            for c in ("old", "consented")
        ]
    )
    outcome = await world.service.handle(request())
    assert outcome.excluded == {
        ExclusionReason.NO_CONSENT: 1,
        ExclusionReason.NOT_EMAILED_RECENTLY: 1,
    }
    assert outcome.total_recipients == 1


def test_the_clone_id_is_stable_and_a_valid_identifier() -> None:
    """The clone id derives from the request id and fits an Identifier even for long ids."""
    clone = clone_campaign_id("c1", "r1")
    assert clone == f"c1-resume-{hashlib.sha256(b'r1').hexdigest()[:8]}"
    assert clone_campaign_id("c1", "r1") == clone != clone_campaign_id("c1", "r2")
    long_clone = clone_campaign_id("x" * 200, "r1")
    assert len(long_clone) == 200
    assert long_clone.endswith(clone.removeprefix("c1"))


# --- re-arming and the command -----------------------------------------------------------------


async def test_acceptance_commands_the_resume_and_re_arms_the_source() -> None:
    """A ResumeCommand names the clone, the source is re-armed and reported resumed."""
    world = World()
    await world.plan("t1", "c1", [["a", "b"]])
    world.pause("t1", "c1")
    version_before = world.state("t1", "c1")[0]

    await world.service.handle(request())

    version, state = world.state("t1", "c1")
    assert version == version_before + 1
    assert state.status is CampaignStatus.RESUMED
    assert state.episode == 1
    assert state.windows.watermark_ms is None
    (command,) = world.publisher.on(TopicRole.CONTROL)
    assert command["command"] == "resume"
    assert command["clone_campaign_id"] == clone_campaign_id("c1", "r1")
    assert (command["recipient_count"], command["requested_by"]) == (2, "ops@example.com")
    assert command["_key"] == "t1:c1"
    assert datetime.fromisoformat(command["decided_at"]) == DECIDED
    (health,) = world.publisher.on(TopicRole.HEALTH)
    assert (health["status"], health["status_changed"]) == ("resumed", True)
    assert datetime.fromisoformat(health["as_of"]) == WATERMARK
    roles = [m.role for m in world.publisher.messages]
    assert roles == ["recipient-sets"] * 2 + ["control", "health", "resume-outcomes"]


async def test_re_arming_retries_when_detection_wrote_meanwhile() -> None:
    """A compare-and-set conflict on the re-arm is retried on the fresh state."""
    world = World()
    await world.plan("t1", "c1", [["a"]])
    world.pause("t1", "c1")
    save_resume = world.store.save_resume
    conflicts = iter([True])

    async def racing_save(ref: CampaignRef, blob: bytes, expected_version: int) -> bool:
        if next(conflicts, False):  # detection commits first: the version moves on
            version, current = world.store.campaigns[ref]
            world.store.campaigns[ref] = (version + 1, current)
        return await save_resume(ref, blob, expected_version)

    world.store.save_resume = racing_save  # type: ignore[method-assign]  # a seam for the race
    outcome = await world.service.handle(request())
    version, state = world.state("t1", "c1")
    assert outcome.accepted
    assert (version, state.status) == (5, CampaignStatus.RESUMED)


# --- idempotency -------------------------------------------------------------------------------


async def test_the_same_request_id_gets_the_same_outcome_and_no_second_set() -> None:
    """A repeated request is answered again identically, with its command but no new set."""
    world = World()
    await world.plan("t1", "c1", [["a", "b", "c"]])
    world.pause("t1", "c1")
    first = await world.service.handle(request())
    sets_before = len(world.publisher.on(TopicRole.RECIPIENT_SETS))
    world.publisher.messages.clear()

    again = await world.service.handle(request(requested_by="someone-else"))

    assert again == first
    assert world.publisher.on(TopicRole.RECIPIENT_SETS) == []
    outcomes = world.publisher.on(TopicRole.RESUME_OUTCOMES)
    assert [o["request_id"] for o in outcomes] == ["r1"]
    (command,) = world.publisher.on(TopicRole.CONTROL)
    assert command["requested_by"] == "ops@example.com"
    assert sets_before == 2
    assert world.state("t1", "c1")[0] == 4  # re-armed once only


async def test_a_rejected_request_id_stays_rejected_once_the_campaign_is_paused() -> None:
    """The first answer holds: a request refused as not paused is refused again later."""
    world = World()
    await world.plan("t1", "c1", [["a"]])
    first = await world.service.handle(request())
    world.pause("t1", "c1")
    again = await world.service.handle(request())
    fresh = await world.service.handle(request(request_id="r2"))
    assert first.rejection is again.rejection is RejectionReason.NOT_PAUSED
    assert fresh.accepted


async def test_a_new_request_after_a_resume_finds_the_campaign_not_paused() -> None:
    """Once resumed, another request id for the same campaign is refused as not paused."""
    world = World()
    await world.plan("t1", "c1", [["a"]])
    world.pause("t1", "c1")
    await world.service.handle(request())
    second = await world.service.handle(request(request_id="r2"))
    assert second.rejection is RejectionReason.NOT_PAUSED


async def test_a_crash_after_the_answer_was_saved_is_finished_by_the_replay() -> None:
    """If publishing the command fails, the redelivered request completes it without a new set."""
    world = World()
    await world.plan("t1", "c1", [["a", "b"]])
    world.pause("t1", "c1")
    publish = world.publisher.publish
    calls = 0

    async def fail_second_publish(messages: Sequence[OutboxMessage]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the set went out; the command, health and outcome do not
            raise PublishError("broker gone")
        await publish(messages)

    world.publisher.publish = fail_second_publish  # type: ignore[method-assign]  # crash seam
    with pytest.raises(PublishError):
        await world.service.handle(request())
    assert world.state("t1", "c1")[1].status is CampaignStatus.RESUMED

    outcome = await world.service.handle(request())

    assert outcome.accepted
    assert len(world.publisher.on(TopicRole.RECIPIENT_SETS)) == 2  # chunk + manifest, once
    assert len(world.publisher.on(TopicRole.CONTROL)) == 1
    assert len(world.publisher.on(TopicRole.RESUME_OUTCOMES)) == 1


async def test_a_replay_never_resumes_a_later_pause_episode() -> None:
    """An old accepted request replayed after a new pause does not re-arm the new episode."""
    world = World()
    await world.plan("t1", "c1", [["a"]])
    world.pause("t1", "c1")
    await world.service.handle(request())
    version, state = world.state("t1", "c1")
    state.status, state.episode = CampaignStatus.PAUSED, 2
    world.store.campaigns[CampaignRef("t1", "c1")] = (version, encode_state(state))

    await world.service.handle(request())

    assert world.state("t1", "c1")[1].status is CampaignStatus.PAUSED


class ScriptedProgress:
    """A `ContactProgress` that reports events still behind from a script, one per call."""

    def __init__(self, *behind: int) -> None:
        self.behind = list(behind)
        self.waits: list[float] = []

    async def wait_caught_up(self, timeout_s: float) -> int:
        """The next scripted figure."""
        self.waits.append(timeout_s)
        return self.behind.pop(0)


async def test_a_resume_waits_for_the_contact_merge_and_is_refused_unsaved_if_it_lags() -> None:
    """Behind after the wait: refused as contacts_behind, nothing published but the outcome.

    The refusal is not saved, so the same request id is answered afresh once caught up.
    """
    progress = ScriptedProgress(42, 0)
    world = World(contact_progress=progress)
    await world.plan("t1", "c1", [["a", "b"]])
    world.pause("t1", "c1")

    refused = await world.service.handle(request())
    assert refused.rejection is RejectionReason.CONTACTS_BEHIND
    assert "42 delivery events behind" in refused.detail
    assert world.publisher.on(TopicRole.RECIPIENT_SETS) == []
    assert world.publisher.on(TopicRole.CONTROL) == []
    assert world.state("t1", "c1")[1].status is CampaignStatus.PAUSED

    accepted = await world.service.handle(request())
    assert accepted.accepted
    assert accepted.total_recipients == 2
    assert progress.waits == [2.5, 2.5]


async def test_a_request_refused_before_the_filter_does_not_wait_for_the_contact_merge() -> None:
    """An unknown campaign is refused at once: the merge's progress is not asked."""
    progress = ScriptedProgress()
    world = World(contact_progress=progress)
    outcome = await world.service.handle(request())
    assert outcome.rejection is RejectionReason.UNKNOWN_CAMPAIGN
    assert progress.waits == []


async def test_a_resume_of_an_audience_still_arriving_is_refused_unsaved() -> None:
    """Fewer chunks than total_chunks stated: refused as audience_incomplete, answered later.

    A set filtered then would silently leave the missing chunks' recipients out.
    """
    world = World()
    await world.plan("t1", "c1", [["a"], ["b"]], total_chunks=3)
    world.pause("t1", "c1")
    refused = await world.service.handle(request())
    assert refused.rejection is RejectionReason.AUDIENCE_INCOMPLETE
    assert refused.detail.startswith("2 of the 3 chunks")
    assert world.publisher.on(TopicRole.RECIPIENT_SETS) == []

    await world.plan("t1", "c1", [["a"], ["b"], ["c"]], total_chunks=3)
    accepted = await world.service.handle(request())
    assert accepted.accepted
    assert accepted.total_recipients == 3
