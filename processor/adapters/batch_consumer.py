"""The hot path's Kafka edge: a consumer that hands whole `getmany` batches to a use case.

Faust's stream layer costs tens of microseconds per event; delivery events are many, so their
agent reads batches straight from aiokafka and commits offsets itself, only after the batch
was applied, its decisions acknowledged and its writes landed. aiokafka errors are translated
here, once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from processor.adapters.kafka import client_options
from processor.adapters.kafka_rewind import Rewinder, not_before_rewind, rewind_to
from processor.errors import PublishError, SendguardError, StoreUnavailableError
from processor.ports.records import RawRecord

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from processor.config.settings import Settings

log = logging.getLogger(__name__)

MAX_BATCHES_LANDING = 16
"""Batches applied whose writes are still landing (so not committed) before reading another
waits for the oldest: bounds what is held in memory when Redis is slow."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no type hints
    """Logs rebalances; rewinds newly assigned partitions that a rebuild needs read again."""

    def __init__(self, rewind: Callable[[list[TopicPartition]], Awaitable[None]]) -> None:
        self._rewind = rewind

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        log.info("partitions revoked", extra={"partitions": sorted(str(tp) for tp in revoked)})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(str(tp) for tp in assigned)})
        # Here, before any record of them is fetched: a record applied before the rewind
        # would move the rebuilt state's offset past the records to be read again.
        await self._rewind(assigned)


class Handled(Protocol):
    """What `handle` may return about a batch."""

    @property
    def landing(self) -> Awaitable[None] | None:
        """Writes of the batch still going on; its offsets are committed once they are done."""
        ...


class WriteHeld(Protocol):
    """Writes what `handle` held back (write-behind), so that held batches can land."""

    def __call__(self, *, due_only: bool) -> Awaitable[None]:
        """Write all of it, or with `due_only` only if it has been held long enough."""
        ...


class BatchConsumer:
    """Consumes topics in batches; commits each batch after `handle` returned and landed.

    `handle` must be idempotent (a batch may be handed over again after a crash or rebalance).
    If it (or its `landing`) raises StoreUnavailableError or PublishError the consumer stops
    without committing, and `failed` is set: the process should exit so the records are read
    again after a restart. A `landing` may wait for writes that `handle` holds back: then
    `write_held` writes them when no batch came, before the consumer stops, and when too many
    batches wait to land.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str | tuple[str, ...],
        role: str,
        handle: Callable[[Sequence[RawRecord]], Awaitable[Handled | None]],
        write_held: WriteHeld | None = None,
        *,
        rewinder: Rewinder | None = None,
    ) -> None:
        self._settings = settings
        self._topics = (topic,) if isinstance(topic, str) else topic
        self._topic = ",".join(self._topics)
        """The topic (or comma-joined topics) for logs and errors."""
        self._role = role
        self.group_id = f"{settings.app_id}-{role}"
        self._handle = handle
        self._write_held = write_held
        self._rewinder = rewinder
        self._rewind_failed: SendguardError | None = None
        self._landing: collections.deque[asyncio.Task[None]] = collections.deque()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None
        self.ready = asyncio.Event()
        self._handed_to: dict[TopicPartition, int] = {}

    def _build(self) -> AIOKafkaConsumer:
        settings = self._settings
        instance = settings.kafka_group_instance_id
        return AIOKafkaConsumer(
            **client_options(settings),
            group_id=self.group_id,
            group_instance_id=f"{instance}-{self._role}" if instance else None,
            client_id=f"{settings.app_id}-{self._role}-{socket.gethostname()}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=settings.kafka_session_timeout_s * 1000,
            heartbeat_interval_ms=max(1000, settings.kafka_session_timeout_s * 1000 // 3),
            max_poll_records=settings.batch_max_events,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=8 * 1024 * 1024,
        )

    @property
    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this consumer holds now (none before it started or after it stopped)."""
        if self._consumer is None:
            return frozenset()
        return frozenset(self._consumer.assignment())

    def lag(self) -> dict[int, int]:
        """Records behind each assigned partition's end, as of the last fetch (for metrics)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lag: dict[int, int] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            handed = self._handed_to.get(tp)
            if end is not None and handed is not None:
                lag[tp.partition] = max(0, end - handed)
        return lag

    async def start(self) -> None:
        """Join the group and start consuming in the background."""
        consumer = self._build()
        # The listener gets the consumer itself: the first assignment may come before `start`
        # returns and `self._consumer` is set.
        consumer.subscribe(
            list(self._topics),
            listener=_Rebalance(lambda assigned: self._rewind(consumer, assigned)),
        )
        try:
            await consumer.start()
        except KafkaError as exc:
            await consumer.stop()
            raise PublishError(f"cannot consume {self._topic}: {exc}") from exc
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(), name=f"consume {self._topic}")

    async def _rewind(self, consumer: AIOKafkaConsumer, assigned: list[TopicPartition]) -> None:
        """Seek the assigned partitions the rewinder names back to its time, and commit that.

        aiokafka hands out records of a new assignment before its listener is done, so the
        partitions are paused first (before any await) and resumed only once rewound; records
        read before the pause are dropped by `_poll`. A failure stops consumption (the records
        must not be applied from the old offsets); aiokafka would only log an error raised
        from a rebalance listener.
        """
        rewinder = self._rewinder
        if rewinder is None:
            return
        plan = rewinder.rewind_needed(tp.partition for tp in assigned if tp.topic == self._topic)
        if plan is None:
            return
        to_ms, partitions = plan
        paused = [TopicPartition(self._topic, p) for p in partitions]
        consumer.pause(*paused)
        try:
            rewinds = await rewind_to(consumer, self._topic, partitions, to_ms)
            await rewinder.rewound(rewinds)
            consumer.resume(*paused)
        except (KafkaError, SendguardError) as exc:
            log.critical("rewinding for a state rebuild failed", extra={"error": str(exc)})
            self._rewind_failed = (
                exc if isinstance(exc, SendguardError) else PublishError(f"rewind failed: {exc}")
            )

    async def stop(self) -> None:
        """Stop consuming (the batch in progress finishes first) and leave the group."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
            log.info("batch consumer stopped", extra={"topic": self._topic})

    async def _run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        wait_ms = self._settings.batch_max_wait_ms
        # A batch's offsets are committed while the next batches are read and applied (one
        # commit at a time, in order, each once its batch's writes landed): the round trip is
        # off the path of every event. A crash before it lands only re-reads an applied batch,
        # which the state makes harmless.
        committing: asyncio.Task[None] | None = None
        try:
            while True:
                committing = await self._poll(consumer, wait_ms, committing)
        except asyncio.CancelledError:
            if committing is not None:
                await asyncio.gather(self._write_all_held(), return_exceptions=True)
                await asyncio.gather(committing, return_exceptions=True)
            raise
        except (StoreUnavailableError, PublishError, KafkaError) as exc:
            log.critical(
                "state or broker unavailable, consumption stopped", extra={"error": str(exc)}
            )
            self.failed = exc
        except Exception as exc:  # a bug in a batch's landing: stop rather than die unnoticed
            log.critical("batch could not be completed, consumption stopped", exc_info=True)
            self.failed = exc

    async def _poll(
        self,
        consumer: AIOKafkaConsumer,
        wait_ms: int,
        committing: asyncio.Task[None] | None,
    ) -> asyncio.Task[None] | None:
        """Read and apply one batch (or write what is held, if none came); the last commit."""
        batches = await consumer.getmany(
            timeout_ms=wait_ms, max_records=self._settings.batch_max_events
        )
        if self._rewind_failed is not None:
            raise self._rewind_failed
        if batches and self._rewinder is not None:
            batches = not_before_rewind(self._rewinder, batches)
        if consumer.assignment():
            self.ready.set()
        if committing is not None and committing.done():
            await committing  # raises if the commit (or one before it) failed
            committing = None
        if batches:
            return await self._apply(consumer, batches, committing)
        if self._write_held is not None:
            await self._write_held(due_only=True)
        return committing

    async def _apply(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[Any]],
        committing: asyncio.Task[None] | None,
    ) -> asyncio.Task[None]:
        """Apply one batch, then start committing it; returns that commit, in flight."""
        offsets = {tp: msgs[-1].offset + 1 for tp, msgs in batches.items() if msgs}
        self._handed_to.update(offsets)
        handling = asyncio.ensure_future(self._handle(_records(batches)))
        try:
            # Shielded: a stop while Redis or Kafka is being written must not cut the batch in
            # half. shield() alone would let stop() return (and the app close its producer)
            # under the batch, so the stop waits for it here, then commits it.
            handled = await asyncio.shield(handling)
        except asyncio.CancelledError:
            await self._finish_then_commit(consumer, handling, committing, offsets)
            raise
        landing = handled.landing if handled is not None else None
        commit = asyncio.create_task(_commit(consumer, offsets, landing, committing))
        self._landing.append(commit)
        while self._landing and self._landing[0].done():
            self._landing.popleft()
        if len(self._landing) > MAX_BATCHES_LANDING:
            await self._write_all_held()
            await asyncio.wait([self._landing[0]])  # its failure is raised by the loop
        return commit

    async def _write_all_held(self) -> None:
        if self._write_held is not None:
            await self._write_held(due_only=False)

    async def _finish_then_commit(
        self,
        consumer: AIOKafkaConsumer,
        handling: asyncio.Future[Handled | None],
        committing: asyncio.Task[None] | None,
        offsets: dict[TopicPartition, int],
    ) -> None:
        """On stop: let the batch in flight finish and land, and commit it if it was applied."""
        (outcome,) = await asyncio.gather(handling, return_exceptions=True)
        if not isinstance(outcome, BaseException):
            await asyncio.gather(self._write_all_held(), return_exceptions=True)
        await _land_then_commit(consumer, outcome, committing, offsets)


async def _land_then_commit(
    consumer: AIOKafkaConsumer,
    outcome: Handled | BaseException | None,
    committing: asyncio.Task[None] | None,
    offsets: dict[TopicPartition, int],
) -> None:
    if committing is not None:
        await asyncio.gather(committing, return_exceptions=True)
    if (
        not isinstance(outcome, BaseException)
        and outcome is not None
        and outcome.landing is not None
    ):
        (outcome,) = await asyncio.gather(outcome.landing, return_exceptions=True)
    if isinstance(outcome, BaseException):
        # Not committed: the next worker reads the batch again, which the state makes harmless.
        log.warning("batch in flight at stop failed", extra={"error": str(outcome)})
        return
    await asyncio.gather(_commit(consumer, offsets, None), return_exceptions=True)


async def _commit(
    consumer: AIOKafkaConsumer,
    offsets: dict[TopicPartition, int],
    landing: Awaitable[None] | None,
    previous: Awaitable[None] | None = None,
) -> None:
    if previous is not None:
        await previous  # in order; its failure fails this commit too
    if landing is not None:
        await landing  # raises if the batch's writes failed: then it is not committed
    # Commits trail their batches, so a rebalance may have moved some of the batch's partitions
    # to another member meanwhile: aiokafka refuses a commit naming one (IllegalStateError).
    # Their offsets are the new owner's to commit; it re-reads those records, and the
    # idempotent state makes that harmless. The rest are committed.
    assigned = consumer.assignment()
    kept = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if len(kept) < len(offsets):
        log.info(
            "offsets of partitions no longer assigned left to their new owner",
            extra={"partitions": sorted(str(tp) for tp in offsets.keys() - kept.keys())},
        )
    if not kept:
        return
    try:
        await consumer.commit(kept)
    except (CommitFailedError, IllegalStateError):
        # A rebalance (or one that started during the commit) took the partitions away.
        log.warning("offset commit refused after a rebalance; batch will be re-read")


def _records(batches: dict[TopicPartition, list[Any]]) -> list[RawRecord]:
    return [
        RawRecord(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp)
        for tp, messages in batches.items()
        for m in messages
    ]
