"""Comparing two policies on the same history (processor.services.replay.pause_differences)."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import UTC, datetime

from processor.domain.policy import PolicyBook
from processor.ports.detection_store import InMemoryStore
from processor.ports.records import FILE_TOPIC, RawRecord
from processor.services.replay import (
    ReplayResult,
    pause_differences,
    render_differences,
    replay,
)
from processor.simulation.profiles import CampaignKind, CampaignProfile, Rates
from processor.simulation.workload import campaign_events, to_json_line

WAVE = CampaignProfile(
    tenant_id="t",
    campaign_id="wave",
    size=6000,
    kind=CampaignKind.UNSUBSCRIBE_WAVE,
    send_rate_per_s=5.0,
    bad_rates=replace(Rates(), unsubscribe=0.1),
    onset_fraction=0.3,
)
RECORDS = [
    RawRecord(FILE_TOPIC, 0, n, None, to_json_line(event).encode(), None)
    for n, event in enumerate(campaign_events(WAVE, 1, datetime(2026, 1, 5, tzinfo=UTC)))
]


def _replay(book: PolicyBook) -> ReplayResult:
    return asyncio.run(
        replay(
            RECORDS,
            store=InMemoryStore(),
            policy_book=lambda: book,
            out=io.StringIO(),
            errors=io.StringIO(),
        )
    )


def test_two_policies_show_the_pauses_they_decide_differently() -> None:
    """Windows alone pause the wave later (or not): the pause differs, side by side."""
    new = _replay(PolicyBook())
    old = _replay(replace(PolicyBook(), default=PolicyBook().default.without_sequential()))
    differences = pause_differences(new, old)
    assert [(d.tenant_id, d.campaign_id, d.episode) for d in differences] == [("t", "wave", 1)]
    (difference,) = differences
    assert difference.first is not None
    assert difference.first.endswith("unsubscribe/sequential")
    assert difference.first != difference.second
    table = render_differences(differences, "new", "old")
    assert "unsubscribe/sequential" in table
    assert table.endswith("1 campaign pauses differ")


def test_a_policy_compared_with_itself_differs_nowhere() -> None:
    """The same policy on the same history decides the same pauses."""
    assert pause_differences(_replay(PolicyBook()), _replay(PolicyBook())) == []
