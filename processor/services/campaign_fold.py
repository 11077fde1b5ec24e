"""Folding one campaign's events into its state: replays and duplicates skipped, decisions made.

No I/O: the caller loads the stored campaign, and writes (or holds) the folded state and outbox.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from processor.domain.campaign_state import EventFacts, PauseDecision
from processor.domain.detector import observe_run
from processor.domain.windows import LIFETIME_COUNTERS
from processor.ports.detection_store import CampaignAsk, CampaignWrite
from processor.services.outbox import health_snapshot, pause_command

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from processor.domain.campaign_state import CampaignState, Decision
    from processor.domain.policy import Policy, PolicyBook
    from processor.domain.windows import WindowSpec
    from processor.ports.detection_store import CampaignRef, OutboxMessage, StoredCampaign

Item = tuple[EventFacts, bytes, int]
"""An event to fold: its facts, its id's digest and its day (for the digest sets)."""

NO_TALLY: tuple[int, ...] = (0,) * LIFETIME_COUNTERS
"""A per-counter tally of nothing (indexed by `processor.domain.windows.Counter`)."""


def add_tallies(a: tuple[int, ...], b: tuple[int, ...], sign: int = 1) -> tuple[int, ...]:
    """`a + sign * b`, counter by counter."""
    return tuple(x + sign * y for x, y in zip(a, b, strict=True))


@dataclass(frozen=True, slots=True)
class Counts:
    """What folding some events counted."""

    applied: int = 0
    duplicates: int = 0
    replayed: int = 0
    late: int = 0
    applied_by_counter: tuple[int, ...] = NO_TALLY
    """`applied`, split by the counter each event incremented (indexed by Counter)."""

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.applied + other.applied,
            self.duplicates + other.duplicates,
            self.replayed + other.replayed,
            self.late + other.late,
            add_tallies(self.applied_by_counter, other.applied_by_counter),
        )

    def __sub__(self, other: Counts) -> Counts:
        return Counts(
            self.applied - other.applied,
            self.duplicates - other.duplicates,
            self.replayed - other.replayed,
            self.late - other.late,
            add_tallies(self.applied_by_counter, other.applied_by_counter, -1),
        )


@dataclass(slots=True)
class CampaignEvents:
    """A campaign's events to apply, in order.

    The first `held_events` were folded by earlier batches and are held in memory, not yet
    written (see `processor.services.write_behind`); earlier reports `counted` them.
    """

    ref: CampaignRef
    events: list[Item]
    held_events: int = 0
    counted: Counts = Counts()


@dataclass(slots=True)
class Held:
    """A campaign held in memory by `write_behind` (see there): what its write will need."""

    state: CampaignState | None
    """None when a batch broke off mid-fold: the state is rebuilt from the store and `events`."""
    version: int
    """The stored version the held state was folded from."""
    windows: tuple[WindowSpec, ...]
    events: list[Item]
    """Every event folded since the stored `version`, in order."""
    digests_by_day: dict[int, list[bytes]]
    seen: set[bytes]
    counted: Counts


@dataclass(slots=True)
class Folded:
    """A campaign's events folded into its state, ready to be written."""

    campaign: CampaignEvents
    state: CampaignState
    write: CampaignWrite
    seen: set[bytes]
    """The digests of every event folded since the stored version."""
    counted: Counts
    """What earlier reports counted of the events folded here."""
    applied: int = 0
    duplicates: int = 0
    replayed: int = 0
    late: int = 0
    applied_by_counter: list[int] = field(default_factory=lambda: list(NO_TALLY))

    def counts(self) -> Counts:
        """What this fold counted."""
        return Counts(
            self.applied,
            self.duplicates,
            self.replayed,
            self.late,
            tuple(self.applied_by_counter),
        )

    def uncounted(self) -> Counts:
        """What this fold counted that no report has counted yet."""
        return self.counts() - self.counted


def ask(campaign: CampaignEvents) -> CampaignAsk:
    """What to load for a campaign: its state, and which of the batch's digests it has seen."""
    by_day: dict[int, list[bytes]] = {}
    for _facts, digest, day in campaign.events:
        by_day.setdefault(day, []).append(digest)
    return CampaignAsk(campaign.ref, by_day)


def fold(
    campaign: CampaignEvents,
    loaded: StoredCampaign,
    book: PolicyBook,
    decode: Callable[[CampaignRef, bytes | None, tuple[WindowSpec, ...]], CampaignState],
    held: Held | None,
) -> Folded:
    """Apply a campaign's events in order, skipping replayed offsets and duplicate ids.

    With `held` (its state sound), only the events after the held ones are folded, onto it.
    """
    ref = campaign.ref
    policy = book.for_campaign(ref.tenant_id, ref.campaign_id)
    z = policy.z
    items: Iterable[Item]
    if held is not None and held.state is not None:
        state = held.state
        items = itertools.islice(campaign.events, campaign.held_events, None)
        write = CampaignWrite(ref, held.version, b"", held.digests_by_day, [], speculative=True)
        folded = Folded(campaign, state, write, held.seen, Counts())
    else:
        state, items = decode(ref, loaded.blob, book.windows), campaign.events
        write = CampaignWrite(ref, loaded.version, b"", {}, [], speculative=loaded.speculative)
        folded = Folded(campaign, state, write, set(), campaign.counted)
    late_before = state.windows.late_events
    batch_seen, stored_seen, new_digests = folded.seen, loaded.seen, write.new_digests_by_day
    run: list[EventFacts] = []
    tally = folded.applied_by_counter

    def observe_stretch() -> None:
        for decision in observe_run(state, run, policy, z):
            write.outbox.append(decision_message(ref, decision, state, policy))
        folded.applied += len(run)
        for facts in run:  # the per-type metric's tally: one list index per applied event
            tally[facts.counter] += 1
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


def decision_message(
    ref: CampaignRef, decision: Decision, state: CampaignState, policy: Policy
) -> OutboxMessage:
    """The message a decision publishes: its pause command, or a status-change snapshot."""
    if isinstance(decision, PauseDecision):
        return pause_command(ref.tenant_id, ref.campaign_id, decision, policy)
    # A status change is reported with the counts as they stand at that very event.
    return health_snapshot(ref.tenant_id, ref.campaign_id, state, status_changed=True)
