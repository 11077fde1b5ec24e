"""The state-epoch seam: the marker that tells a detection state Redis kept from one it lost.

`RedisEpochStore` (adapters/redis_epoch.py) and `InMemoryEpochStore` implement it; the state
guard (services/state_guard.py) is its only user.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterable

LEGACY_EPOCH_ID = ""
"""The epoch of state written before epochs existed: its keys keep the names they always had."""


@dataclass(frozen=True, slots=True)
class StateEpoch:
    """One life of the detection state in Redis; a new one begins when Redis lost the last."""

    id: str
    """Creation time in ms, zero-padded, then a random part: a later epoch sorts higher."""
    created_ms: int
    rewind_to_ms: int | None = None
    """Set when the epoch began with a loss: delivery events from this (Kafka) time on are
    read again to rebuild the state."""
    reason: str | None = None
    previous: str | None = None
    """The epoch that was lost, when the worker that noticed knew it."""
    announced: bool = False
    """The loss was published on the health topic."""
    rebuilt: frozenset[int] = field(default_factory=frozenset)
    """Partitions of delivery-events already rewound for this epoch (their offsets committed)."""

    @property
    def after_loss(self) -> bool:
        """Whether this epoch began because Redis lost the one before."""
        return self.rewind_to_ms is not None


@dataclass(frozen=True, slots=True)
class PartitionRewind:
    """What rewinding one delivery-events partition did."""

    partition: int
    committed: int | None
    """The group's committed offset before (None: nothing committed, read from the start)."""
    target: int
    """Where reading starts again (the committed offset if that was already earlier)."""
    missing_ms: int = 0
    """How much of the wanted history retention had already deleted (0: none)."""


class EpochStore(Protocol):
    """Where the state epoch marker lives: beside the state it vouches for, without a TTL."""

    async def read_epoch(self) -> StateEpoch | None:
        """The stored epoch, or None if there is none (never written, or lost with the state)."""
        ...

    async def create_epoch(self, epoch: StateEpoch) -> StateEpoch:
        """Store `epoch` unless one is stored already; returns the one that is stored now."""
        ...

    async def mark_rebuilt(self, epoch_id: str, partitions: Iterable[int]) -> None:
        """Note partitions as rewound for `epoch_id` (nothing if another epoch is stored)."""
        ...

    async def mark_announced(self, epoch_id: str) -> None:
        """Note the loss that began `epoch_id` as published (nothing if another is stored)."""
        ...

    async def holds_state_without_epoch(self) -> bool:
        """Whether campaign states written before epochs existed are stored (an upgrade)."""
        ...


class InMemoryEpochStore:
    """The embedded twin of `EpochStore`, for tests; `lose()` empties it like a FLUSHALL."""

    def __init__(self) -> None:
        self.epoch: StateEpoch | None = None
        self.state_without_epoch = False

    def lose(self) -> None:
        """Forget everything, as a Redis restarted without its data would."""
        self.epoch = None
        self.state_without_epoch = False

    async def read_epoch(self) -> StateEpoch | None:
        """See `EpochStore.read_epoch`."""
        return self.epoch

    async def create_epoch(self, epoch: StateEpoch) -> StateEpoch:
        """See `EpochStore.create_epoch`."""
        if self.epoch is None:
            self.epoch = epoch
        return self.epoch

    async def mark_rebuilt(self, epoch_id: str, partitions: Iterable[int]) -> None:
        """See `EpochStore.mark_rebuilt`."""
        if self.epoch is not None and self.epoch.id == epoch_id:
            self.epoch = replace(self.epoch, rebuilt=self.epoch.rebuilt | set(partitions))

    async def mark_announced(self, epoch_id: str) -> None:
        """See `EpochStore.mark_announced`."""
        if self.epoch is not None and self.epoch.id == epoch_id:
            self.epoch = replace(self.epoch, announced=True)

    async def holds_state_without_epoch(self) -> bool:
        """See `EpochStore.holds_state_without_epoch`."""
        return self.state_without_epoch
