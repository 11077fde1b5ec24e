"""Write-behind bookkeeping: when held campaigns come due, what a later batch folds on, landing.

The batches that held campaigns land only once those are written.
"""

from __future__ import annotations

import asyncio

import pytest

from processor.domain.campaign_state import CampaignState, EventFacts
from processor.domain.windows import Counter
from processor.errors import StoreUnavailableError
from processor.ports.detection_store import CampaignRef, CampaignWrite
from processor.services.campaign_fold import CampaignEvents, Counts, Folded, Item
from processor.services.write_behind import WriteBehind
from tests.unit.services.resume_world import BOOK, Clock

REF = CampaignRef("t1", "c1")
HOLD_S = 0.25


def _item(n: int) -> Item:
    return (EventFacts(f"e{n}", Counter.SENT, 0, "example.com", None, None), bytes([n]), 0)


def _folded(events: list[Item], *, applied: int) -> Folded:
    """A fold of `events` that decided nothing, none of them counted before."""
    counted = Counts()
    campaign = CampaignEvents(REF, events, 0, counted)
    write = CampaignWrite(REF, 3, b"", {0: [e[1] for e in events]}, [])
    seen = {e[1] for e in events}
    folded = Folded(campaign, CampaignState.fresh(BOOK.windows), write, seen, counted)
    folded.applied = applied
    return folded


async def test_held_campaigns_come_due_a_hold_after_the_first_was_held() -> None:
    """Due once `hold_s` passed since the first campaign was held; never due with none held."""
    clock = Clock()
    behind = WriteBehind(HOLD_S, clock)
    assert not behind.due()
    behind.hold(_folded([_item(1)], applied=1), BOOK.windows)
    clock.now += HOLD_S / 2
    behind.hold(_folded([_item(2)], applied=1), BOOK.windows)
    assert not behind.due()
    clock.now += HOLD_S / 2
    assert behind.due()


def test_without_a_hold_every_batch_writes_everything() -> None:
    """A hold of zero makes the held campaigns due always: nothing waits."""
    assert WriteBehind(0.0, Clock()).due()


async def test_a_later_batch_joins_the_held_events_and_folds_onto_the_held_state() -> None:
    """`take` puts the held events first, says how many there are and what was counted."""
    behind = WriteBehind(HOLD_S, Clock())
    behind.hold(_folded([_item(1), _item(2)], applied=2), BOOK.windows)

    (joined,), sound = behind.take([CampaignEvents(REF, [_item(3)])], BOOK.windows)

    assert [e[1] for e in joined.events] == [b"\x01", b"\x02", b"\x03"]
    assert (joined.held_events, joined.counted) == (2, Counts(applied=2))
    assert sound[REF].version == 3
    assert not behind.holding()


async def test_a_held_state_of_other_windows_is_not_folded_on() -> None:
    """After a policy change of windows the held events are folded again from the store."""
    behind = WriteBehind(HOLD_S, Clock())
    behind.hold(_folded([_item(1)], applied=1), BOOK.windows)

    (joined,), sound = behind.take([CampaignEvents(REF, [_item(2)])], BOOK.windows[:1])

    assert joined.held_events == 1
    assert sound == {}


async def test_a_broken_batch_keeps_the_held_events_and_drops_its_own() -> None:
    """What earlier batches held survives a batch that broke off; its own events do not."""
    behind = WriteBehind(HOLD_S, Clock())
    behind.hold(_folded([_item(1)], applied=1), BOOK.windows)
    taken, _ = behind.take([CampaignEvents(REF, [_item(2)])], BOOK.windows)

    behind.keep_after_break(taken, BOOK.windows)

    (again,), sound = behind.take([CampaignEvents(REF, [])], BOOK.windows)
    assert [e[1] for e in again.events] == [b"\x01"]
    assert again.counted == Counts(applied=1)
    assert sound == {}  # its state is rebuilt from the store and the held events


async def test_a_held_batch_lands_once_nothing_is_held() -> None:
    """The landing waits for every campaign held so far to be written."""
    behind = WriteBehind(HOLD_S, Clock())
    assert behind.landing() is None
    behind.hold(_folded([_item(1)], applied=1), BOOK.windows)
    landing = behind.landing()
    assert landing is not None

    behind.settle()
    assert not landing.done()  # still held
    behind.take([CampaignEvents(REF, [])], BOOK.windows)
    behind.settle()

    await asyncio.wait_for(landing, timeout=1)
    assert behind.landing() is None


async def test_a_failed_write_drops_what_is_held_and_fails_the_landing() -> None:
    """The worker stops and reads the batches again: held batches must not be committed."""
    behind = WriteBehind(HOLD_S, Clock())
    behind.hold(_folded([_item(1)], applied=1), BOOK.windows)
    landing = behind.landing()
    assert landing is not None

    behind.fail(StoreUnavailableError("Redis gone"))

    assert not behind.holding()
    with pytest.raises(StoreUnavailableError, match="not written: Redis gone"):
        await landing
