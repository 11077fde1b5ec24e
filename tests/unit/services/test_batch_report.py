"""Reports of the parts of one batch add up to the batch's report."""

from __future__ import annotations

import asyncio

from processor.domain.windows import Counter
from processor.ports.detection_store import CampaignRef, OutboxMessage
from processor.services.campaign_fold import Counts
from processor.services.detection import BatchReport


def _tally(**counts: int) -> tuple[int, ...]:
    return tuple(counts.get(counter.name.lower(), 0) for counter in Counter)


async def test_merging_adds_every_count_and_keeps_the_later_landing() -> None:
    """Counts (by counter too) add, lists and campaigns join, the later part's landing is kept."""
    loop = asyncio.get_running_loop()
    first_landing, later_landing = loop.create_future(), loop.create_future()
    pause = OutboxMessage("control", "t1:c1", "{}")
    health = OutboxMessage("health", "t1:c2", "{}")
    first = BatchReport(
        dead_lettered=1, pauses=[pause], published=[pause], campaigns={CampaignRef("t1", "c1")}
    )
    first.count(Counts(applied=3, duplicates=1, applied_by_counter=_tally(sent=3)))
    first.landing = first_landing
    later = BatchReport(published=[health], campaigns={CampaignRef("t1", "c2")})
    later.count(Counts(applied=2, replayed=4, late=1, applied_by_counter=_tally(sent=1, open=1)))
    later.landing = later_landing

    first.merge(later)
    first.merge(BatchReport(dead_lettered=1))  # no landing: the later one stays

    assert (first.applied, first.duplicates, first.replayed, first.late) == (5, 1, 4, 1)
    assert first.applied_by_counter == _tally(sent=4, open=1)
    assert first.dead_lettered == 2
    assert (first.pauses, first.published) == ([pause], [pause, health])
    assert first.campaigns == {CampaignRef("t1", "c1"), CampaignRef("t1", "c2")}
    assert first.landing is later_landing
    first_landing.cancel()
    later_landing.cancel()
