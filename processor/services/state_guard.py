"""The state guard: notices that Redis lost the detection state, says so, and plans its rebuild.

Owns the state epoch's life cycle (start-up check, periodic check, announcement, which
delivery-events partitions still need a rewind); the design is in `StateGuard`'s docstring.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from typing import TYPE_CHECKING

from processor.errors import StateLostError
from processor.ports.detection_store import OutboxMessage
from processor.ports.records import from_ms
from processor.ports.state_epoch import LEGACY_EPOCH_ID, StateEpoch
from schemas.health import STATE_LOST_KEY, StateLost
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from processor.domain.windows import WindowSpec
    from processor.ports.publishing import Publisher
    from processor.ports.state_epoch import EpochStore, PartitionRewind

log = logging.getLogger(__name__)

EPOCH_CHECK_INTERVAL_S = 5.0
"""How often a worker reads the epoch marker when nothing else has (see `StateGuard.check`)."""


def rebuild_span_ms(windows: Sequence[WindowSpec], max_future_skew_ms: int) -> int:
    """How far back delivery events must be read again to rebuild every window.

    The longest reach of a window (its length plus the history kept for denominator lags),
    plus the future skew allowed between an event's time and its Kafka timestamp: a rewind by
    Kafka time then covers every event whose event time any window still holds.
    """
    reach = max(w.length_ms + w.history_buckets * w.bucket_ms for w in windows)
    return reach + max_future_skew_ms


def new_epoch_id(now_ms: int) -> str:
    """A fresh epoch id: later ids sort higher (creation time first), then a random part."""
    return f"{now_ms:013d}-{secrets.token_hex(4)}"


class StateGuard:
    """Tells a detection state Redis kept from one it lost, and drives the rebuild.

    Design.

    * The marker. Redis holds one state-epoch hash without a TTL (`Keys.state_epoch`), written
      before the first campaign state. Every campaign state hash is stamped with its epoch id
      (`e`) and the event-id digest sets are named by it, by the same Lua script that writes
      the state (one slot: Redis Cluster keeps working). A store with a newer epoch than the
      writer's refuses the write (StateLostError); a state stamped with an older epoch is read
      as absent and overwritten. So a worker that wrote into an emptied Redis before anyone
      noticed leaves only state that the rebuilt one ignores: its offsets and digests can never
      make the rebuild skip an event.
    * Noticing. At start (`open`): no marker, but the consumer group has committed offsets
      on delivery-events, means Redis lost what this group wrote (a restart without
      persistence, a failover to an empty replica, FLUSHALL); no marker and no offsets is a
      fresh deployment; no marker, offsets, and campaign states without a stamp is an
      upgrade from before epochs (adopted as the legacy epoch ""). While running, every
      campaign write pipeline reads the marker too, and `check` reads it every few seconds
      when idle: missing or another id raises StateLostError, the worker stops without
      committing (as for any Redis failure) and its supervisor restarts it, which is the
      start-up path. One path rebuilds, whatever noticed.
    * Saying so. The worker that creates the epoch after a loss logs CRITICAL; the epoch
      keeps `announced`, so whichever worker runs `announce` first publishes one `StateLost`
      on the health topic (its id is the epoch id: a crash in between republishes the same
      message). Each process that notices a loss counts it (`sendguard_state_lost`), and each
      rewind it does (`sendguard_state_rebuilds`).
    * Rebuilding. The epoch carries `rewind_to` = now - (longest window reach + future skew)
      and the set of delivery-events partitions already rewound. Whenever the worker is
      assigned a partition not yet rewound (at start, or at a rebalance after the worker that
      held it died), the consumer seeks it to the first offset at `rewind_to` (never forward
      of the committed one), commits that offset, and only then is the partition marked
      rebuilt: a crash in between rewinds it again, which the fresh state's per-partition
      offsets make harmless. The re-fold starts from empty states, so every event within the
      span is counted exactly once (the digests are empty too, so each event id counts once),
      and decisions come out as live: a campaign paused within the span crosses again at
      the same event, with the same episode and therefore the same pause command id (which
      the control topic's consumers drop), a campaign that crossed during the outage is
      paused once, and the tenant's escalation is recorded again per campaign episode.
    * What is not rebuilt: events older than the span (the lifetime counts start again at
      `rewind_to`), what retention already deleted (logged per partition, with how much), a
      pause older than the span (its campaign's state starts again; its command stays in
      force at the sending pipeline, which got it), operator locks, audiences and contact
      state older than the span. With AOF `everysec` a Redis crash can lose up to a second of
      acknowledged writes; that is not detected (README, Deployment).
    """

    def __init__(
        self,
        epochs: EpochStore,
        *,
        span_ms: int,
        wall_clock_ms: Callable[[], int],
        use_epoch: Callable[[str], None],
        on_state_lost: Callable[[], None] | None = None,
        on_rebuild: Callable[[], None] | None = None,
    ) -> None:
        self._epochs = epochs
        self._span_ms = span_ms
        self._wall_clock_ms = wall_clock_ms
        self._use_epoch = use_epoch
        self._on_state_lost = on_state_lost or _nothing
        self._on_rebuild = on_rebuild or _nothing
        self._epoch: StateEpoch | None = None

    @property
    def epoch(self) -> StateEpoch | None:
        """The epoch this worker writes in (None before `open` or `follow`)."""
        return self._epoch

    async def open(self, group_has_offsets: Callable[[], Awaitable[bool]]) -> StateEpoch:
        """At start, before consuming: adopt the stored epoch, or begin one (after a loss?)."""
        stored = await self._epochs.read_epoch()
        if stored is None:
            stored = await self._begin(group_has_offsets)
        self._adopt(stored)
        return stored

    async def follow(self) -> StateEpoch | None:
        """At start of a worker that does not detect (resume only): adopt the stored epoch."""
        stored = await self._epochs.read_epoch()
        if stored is not None:
            self._adopt(stored)
        return stored

    async def check(self) -> None:
        """Raise StateLostError if the marker is gone or another epoch began since `open`."""
        known = self._epoch
        if known is None:
            return
        stored = await self._epochs.read_epoch()
        if stored is None or stored.id != known.id:
            self._on_state_lost()
            log.critical(
                "Redis lost the detection state while this worker ran; stopping to rebuild it",
                extra={"epoch": known.id, "stored_epoch": stored.id if stored else None},
            )
            raise StateLostError(
                f"state epoch {known.id!r} is gone from Redis"
                + (f" (now {stored.id!r})" if stored is not None else "")
            )

    async def announce(self, publisher: Publisher) -> bool:
        """Publish the loss that began the current epoch, once; True if this call did."""
        stored = await self._epochs.read_epoch()
        if stored is None or not stored.after_loss or stored.announced:
            return False
        message = state_lost_message(stored, detected_at_ms=stored.created_ms)
        await publisher.publish([_outbox(message)])
        await self._epochs.mark_announced(stored.id)
        return True

    def rewind_needed(self, partitions: Iterable[int]) -> tuple[int, list[int]] | None:
        """Of these newly assigned partitions, those to rewind, and the Kafka time to rewind to."""
        epoch = self._epoch
        if epoch is None or epoch.rewind_to_ms is None:
            return None
        todo = sorted(p for p in partitions if p not in epoch.rebuilt)
        return (epoch.rewind_to_ms, todo) if todo else None

    async def rewound(self, rewinds: Sequence[PartitionRewind]) -> None:
        """Note partitions rewound (their offsets committed); log what could not be rebuilt."""
        epoch = self._epoch
        if epoch is None or not rewinds:
            return
        for rewind in rewinds:
            extra = {
                "partition": rewind.partition,
                "committed_offset": rewind.committed,
                "rewound_to_offset": rewind.target,
                "epoch": epoch.id,
            }
            # The figures are in the text too: Faust's worker logging drops `extra` fields.
            if rewind.missing_ms > 0:
                log.critical(
                    "rebuilding state: partition %d rewound to offset %d, but retention deleted"
                    " up to %.0f s of the history to read again",
                    rewind.partition,
                    rewind.target,
                    rewind.missing_ms / 1000,
                    extra={**extra, "missing_s": round(rewind.missing_ms / 1000, 1)},
                )
            else:
                log.warning(
                    "rebuilding state: partition %d rewound from offset %s to %d",
                    rewind.partition,
                    rewind.committed,
                    rewind.target,
                    extra=extra,
                )
        done = [r.partition for r in rewinds]
        await self._epochs.mark_rebuilt(epoch.id, done)
        self._on_rebuild()
        # The marker is Redis's; this copy only spares a read per assignment.
        self._epoch = replace(epoch, rebuilt=epoch.rebuilt | set(done))

    async def _begin(self, group_has_offsets: Callable[[], Awaitable[bool]]) -> StateEpoch:
        now_ms = self._wall_clock_ms()
        if not await group_has_offsets():
            return await self._epochs.create_epoch(StateEpoch(new_epoch_id(now_ms), now_ms))
        if await self._epochs.holds_state_without_epoch():
            log.warning("campaign states predate state epochs: adopting them as epoch ''")
            return await self._epochs.create_epoch(StateEpoch(LEGACY_EPOCH_ID, now_ms))
        reason = "the state epoch marker is missing while the consumer group has committed offsets"
        lost = StateEpoch(
            new_epoch_id(now_ms),
            now_ms,
            rewind_to_ms=now_ms - self._span_ms,
            reason=reason,
            previous=self._epoch.id if self._epoch is not None else None,
        )
        stored = await self._epochs.create_epoch(lost)
        self._on_state_lost()
        if stored.id == lost.id:
            log.critical(
                "Redis lost the detection state: rebuilding it from delivery-events",
                extra={
                    "reason": reason,
                    "epoch": lost.id,
                    "rebuild_from": from_ms(now_ms - self._span_ms).isoformat(),
                },
            )
        return stored

    def _adopt(self, epoch: StateEpoch) -> None:
        self._epoch = epoch
        self._use_epoch(epoch.id)


def _nothing() -> None:
    """The default metric hook."""


def state_lost_message(epoch: StateEpoch, *, detected_at_ms: int) -> StateLost:
    """The ops message announcing the loss that began `epoch`."""
    return StateLost(
        message_id=epoch.id,
        reason=epoch.reason or "state lost",
        previous_epoch=epoch.previous,
        detected_at=from_ms(detected_at_ms),
        rebuild_from=from_ms(epoch.rewind_to_ms or detected_at_ms),
    )


def _outbox(message: StateLost) -> OutboxMessage:
    return OutboxMessage(TopicRole.HEALTH.value, STATE_LOST_KEY, message.model_dump_json())
