"""The state guard: a lost detection state is noticed, announced once and its rebuild planned."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

from processor.domain.policy import PolicyBook
from processor.errors import PublishError, StateLostError
from processor.ports.state_epoch import (
    LEGACY_EPOCH_ID,
    InMemoryEpochStore,
    PartitionRewind,
    StateEpoch,
)
from processor.services.state_guard import StateGuard, rebuild_span_ms
from schemas.health import STATE_LOST_KEY, StateLost
from schemas.topics import TopicRole
from tests.unit.services.resume_world import ListPublisher

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

NOW_MS = 1_800_000_000_000
SPAN_MS = 31 * 3_600_000


@dataclass
class World:
    """A guard over an in-memory marker, with what it told the store and the metric hook."""

    epochs: InMemoryEpochStore = field(default_factory=InMemoryEpochStore)
    used: list[str] = field(default_factory=list)
    losses: int = 0
    rebuilds: int = 0

    def count_loss(self) -> None:
        """The metric hook of a loss noticed."""
        self.losses += 1

    def count_rebuild(self) -> None:
        """The metric hook of a rewind done."""
        self.rebuilds += 1

    def guard(self) -> StateGuard:
        """A guard as a fresh worker process builds it."""
        return StateGuard(
            self.epochs,
            span_ms=SPAN_MS,
            wall_clock_ms=lambda: NOW_MS,
            use_epoch=self.used.append,
            on_state_lost=self.count_loss,
            on_rebuild=self.count_rebuild,
        )


def offsets(*, committed: bool) -> Callable[[], Awaitable[bool]]:
    """`group_has_offsets` of a group that has (or has not) committed offsets."""

    async def has() -> bool:
        return committed

    return has


@pytest.mark.parametrize(
    ("marker", "committed", "legacy_state", "after_loss", "epoch_id"),
    [
        pytest.param(False, False, False, False, None, id="fresh deployment"),
        pytest.param(True, True, False, False, "kept", id="state kept"),
        pytest.param(False, True, False, True, None, id="Redis emptied"),
        pytest.param(False, True, True, False, LEGACY_EPOCH_ID, id="upgrade from before epochs"),
    ],
)
async def test_open_tells_a_kept_state_from_a_lost_one(
    *, marker: bool, committed: bool, legacy_state: bool, after_loss: bool, epoch_id: str | None
) -> None:
    """Missing marker + committed offsets is a loss, unless unstamped states show an upgrade."""
    world = World()
    if marker:
        world.epochs.epoch = StateEpoch("kept", NOW_MS - 1000)
    world.epochs.state_without_epoch = legacy_state

    epoch = await world.guard().open(offsets(committed=committed))

    assert epoch.after_loss is after_loss
    if epoch_id is not None:
        assert epoch.id == epoch_id
    assert world.epochs.epoch == epoch
    assert world.used == [epoch.id]
    assert world.losses == int(after_loss)
    if after_loss:
        assert epoch.rewind_to_ms == NOW_MS - SPAN_MS


async def test_a_loss_is_announced_once_whichever_worker_runs_first() -> None:
    """One StateLost on the health topic per loss, keyed `*:state-lost`, id = the new epoch."""
    world = World()
    world.epochs.epoch = StateEpoch("old", NOW_MS - 1000)
    world.epochs.lose()
    first, second = world.guard(), world.guard()
    epoch = await first.open(offsets(committed=True))
    assert await second.open(offsets(committed=True)) == epoch  # the one stored wins
    publisher = ListPublisher()

    assert await first.announce(publisher)
    assert not await second.announce(publisher)
    assert not await first.announce(publisher)

    (message,) = publisher.messages
    assert (message.role, message.key) == (TopicRole.HEALTH.value, STATE_LOST_KEY)
    announced = StateLost.model_validate_json(message.value)
    assert announced.message_id == epoch.id
    assert world.losses == 1  # counted by the process that noticed; the other adopted it


async def test_an_announcement_that_failed_is_made_again() -> None:
    """A publish that fails leaves the loss unannounced, so the next try publishes it."""
    world = World()
    guard = world.guard()
    await guard.open(offsets(committed=True))
    publisher = ListPublisher()
    publisher.failures = 1

    with pytest.raises(PublishError):
        await guard.announce(publisher)
    assert await guard.announce(publisher)
    assert len(publisher.messages) == 1


async def test_no_announcement_without_a_loss() -> None:
    """A fresh or kept state publishes nothing."""
    world = World()
    guard = world.guard()
    await guard.open(offsets(committed=False))
    publisher = ListPublisher()

    assert not await guard.announce(publisher)
    assert publisher.messages == []


@pytest.mark.parametrize("replaced", [False, True], ids=["marker gone", "another epoch"])
async def test_check_raises_once_the_marker_is_gone_or_replaced(*, replaced: bool) -> None:
    """A worker running when Redis is emptied stops (StateLostError) at its next check."""
    world = World()
    guard = world.guard()
    await guard.open(offsets(committed=False))
    await guard.check()  # kept: nothing
    world.epochs.lose()
    if replaced:
        world.epochs.epoch = StateEpoch("9999999999999-other", NOW_MS)

    with pytest.raises(StateLostError):
        await guard.check()
    assert world.losses == 1


async def test_each_partition_is_rewound_once_per_loss() -> None:
    """Partitions rewound (by any worker) are not rewound again; the others still are."""
    world = World()
    guard = world.guard()
    epoch = await guard.open(offsets(committed=True))
    assert epoch.rewind_to_ms is not None

    assert guard.rewind_needed([0, 1]) == (epoch.rewind_to_ms, [0, 1])
    await guard.rewound([PartitionRewind(0, 50, 10), PartitionRewind(1, 40, 0, missing_ms=5)])
    assert guard.rewind_needed([0, 1]) is None
    assert world.rebuilds == 1
    assert world.epochs.epoch is not None
    assert world.epochs.epoch.rebuilt == {0, 1}

    restarted = world.guard()  # another worker, or this one restarted
    await restarted.open(offsets(committed=True))
    assert restarted.rewind_needed([1, 2, 3]) == (epoch.rewind_to_ms, [2, 3])


async def test_nothing_is_rewound_while_the_state_was_kept() -> None:
    """Without a loss no partition is read again."""
    world = World()
    guard = world.guard()
    await guard.open(offsets(committed=False))

    assert guard.rewind_needed([0, 1, 2]) is None


def test_the_rebuild_reaches_back_over_the_longest_window_its_history_and_the_skew() -> None:
    """Default windows: 24 h, its 7 h of history in whole 24 min buckets, 15 min of skew."""
    bucket_ms = 24 * 60_000
    expected = 24 * 3_600_000 + 18 * bucket_ms + 900_000
    assert rebuild_span_ms(PolicyBook().windows, 900_000) == expected
