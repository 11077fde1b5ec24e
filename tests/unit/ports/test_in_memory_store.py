"""The embedded detection store forgets event digests by event time, as Redis does by TTL."""

from __future__ import annotations

import io

import pytest

from processor.domain.policy import PolicyBook
from processor.ports.detection_store import (
    DAY_MS,
    CampaignAsk,
    CampaignRef,
    CampaignWrite,
    InMemoryStore,
)
from processor.services.replay import (
    embedded_store,
    records_from_lines,
    replay,
    replay_ttl_ms,
)
from tests.unit.cli.streams import T0, event

REF = CampaignRef("acme", "spring")


async def write(store: InMemoryStore, ref: CampaignRef, *days: int) -> None:
    """Commit one digest per day (`e<day>`) for `ref`, at whatever version it is."""
    (loaded,) = await store.load_campaigns([CampaignAsk(ref)])
    digests = {day: [f"e{day}".encode()] for day in days}
    assert await store.commit_campaigns([CampaignWrite(ref, loaded.version, b"s", digests, [])])


async def kept_days(store: InMemoryStore, ref: CampaignRef, days: range) -> set[int]:
    """The days whose digest `ref`'s load still reports as applied."""
    ask = CampaignAsk(ref, {day: [f"e{day}".encode()] for day in days})
    (loaded,) = await store.load_campaigns([ask])
    return {int(digest[1:]) for digest in loaded.seen}


@pytest.mark.parametrize(
    ("ttl_days", "newest", "kept"),
    [(1, 10, {8, 9, 10}), (2, 10, {7, 8, 9, 10}), (3, 4, {0, 1, 2, 3, 4})],
)
async def test_a_days_digests_expire_a_ttl_after_their_last_write(
    ttl_days: int, newest: int, kept: set[int]
) -> None:
    """Written one day at a time: a day's set goes a whole TTL after it, never sooner."""
    store = InMemoryStore(seen_ttl_ms=ttl_days * DAY_MS)
    for day in range(newest + 1):
        await write(store, REF, day)
    assert await kept_days(store, REF, range(newest + 1)) == kept
    assert {day for _ref, day in store.seen} == kept


async def test_without_a_ttl_every_digest_is_kept() -> None:
    """The tests' default store forgets nothing."""
    store = InMemoryStore()
    for day in range(30):
        await write(store, REF, day)
    assert len(store.seen) == 30


async def test_a_late_write_keeps_its_old_day_for_a_ttl_from_now() -> None:
    """A day's set written late (a late event) lives a TTL from that write, as in Redis."""
    store = InMemoryStore(seen_ttl_ms=DAY_MS)
    for day in range(10):
        await write(store, REF, day)
    other = CampaignRef("acme", "late")
    await write(store, other, 2)
    assert await kept_days(store, other, range(10)) == {2}
    await write(store, REF, 11)
    assert await kept_days(store, other, range(10)) == {2}
    await write(store, REF, 12)
    assert await kept_days(store, other, range(10)) == set()


async def test_days_written_in_one_batch_share_the_batchs_clock() -> None:
    """An old day and a new one in one batch: the old set is written now, so it stays."""
    store = InMemoryStore(seen_ttl_ms=DAY_MS)
    (a, b) = await store.load_campaigns([CampaignAsk(REF), CampaignAsk(CampaignRef("t", "b"))])
    writes = [
        CampaignWrite(REF, a.version, b"s", {2: [b"e2"]}, []),
        CampaignWrite(CampaignRef("t", "b"), b.version, b"s", {100: [b"e100"]}, []),
    ]
    assert await store.commit_campaigns(writes) == [True, True]
    assert await kept_days(store, REF, range(5)) == {2}


async def test_replay_memory_is_bounded_by_the_windows_not_the_events() -> None:
    """Thirty days of events leave the digests of a TTL and a batch's days, not thirty days."""
    book = PolicyBook()
    store = embedded_store(book)
    per_day = 30  # in batches of 100 events: each spans three days and a third
    lines = [event(n, "daily", "sent", n * 86_400 / per_day) for n in range(30 * per_day)]
    result = await replay(
        records_from_lines(lines),
        store=store,
        policy_book=lambda: book,
        out=io.StringIO(),
        errors=io.StringIO(),
        batch_size=100,
    )
    assert result.applied == len(lines)
    days = {day for _ref, day in store.seen}
    assert max(days) == (int(T0.timestamp() * 1000) // DAY_MS) + 30
    ttl_days = replay_ttl_ms(book) // DAY_MS
    assert len(days) <= 2 + ttl_days + 4
