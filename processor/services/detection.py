"""The detection use case: apply a batch of delivery-event records and publish what it decides.

Idempotent under Kafka's at-least-once delivery: each campaign's state carries the last applied
offset per partition and the digests of applied event ids, and is written compare-and-set, so a
replayed or redelivered record is never counted twice. Decisions are stored with the state
(an outbox) before they are published, so a crash between the two loses nothing. A campaign
that decided nothing may be held in memory and written a little later (`write_behind`); its
batches' `landing` waits for that write, so their offsets are committed only after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from processor.domain.campaign_state import CampaignState, EventFacts, counter_for
from processor.domain.codec import encode_state
from processor.errors import (
    WRITE_ATTEMPTS,
    InvalidInputError,
    PublishError,
    StoreUnavailableError,
    WriteConflictError,
)
from processor.ports.dead_letters import dead_letter
from processor.ports.detection_store import (
    CampaignRef,
    DetectionStore,
    OutboxMessage,
    StoredCampaign,
)
from processor.services.campaign_fold import (
    NO_TALLY,
    CampaignEvents,
    Folded,
    add_tallies,
    ask,
    fold,
)
from processor.services.event_input import event_digest, parse_batch
from processor.services.outbox import health_snapshot
from processor.services.outbox_delivery import OutboxDelivery
from processor.services.state_cache import StateCache
from processor.services.write_behind import WriteBehind
from schemas.base import campaign_key
from schemas.health import CampaignStatus
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from processor.domain.policy import PolicyBook
    from processor.ports.contact_store import ContactWrite
    from processor.ports.publishing import ContactSink, Publisher
    from processor.ports.records import EventView, RawRecord
    from processor.services.campaign_fold import Counts, Held

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass(slots=True)
class BatchReport:
    """What one batch did (for metrics, logs and tests)."""

    applied: int = 0
    duplicates: int = 0
    replayed: int = 0
    late: int = 0
    applied_by_counter: tuple[int, ...] = NO_TALLY
    """`applied`, split by the counter each event incremented (indexed by Counter)."""
    dead_lettered: int = 0
    pauses: list[OutboxMessage] = field(default_factory=list)
    published: list[OutboxMessage] = field(default_factory=list)
    campaigns: set[CampaignRef] = field(default_factory=set)
    landing: asyncio.Future[None] | None = None
    """The batch's writes still in flight after `apply` returned (None if there are none):
    its contact merges, and the held campaigns (see `write_behind`). The batch's offsets may
    be committed only once it is done; if it fails, it raises StoreUnavailableError and the
    batch must be read again."""

    def count(self, counts: Counts) -> None:
        """Add what a fold counted."""
        self.applied += counts.applied
        self.duplicates += counts.duplicates
        self.replayed += counts.replayed
        self.late += counts.late
        self.applied_by_counter = add_tallies(self.applied_by_counter, counts.applied_by_counter)

    def merge(self, later: BatchReport) -> None:
        """Add the report of a later part of the same batch; it lands after this one."""
        self.applied += later.applied
        self.duplicates += later.duplicates
        self.replayed += later.replayed
        self.late += later.late
        self.applied_by_counter = add_tallies(self.applied_by_counter, later.applied_by_counter)
        self.dead_lettered += later.dead_lettered
        self.pauses.extend(later.pauses)
        self.published.extend(later.published)
        self.campaigns |= later.campaigns
        if later.landing is not None:  # each part lands after the one before
            self.landing = later.landing


class DetectionService:
    """Applies batches of delivery-event records to campaign state and publishes decisions."""

    def __init__(
        self,
        store: DetectionStore,
        publisher: Publisher,
        policy_book: Callable[[], PolicyBook],
        *,
        contacts: ContactSink | None = None,
        max_future_skew_ms: int = 15 * 60_000,
        health_min_interval_s: float = 5.0,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
        monotonic: Callable[[], float] = time.monotonic,
        publish_periodic_health: bool = True,
        state_cache_campaigns: int = 10_000,
        state_write_behind_s: float = 0.0,
    ) -> None:
        self._store = store
        self._publisher = publisher
        self._policy_book = policy_book
        self._contacts = contacts
        self._max_future_skew_ms = max_future_skew_ms
        self._health_interval_s = health_min_interval_s
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._publish_periodic_health = publish_periodic_health
        self._last_health: dict[CampaignRef, float] = {}
        self._states = StateCache(state_cache_campaigns)
        self._outboxes = OutboxDelivery(store, publisher, policy_book)
        self._landing: asyncio.Future[None] | None = None
        # Campaigns that decided nothing are held for up to `state_write_behind_s`, then
        # written together: that saves each its encode and write in most batches.
        self._write_behind = WriteBehind(state_write_behind_s, monotonic)

    async def apply(self, records: Sequence[RawRecord]) -> BatchReport:
        """Apply one batch; returns after its decisions and dead letters are published.

        Raises StoreUnavailableError (or its WriteConflictError) or PublishError when Redis or
        Kafka fail: the caller must then not commit the batch's offsets (a replay is harmless).
        """
        report = BatchReport()
        dead: list[OutboxMessage] = []
        events: list[EventView] = []
        # Keyed by plain (tenant, campaign) tuples and with each partition's `source` built
        # once: per event, hashing a dataclass and formatting a string showed in profiles.
        todo: dict[tuple[str, str], CampaignEvents] = {}
        sources: dict[tuple[str, int], str | None] = {}
        skew_ms = self._max_future_skew_ms
        for record, parsed in zip(records, parse_batch(records, skew_ms), strict=True):
            if isinstance(parsed, InvalidInputError):
                dead.append(
                    dead_letter(record, parsed.error_type, parsed.reason, self._wall_clock())
                )
                continue
            event, at_ms = parsed
            position = (record.topic, record.partition)
            if position not in sources:
                sources[position] = record.source
            source = sources[position]
            event_id = event.event_id
            facts = EventFacts(
                event_id,
                counter_for(event.type, event.bounce_class),
                at_ms,
                event.recipient.domain,
                source,
                record.offset if source is not None else None,
                event.bounce_category,
            )
            events.append(event)
            key = (event.tenant_id, event.campaign_id)
            campaign = todo.get(key)
            if campaign is None:
                campaign = todo[key] = CampaignEvents(CampaignRef(*key), [])
            campaign.events.append((facts, event_digest(event_id), at_ms // DAY_MS))
        if dead:
            await self._publisher.publish(dead)
            report.dead_lettered = len(dead)
            report.published.extend(dead)
        await self._apply_campaigns(todo, report, write_all=self._write_behind.due())
        if self._contacts is not None and events:
            # After the decisions are out, so the contacts' CPU never delays a pause. Built
            # here, so a record that breaks it is isolated like any other; written while the
            # next batch is read and folded (`landing`). Merges are idempotent and get every
            # event of the batch (duplicates too): a crash before one lands replays the batch
            # harmlessly.
            report.landing = self._land_in_order(self._contacts.prepare_events(events))
        held_landing = self._write_behind.landing()
        if held_landing is not None:
            report.landing = _both(report.landing, held_landing)
        return report

    @property
    def state_cache_counts(self) -> tuple[int, int]:
        """(hits, misses) of the decoded-state cache since start (for metrics)."""
        return self._states.hits, self._states.misses

    async def write_held_states(self, *, due_only: bool = False) -> None:
        """Write the held campaigns (see `write_behind`); all, or only once due.

        Called when no batch came for a while, and before stopping: the batches that held
        them land once they are written.
        """
        if self._write_behind.holding() and (not due_only or self._write_behind.due()):
            await self._apply_campaigns({}, BatchReport(), write_all=True)

    async def _apply_campaigns(
        self, todo: dict[tuple[str, str], CampaignEvents], report: BatchReport, *, write_all: bool
    ) -> None:
        """Fold and write (or hold) each campaign, retrying those whose write was refused."""
        if write_all:
            for ref in self._write_behind.held_refs():
                todo.setdefault((ref.tenant_id, ref.campaign_id), CampaignEvents(ref, []))
        try:
            retry = list(todo.values())
            for _attempt in range(WRITE_ATTEMPTS):
                if not retry:
                    break
                retry = await self._apply_once(retry, report, write_all=write_all)
            if retry:
                refs = ", ".join(campaign_key(c.ref.tenant_id, c.ref.campaign_id) for c in retry)
                message = f"campaign state kept changing under us (another worker?): {refs}"
                raise WriteConflictError(message)
        except (StoreUnavailableError, PublishError) as exc:
            self._write_behind.fail(exc)
            raise
        self._write_behind.settle()

    def _land_in_order(self, write: ContactWrite) -> asyncio.Future[None]:
        # One after another, in batch order: "sends since last engaged" depends on the order
        # of a contact's sends and opens, which Kafka keeps within a partition.
        previous = self._landing

        async def after_previous() -> None:
            if previous is not None:
                await previous  # its failure fails this one too: both batches are re-read
            await write()

        landing = self._landing = asyncio.ensure_future(after_previous())
        return landing

    async def landed(self) -> None:
        """Wait until every contact merge handed out so far is written (raises if one failed)."""
        if self._landing is not None:
            await self._landing

    async def apply_isolating(self, records: Sequence[RawRecord]) -> BatchReport:
        """`apply`, but a record that trips an unexpected error is dead-lettered on its own.

        Redis and Kafka failures (a lasting write conflict too) still propagate: those records
        must be retried, not rejected.
        """
        try:
            return await self.apply(records)
        except (StoreUnavailableError, PublishError):
            raise
        except Exception as exc:  # the one catch-all: a bug on one record must not stall the stream
            if len(records) == 1:
                log.exception("record could not be processed; dead-lettered")
                letter = dead_letter(
                    records[0],
                    "processing_error",
                    f"{type(exc).__name__}: {exc}",
                    self._wall_clock(),
                )
                await self._publisher.publish([letter])
                return BatchReport(dead_lettered=1, published=[letter])
        report = BatchReport()
        for record in records:
            report.merge(await self.apply_isolating([record]))
        return report

    async def _apply_once(
        self, todo: list[CampaignEvents], report: BatchReport, *, write_all: bool
    ) -> list[CampaignEvents]:
        """One attempt at `todo`: the campaigns whose write was refused, to be tried again."""
        book = self._policy_book()
        todo, held = self._write_behind.take(todo, book.windows)
        try:
            return await self._fold_and_write(todo, held, report, book, write_all=write_all)
        except BaseException:
            self._write_behind.keep_after_break(todo, book.windows)
            raise

    async def _fold_and_write(
        self,
        todo: list[CampaignEvents],
        held: dict[CampaignRef, Held],
        report: BatchReport,
        book: PolicyBook,
        *,
        write_all: bool,
    ) -> list[CampaignEvents]:
        stored = await self._load(todo, book, held)
        for campaign, loaded in zip(todo, stored, strict=True):
            if loaded.outbox:
                await self._outboxes.deliver(campaign.ref, loaded.outbox, loaded.outbox_version)
        folded = [
            fold(campaign, loaded, book, self._states.decode, held.get(campaign.ref))
            for campaign, loaded in zip(todo, stored, strict=True)
        ]
        holding: list[Folded] = []
        writing: list[Folded] = []
        for f in folded:
            (writing if write_all or f.write.outbox else holding).append(f)
        for f in writing:
            f.write.blob = encode_state(f.state)
            f.write.paused = f.state.status is CampaignStatus.PAUSED
        results = await self._store.commit_campaigns([f.write for f in writing]) if writing else []
        retry = [f.campaign for f, written in zip(writing, results, strict=True) if not written]
        done = [f for f, written in zip(writing, results, strict=True) if written]
        for f in done:
            version = f.write.expected_version + 1
            self._states.remember(f.campaign.ref, f.write.blob, version, book.windows, f.state)
        for f in holding:  # decided nothing: written within `state_write_behind_s`
            self._write_behind.hold(f, book.windows)
        decided = [m for f in done for m in f.write.outbox]
        periodic = self._report(done + holding, report)
        if decided or periodic:
            # One acknowledged send for the batch: decisions first, then routine snapshots.
            await self._publisher.publish(decided + periodic)
        await self._outboxes.after_publish(
            [
                (f.campaign.ref, f.write.outbox, f.write.expected_version + 1)
                for f in done
                if f.write.outbox
            ]
        )
        report.published.extend(decided + periodic)
        return retry

    def _report(self, applied: list[Folded], report: BatchReport) -> list[OutboxMessage]:
        """Count the applied folds into `report`; the routine health snapshots now due."""
        periodic: list[OutboxMessage] = []
        for f in applied:
            report.campaigns.add(f.campaign.ref)
            report.count(f.uncounted())
            if f.write.outbox:
                report.pauses.extend(m for m in f.write.outbox if m.role == TopicRole.CONTROL)
            message = self._periodic_health(f.campaign.ref, f.state, decided=bool(f.write.outbox))
            if message is not None:
                periodic.append(message)
        return periodic

    async def _load(
        self, todo: list[CampaignEvents], book: PolicyBook, held: dict[CampaignRef, Held]
    ) -> list[StoredCampaign]:
        """Stored states of `todo`; a campaign this worker wrote last (or holds) isn't read.

        Its cached state is folded and written speculatively (see CampaignWrite): Redis refuses
        the write if the version moved on, an outbox is pending or an event was a duplicate,
        and the campaign is then loaded and folded again. That saves a round trip per batch.
        """
        stored: list[StoredCampaign | None] = []
        to_load: list[CampaignEvents] = []
        for campaign in todo:
            sound = held.get(campaign.ref)
            if sound is not None:
                stored.append(StoredCampaign(None, sound.version, [], 0, set(), speculative=True))
                continue
            written = self._states.written(campaign.ref, book.windows)
            if written is not None:
                blob, version = written
                stored.append(StoredCampaign(blob, version, [], 0, set(), speculative=True))
            else:
                stored.append(None)
                to_load.append(campaign)
        if not to_load:
            return [s for s in stored if s is not None]
        loaded = iter(await self._store.load_campaigns([ask(campaign) for campaign in to_load]))
        return [s if s is not None else next(loaded) for s in stored]

    def _periodic_health(
        self, ref: CampaignRef, state: CampaignState, *, decided: bool
    ) -> OutboxMessage | None:
        """A snapshot at most every `health_min_interval_s` per campaign (wall-clock paced)."""
        if not self._publish_periodic_health:
            return None
        now = self._monotonic()
        last = self._last_health.get(ref)
        self_paced = last is not None and now - last < self._health_interval_s
        if decided or not self_paced:
            self._last_health[ref] = now
        if decided or self_paced:
            return None
        return health_snapshot(ref.tenant_id, ref.campaign_id, state, status_changed=False)

    async def recover_outboxes(self, unpublished_for_s: float = 0.0) -> int:
        """Publish outboxes left by a crash (at start-up and now and then); returns how many.

        Only those unpublished for `unpublished_for_s` (see `OutboxDelivery.recover`).
        """
        return await self._outboxes.recover(unpublished_for_s)


def _both(first: asyncio.Future[None] | None, second: asyncio.Future[None]) -> asyncio.Future[None]:
    """A future done once both are (failing as the first of them that fails)."""
    if first is None:
        return second

    async def both() -> None:
        await first
        await second

    return asyncio.ensure_future(both())
