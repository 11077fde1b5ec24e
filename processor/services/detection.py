"""The detection use case: apply a batch of delivery-event records and publish what it decides.

Idempotent under Kafka's at-least-once delivery: each campaign's state carries the last applied
offset per partition and the digests of applied event ids, and is written compare-and-set, so a
replayed or redelivered record is never counted twice. Decisions are stored with the state
(an outbox) before they are published, so a crash between the two loses nothing. A campaign
that decided nothing may be held in memory and written a little later (write-behind); its
batches' `landing` waits for that write, so their offsets are committed only after it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from processor.domain.codec import StateDecodeError, decode_state, encode_state
from processor.domain.detector import (
    CampaignState,
    Decision,
    EventFacts,
    PauseDecision,
    counter_for,
    observe_run,
)
from processor.errors import (
    WRITE_ATTEMPTS,
    InvalidInputError,
    PublishError,
    StoreUnavailableError,
    WriteConflictError,
)
from processor.ports.detection_store import (
    CampaignAsk,
    CampaignRef,
    CampaignWrite,
    DetectionStore,
    OutboxMessage,
    StoredCampaign,
)
from processor.ports.records import RawRecord, to_ms
from processor.services.event_input import event_digest, parse_batch
from processor.services.outbox import (
    dead_letter,
    health_snapshot,
    pause_command,
    tenant_pause_command,
)
from schemas.base import campaign_key
from schemas.control import PauseCommand, read_control
from schemas.health import CampaignStatus
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from processor.domain.policy import Policy, PolicyBook
    from processor.domain.windows import WindowSpec
    from processor.ports.contact_store import ContactWrite
    from processor.ports.publishing import ContactSink, Publisher
    from processor.ports.records import EventView

log = logging.getLogger(__name__)

DAY_MS = 86_400_000


@dataclass(slots=True)
class BatchReport:
    """What one batch did (for metrics, logs and tests)."""

    applied: int = 0
    duplicates: int = 0
    replayed: int = 0
    late: int = 0
    dead_lettered: int = 0
    pauses: list[OutboxMessage] = field(default_factory=list)
    published: list[OutboxMessage] = field(default_factory=list)
    campaigns: set[CampaignRef] = field(default_factory=set)
    landing: asyncio.Future[None] | None = None
    """The batch's contact merges, still being written after `apply` returned (None if there
    are none). The batch's offsets may be committed only once it is done; if it fails, it
    raises StoreUnavailableError and the batch must be read again."""


@dataclass(frozen=True, slots=True)
class _CachedState:
    """A campaign's state as this worker last wrote it, and the blob it wrote."""

    blob: bytes
    version: int
    windows: tuple[WindowSpec, ...]
    state: CampaignState


_Item = tuple[EventFacts, bytes, int]
"""An event to fold: its facts, its id's digest and its day (for the digest sets)."""


@dataclass(frozen=True, slots=True)
class _Counts:
    applied: int = 0
    duplicates: int = 0
    replayed: int = 0
    late: int = 0

    def __add__(self, other: _Counts) -> _Counts:
        return _Counts(
            self.applied + other.applied,
            self.duplicates + other.duplicates,
            self.replayed + other.replayed,
            self.late + other.late,
        )

    def __sub__(self, other: _Counts) -> _Counts:
        return _Counts(
            self.applied - other.applied,
            self.duplicates - other.duplicates,
            self.replayed - other.replayed,
            self.late - other.late,
        )


@dataclass(slots=True)
class _Pending:
    """A campaign's events to apply.

    The first `prior` were folded by earlier batches and are held in memory, not yet written;
    earlier reports counted them (`reported`).
    """

    ref: CampaignRef
    items: list[_Item]
    prior: int = 0
    reported: _Counts = _Counts()


@dataclass(slots=True)
class _Unwritten:
    """A campaign folded in memory and not written yet: what its write will need."""

    state: CampaignState | None
    """None when a batch broke off mid-fold: the state is rebuilt from the store and `items`."""
    version: int
    windows: tuple[WindowSpec, ...]
    items: list[_Item]
    """Every event folded since the stored `version`, in order."""
    digests_by_day: dict[int, list[bytes]]
    seen: set[bytes]
    reported: _Counts


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
        # Decoded states of campaigns this worker committed last, least recently used first.
        # Redis stays the truth: one is used only while the stored blob is still the one it
        # wrote, and it is taken out while folded, so a failed write never leaves it changed.
        self._states: OrderedDict[CampaignRef, _CachedState] = OrderedDict()
        self._state_cache_campaigns = state_cache_campaigns
        self._landing: asyncio.Future[None] | None = None
        # Write-behind: campaigns that decided nothing are folded in memory for up to
        # `state_write_behind_s`, then written together; a decision writes its campaign at once.
        # That saves each held campaign its encode and write in most batches.
        self._write_behind_s = state_write_behind_s
        self._unwritten: dict[CampaignRef, _Unwritten] = {}
        self._unwritten_since = 0.0
        self._written: asyncio.Future[None] | None = None

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
        pending: dict[tuple[str, str], _Pending] = {}
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
            )
            events.append(event)
            key = (event.tenant_id, event.campaign_id)
            group = pending.get(key)
            if group is None:
                group = pending[key] = _Pending(CampaignRef(*key), [])
            group.items.append((facts, event_digest(event_id), at_ms // DAY_MS))
        if dead:
            await self._publisher.publish(dead)
            report.dead_lettered = len(dead)
        await self._apply_groups(pending, report, write_all=self._write_due())
        if self._contacts is not None and events:
            # After the decisions are out, so the contacts' CPU never delays a pause. Built
            # here, so a record that breaks it is isolated like any other; written while the
            # next batch is read and folded (`landing`). Merges are idempotent and get every
            # event of the batch (duplicates too): a crash before one lands replays the batch
            # harmlessly.
            report.landing = self._land_in_order(self._contacts.prepare_events(events))
        if self._written is not None:
            # Shielded: a commit cancelled while it waits must not cancel the others' wait.
            report.landing = _both(report.landing, asyncio.shield(self._written))
        return report

    async def write_held_states(self, *, due_only: bool = False) -> None:
        """Write the campaign states held in memory (write-behind); all, or only once due.

        Called when no batch came for a while, and before stopping: the held batches'
        `landing` completes once their campaigns are written.
        """
        if self._unwritten and (not due_only or self._write_due()):
            await self._apply_groups({}, BatchReport(), write_all=True)

    def _write_due(self) -> bool:
        if self._write_behind_s <= 0:
            return True
        waited = self._monotonic() - self._unwritten_since
        return bool(self._unwritten) and waited >= self._write_behind_s

    async def _apply_groups(
        self, pending: dict[tuple[str, str], _Pending], report: BatchReport, *, write_all: bool
    ) -> None:
        if write_all:
            for ref in self._unwritten:
                pending.setdefault((ref.tenant_id, ref.campaign_id), _Pending(ref, []))
        try:
            await self._apply_all_campaigns(list(pending.values()), report, write_all=write_all)
        except (StoreUnavailableError, PublishError) as exc:
            # The worker stops and re-reads every batch not committed: what it held is moot,
            # and the held batches must not be committed.
            self._unwritten.clear()
            if self._written is not None:
                self._written.set_exception(
                    StoreUnavailableError(f"campaign states held in memory not written: {exc}")
                )
                self._written = None
            raise
        if self._written is not None and not self._unwritten:
            self._written.set_result(None)
            self._written = None

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

    async def _apply_all_campaigns(
        self, todo: list[_Pending], report: BatchReport, *, write_all: bool
    ) -> None:
        for _attempt in range(WRITE_ATTEMPTS):
            if not todo:
                return
            todo = await self._apply_campaigns(todo, report, write_all=write_all)
        if todo:
            refs = ", ".join(campaign_key(p.ref.tenant_id, p.ref.campaign_id) for p in todo)
            message = f"campaign state kept changing under us (another worker?): {refs}"
            raise WriteConflictError(message)

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
                return BatchReport(dead_lettered=1)
        report = BatchReport()
        for record in records:
            single = await self.apply_isolating([record])
            report.applied += single.applied
            report.duplicates += single.duplicates
            report.replayed += single.replayed
            report.late += single.late
            report.dead_lettered += single.dead_lettered
            report.pauses.extend(single.pauses)
            report.campaigns |= single.campaigns
            report.published.extend(single.published)
            if single.landing is not None:  # each lands after the one before
                report.landing = single.landing
        return report

    async def _apply_campaigns(
        self, todo: list[_Pending], report: BatchReport, *, write_all: bool
    ) -> list[_Pending]:
        book = self._policy_book()
        carried: dict[CampaignRef, _Unwritten] = {}
        todo = [self._take_unwritten(group, book, carried) for group in todo]
        try:
            return await self._fold_and_write(todo, carried, report, book, write_all=write_all)
        except BaseException:
            # Nothing held may be lost with a batch that broke off: each campaign keeps the
            # events of earlier batches, to be folded again from the store; this batch's own
            # are taken out (the caller applies them again, record by record).
            for group in todo:
                if group.prior:
                    self._unwritten[group.ref] = _Unwritten(
                        None, 0, book.windows, group.items[: group.prior], {}, set(), group.reported
                    )
                else:
                    self._unwritten.pop(group.ref, None)
            raise

    def _take_unwritten(
        self, group: _Pending, book: PolicyBook, carried: dict[CampaignRef, _Unwritten]
    ) -> _Pending:
        """Join a campaign's held events to the batch's; its held state is folded on if sound."""
        held = self._unwritten.pop(group.ref, None)
        if held is None:
            return group
        prior = len(held.items)
        held.items.extend(group.items)
        if held.state is not None and held.windows == book.windows:
            carried[group.ref] = held
        return _Pending(group.ref, held.items, prior, held.reported)

    async def _fold_and_write(
        self,
        todo: list[_Pending],
        carried: dict[CampaignRef, _Unwritten],
        report: BatchReport,
        book: PolicyBook,
        *,
        write_all: bool,
    ) -> list[_Pending]:
        stored = await self._load(todo, book, carried)
        for group, loaded in zip(todo, stored, strict=True):
            if loaded.outbox:
                await self._deliver_outbox(group.ref, loaded.outbox, loaded.outbox_version)
        folded = [
            _fold(group, loaded, book, self._decode, carried.get(group.ref))
            for group, loaded in zip(todo, stored, strict=True)
        ]
        held: list[_Folded] = []
        writing: list[_Folded] = []
        for f in folded:
            (writing if write_all or f.write.outbox else held).append(f)
        for f in writing:
            f.write.blob = encode_state(f.state)
            f.write.paused = f.state.status is CampaignStatus.PAUSED
        results = await self._store.commit_campaigns([f.write for f in writing]) if writing else []
        retry = [f.group for f, written in zip(writing, results, strict=True) if not written]
        done = [f for f, written in zip(writing, results, strict=True) if written]
        for f in done:
            self._remember(f.group.ref, f.write, f.state, book)
        for f in held:
            self._hold(f, book)
        decided = [m for f in done for m in f.write.outbox]
        periodic = self._report(done + held, report)
        if decided or periodic:
            # One acknowledged send for the batch: decisions first, then routine snapshots.
            await self._publisher.publish(decided + periodic)
        await self._after_publish_all(
            [
                (f.group.ref, f.write.outbox, f.write.expected_version + 1)
                for f in done
                if f.write.outbox
            ]
        )
        report.published.extend(decided + periodic)
        return retry

    def _report(self, applied: list[_Folded], report: BatchReport) -> list[OutboxMessage]:
        """Count the applied folds into `report`; the routine health snapshots now due."""
        periodic: list[OutboxMessage] = []
        for f in applied:
            report.campaigns.add(f.group.ref)
            counts = f.counts() - f.already
            report.applied += counts.applied
            report.duplicates += counts.duplicates
            report.replayed += counts.replayed
            report.late += counts.late
            if f.write.outbox:
                report.pauses.extend(m for m in f.write.outbox if m.role == TopicRole.CONTROL)
            message = self._periodic_health(f.group.ref, f.state, decided=bool(f.write.outbox))
            if message is not None:
                periodic.append(message)
        return periodic

    def _hold(self, folded: _Folded, book: PolicyBook) -> None:
        """Keep a campaign folded in memory, to be written within `state_write_behind_s`."""
        if self._written is None:  # the first held since all were written: the wait starts
            self._unwritten_since = self._monotonic()
            self._written = asyncio.get_running_loop().create_future()
        group, write = folded.group, folded.write
        self._unwritten[group.ref] = _Unwritten(
            folded.state,
            write.expected_version,
            book.windows,
            group.items,
            write.new_digests_by_day,
            folded.seen,
            group.reported + folded.counts() - folded.already,
        )

    async def _load(
        self, todo: list[_Pending], book: PolicyBook, carried: dict[CampaignRef, _Unwritten]
    ) -> list[StoredCampaign]:
        """Stored states of `todo`; a campaign this worker wrote last (or holds) isn't read.

        Its cached state is folded and written speculatively (see CampaignWrite): Redis refuses
        the write if the version moved on, an outbox is pending or an event was a duplicate,
        and the campaign is then loaded and folded again. That saves a round trip per batch.
        """
        stored: list[StoredCampaign | None] = []
        to_load: list[_Pending] = []
        for group in todo:
            held = carried.get(group.ref)
            if held is not None:
                stored.append(StoredCampaign(None, held.version, [], 0, set(), speculative=True))
                continue
            cached = self._states.get(group.ref)
            if cached is not None and cached.windows == book.windows:
                own = StoredCampaign(cached.blob, cached.version, [], 0, set(), speculative=True)
                stored.append(own)
            else:
                stored.append(None)
                to_load.append(group)
        if not to_load:
            return [s for s in stored if s is not None]
        loaded = iter(await self._store.load_campaigns([_ask(group) for group in to_load]))
        return [s if s is not None else next(loaded) for s in stored]

    def _decode(self, ref: CampaignRef, blob: bytes | None, book: PolicyBook) -> CampaignState:
        cached = self._states.pop(ref, None)
        if (
            cached is not None
            and blob is not None
            and cached.blob == blob
            and cached.windows == book.windows
        ):
            return cached.state
        if blob is None:
            return CampaignState.fresh(book.windows)
        try:
            return decode_state(blob, book.windows)
        except StateDecodeError:
            log.exception(
                "corrupt campaign state, starting afresh",
                extra={"tenant_id": ref.tenant_id, "campaign_id": ref.campaign_id},
            )
            return CampaignState.fresh(book.windows)

    def _remember(
        self, ref: CampaignRef, write: CampaignWrite, state: CampaignState, book: PolicyBook
    ) -> None:
        if self._state_cache_campaigns <= 0:
            return
        version = write.expected_version + 1
        self._states[ref] = _CachedState(write.blob, version, book.windows, state)
        self._states.move_to_end(ref)
        while len(self._states) > self._state_cache_campaigns:
            self._states.popitem(last=False)

    async def _deliver_outbox(
        self, ref: CampaignRef, outbox: list[OutboxMessage], version: int
    ) -> None:
        """Publish a campaign's decided messages, escalate its pauses, then forget them."""
        await self._publisher.publish(outbox)
        await self._after_publish_all([(ref, outbox, version)])

    async def _after_publish_all(
        self, published: list[tuple[CampaignRef, list[OutboxMessage], int]]
    ) -> None:
        """Escalate the published pauses in event-time order, then forget the outboxes.

        The order makes tenant escalation independent of how events were cut into batches.
        """
        pauses: list[tuple[int, CampaignRef, PauseCommand]] = []
        for ref, outbox, _ in published:
            for message in outbox:
                if message.role == TopicRole.CONTROL:
                    command = read_control(message.value)
                    if isinstance(command, PauseCommand):
                        pauses.append((to_ms(command.decided_at), ref, command))
        pauses.sort(key=lambda p: (p[0], p[1].tenant_id, p[1].campaign_id))
        for at_ms, ref, command in pauses:
            await self._escalate(ref, command.episode, at_ms)
        for ref, _, version in published:
            await self._store.clear_outbox(ref, version)

    async def _escalate(self, ref: CampaignRef, episode: int, at_ms: int) -> None:
        book = self._policy_book()
        policy = book.for_tenant(ref.tenant_id)
        escalation = await self._store.record_campaign_pause(
            ref.tenant_id,
            f"{ref.campaign_id}#{episode}",
            at_ms,
            policy.escalation.campaign_pauses,
            policy.escalation.within_ms,
        )
        if escalation is None:
            return
        message = tenant_pause_command(ref.tenant_id, escalation, at_ms, policy)
        await self._publisher.publish([message])
        await self._store.confirm_tenant_pause(ref.tenant_id, escalation.episode)
        log.warning(
            "tenant paused",
            extra={"tenant_id": ref.tenant_id, "episode": escalation.episode},
        )

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

        Only those unpublished for `unpublished_for_s`: the worker that writes an outbox
        publishes it within milliseconds, and a sweep (of any worker) taking it meanwhile would
        publish the same command twice.
        """
        refs = await self._store.campaigns_with_outbox(round(unpublished_for_s * 1000))
        if not refs:
            return 0
        stored = await self._store.load_campaigns([CampaignAsk(ref) for ref in refs])
        recovered = 0
        for ref, loaded in zip(refs, stored, strict=True):
            if loaded.outbox:
                await self._deliver_outbox(ref, loaded.outbox, loaded.outbox_version)
                recovered += 1
            else:
                await self._store.clear_outbox(ref, loaded.outbox_version)
        return recovered


@dataclass(slots=True)
class _Folded:
    """A campaign's pending events folded into its state, ready to be written."""

    group: _Pending
    state: CampaignState
    write: CampaignWrite
    seen: set[bytes]
    """The digests of every event folded since the stored version."""
    already: _Counts
    """What earlier reports counted of the events folded here."""
    applied: int = 0
    duplicates: int = 0
    replayed: int = 0
    late: int = 0

    def counts(self) -> _Counts:
        """What this fold counted."""
        return _Counts(self.applied, self.duplicates, self.replayed, self.late)


def _ask(group: _Pending) -> CampaignAsk:
    """What to load for a campaign: its state, and which of the batch's digests it has seen."""
    by_day: dict[int, list[bytes]] = {}
    for _facts, digest, day in group.items:
        by_day.setdefault(day, []).append(digest)
    return CampaignAsk(group.ref, by_day)


def _fold(
    group: _Pending,
    loaded: StoredCampaign,
    book: PolicyBook,
    decode: Callable[[CampaignRef, bytes | None, PolicyBook], CampaignState],
    held: _Unwritten | None,
) -> _Folded:
    """Apply a campaign's events in order, skipping replayed offsets and duplicate ids.

    With `held`, only the events after the held ones are folded, onto the held state.
    """
    ref = group.ref
    policy = book.for_campaign(ref.tenant_id, ref.campaign_id)
    z = policy.z
    items: Iterable[_Item]
    if held is not None and held.state is not None:
        state, items = held.state, itertools.islice(group.items, group.prior, None)
        write = CampaignWrite(ref, held.version, b"", held.digests_by_day, [], speculative=True)
        folded = _Folded(group, state, write, held.seen, _Counts())
    else:
        state, items = decode(ref, loaded.blob, book), group.items
        write = CampaignWrite(ref, loaded.version, b"", {}, [], speculative=loaded.speculative)
        folded = _Folded(group, state, write, set(), group.reported)
    late_before = state.windows.late_events
    batch_seen, stored_seen, new_digests = folded.seen, loaded.seen, write.new_digests_by_day
    run: list[EventFacts] = []

    def observe_stretch() -> None:
        for decision in observe_run(state, run, policy, z):
            write.outbox.append(_decision_message(ref, decision, state, policy))
        folded.applied += len(run)
        run.clear()

    # Fresh events are observed in stretches, and their offsets noted then: a batch holds each
    # partition's records in offset order, so none of them can be a replay of another. A
    # duplicate ends a stretch, so that every snapshot counts the duplicates before it only.
    for facts, digest, day in items:
        if state.already_applied(facts.source, facts.offset):
            folded.replayed += 1
            continue
        if digest in stored_seen or digest in batch_seen:
            observe_stretch()
            folded.duplicates += 1
            state.duplicates += 1
            state.note_offset(facts.source, facts.offset)
            continue
        batch_seen.add(digest)
        if day in new_digests:
            new_digests[day].append(digest)
        else:
            new_digests[day] = [digest]
        run.append(facts)
    observe_stretch()
    folded.late = state.windows.late_events - late_before
    return folded


def _decision_message(
    ref: CampaignRef, decision: Decision, state: CampaignState, policy: Policy
) -> OutboxMessage:
    if isinstance(decision, PauseDecision):
        return pause_command(ref.tenant_id, ref.campaign_id, decision, policy)
    # A status change is reported with the counts as they stand at that very event.
    return health_snapshot(ref.tenant_id, ref.campaign_id, state, status_changed=True)


def _both(first: asyncio.Future[None] | None, second: asyncio.Future[None]) -> asyncio.Future[None]:
    """A future done once both are (failing as the first of them that fails)."""
    if first is None:
        return second

    async def both() -> None:
        await first
        await second

    return asyncio.ensure_future(both())
