"""Replay and backtest: the worker's detection over recorded events, without a cluster.

The very same DetectionService runs over JSON lines on an embedded store (or a real Redis),
printing what the worker would publish: pause commands and status-change health snapshots.
Lines carry no Kafka timestamp, so the worker's future-skew rule is checked against the
events around each one (`with_event_clock`).
"""

from __future__ import annotations

import collections
import json
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from processor.errors import InvalidInputError, PublishError
from processor.ports.detection_store import (
    CampaignRef,
    DetectionStore,
    InMemoryStore,
    OutboxMessage,
)
from processor.ports.records import FILE_TOPIC, RawRecord
from processor.services.detection import DetectionService
from processor.services.event_input import parse_with_time
from processor.services.replay_summary import Summary, render_table, summarize
from schemas.control import PauseCommand, PauseScope, read_control
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from processor.domain.policy import PolicyBook

REPLAY_BATCH = 2000
DEFAULT_MAX_FUTURE_SKEW_MS = 15 * 60_000
"""The worker's default `SENDGUARD_MAX_FUTURE_SKEW_S`; the CLI passes the configured one."""
CLOCK_LOOKAHEAD = 8
"""How many following events vouch for a jump in event time (see `with_event_clock`)."""


def replay_ttl_ms(book: PolicyBook) -> int:
    """How long a replay's store keeps states and event digests: twice the longest window.

    Enough for every window to slide over the events it counts and for a duplicate to be told
    apart; and the embedded store stays bounded by the windows, not by the events replayed.
    """
    return 2 * book.longest_window_ms


def embedded_store(book: PolicyBook) -> InMemoryStore:
    """The in-memory store a replay runs on when no Redis is given."""
    return InMemoryStore(seen_ttl_ms=replay_ttl_ms(book))


class OutputClosedError(PublishError):
    """Whoever read the decisions stopped reading (a closed pipe): the replay stops.

    A PublishError, so that detection lets it through rather than dead-lettering the record
    whose decision could not be printed.
    """


class PrintingPublisher:
    """Prints decisions as JSON lines (exactly the message values) and rejections to `errors`."""

    def __init__(self, out: TextIO, errors: TextIO, unit: str = "line") -> None:
        self._out = out
        self._errors = errors
        self._unit = unit
        self.decisions: list[OutboxMessage] = []
        self.rejected = 0

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Print each message on its stream; OutputClosedError if `out` was closed."""
        try:
            self._print(messages)
        except BrokenPipeError as exc:
            raise OutputClosedError("the output was closed") from exc

    def _print(self, messages: Sequence[OutboxMessage]) -> None:
        for message in messages:
            if message.role == TopicRole.DEAD_LETTER:
                self.rejected += 1
                letter = json.loads(message.value)
                number = (letter.get("source_offset") or 0) + 1
                self._errors.write(f"rejected {self._unit} {number}: {letter['error']}\n")
                continue
            self.decisions.append(message)
            self._out.write(message.value + "\n")
        self._out.flush()


def records_from_lines(lines: Iterable[str | bytes]) -> Iterator[RawRecord]:
    """One RawRecord per non-blank line; its offset is the 0-based line number."""
    for number, line in enumerate(lines):
        data = line.encode() if isinstance(line, str) else line
        if data.strip():
            yield RawRecord(FILE_TOPIC, 0, number, None, data.rstrip(b"\r\n"), None)


def with_event_clock(
    records: Iterable[RawRecord], max_future_skew_ms: int, lookahead: int = CLOCK_LOOKAHEAD
) -> Iterator[RawRecord]:
    """Each record without a timestamp stamped with the replay's event clock.

    The worker rejects an event stamped more than the allowed skew after its Kafka record
    (one far ahead would make every later event of its campaign late). A line has no such
    time; its stand-in is the later of the latest event accepted before it and the median of
    the `lookahead` events after it. So an event far ahead of both what came before and what
    follows is rejected as `future_event`, while a real jump (a quiet night in the file) is
    vouched for by the events after it. The last event is not judged: nothing follows that it
    could make late. Records that carry a timestamp keep it.
    """
    skew_ms = max_future_skew_ms
    pending: collections.deque[tuple[RawRecord, int | None]] = collections.deque()
    latest: int | None = None

    def release() -> RawRecord:
        nonlocal latest
        record, at_ms = pending.popleft()
        if at_ms is None or record.timestamp_ms is not None or skew_ms < 0:
            return record
        following = [t for _, t in pending if t is not None]
        if not following:  # the last event: there is nothing left for it to make late
            return record
        clock = statistics.median_low(following)
        if latest is not None:
            clock = max(clock, latest)
        if at_ms - clock <= skew_ms:
            latest = at_ms if latest is None else max(latest, at_ms)
        return record._replace(timestamp_ms=clock)

    for record in records:
        pending.append((record, _event_ms(record)))
        if len(pending) > lookahead:
            yield release()
    while pending:
        yield release()


def _event_ms(record: RawRecord) -> int | None:
    """The record's `occurred_at` in epoch ms, or None if it is no event (rejected later)."""
    try:
        return parse_with_time(record, -1)[1]
    except InvalidInputError:
        return None


@dataclass(slots=True)
class ReplayResult:
    """What a replay did."""

    events: int = 0
    applied: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: int = 0
    decisions: list[OutboxMessage] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)


async def replay(
    records: Iterable[RawRecord],
    *,
    store: DetectionStore,
    policy_book: Callable[[], PolicyBook],
    out: TextIO,
    errors: TextIO,
    progress: Callable[[int], object] = lambda _n: None,
    max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS,
    unit: str = "line",
    batch_size: int = REPLAY_BATCH,
) -> ReplayResult:
    """Run detection over `records` in batches; decisions are printed as they are made.

    The worker's rules apply, the future-skew rule included (`with_event_clock`). A rejected
    record is reported as "rejected <unit> <offset + 1>: <why>".
    """
    publisher = PrintingPublisher(out, errors, unit)
    service = DetectionService(
        store,
        publisher,
        policy_book,
        publish_periodic_health=False,
        max_future_skew_ms=max_future_skew_ms,
    )
    result = ReplayResult()
    seen: set[CampaignRef] = set()
    batch: list[RawRecord] = []

    async def flush() -> None:
        report = await service.apply_isolating(batch)
        result.events += len(batch)
        result.applied += report.applied
        result.duplicates += report.duplicates
        result.late += report.late
        seen.update(report.campaigns)
        progress(len(batch))
        batch.clear()

    for record in with_event_clock(records, max_future_skew_ms):
        batch.append(record)
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()
    result.rejected = publisher.rejected
    result.decisions = publisher.decisions
    refs = sorted(seen, key=_ref_order)
    result.summary = await summarize(store, refs, publisher.decisions, policy_book())
    return result


def _ref_order(ref: CampaignRef) -> tuple[str, str]:
    return ref.tenant_id, ref.campaign_id


@dataclass(frozen=True, slots=True)
class PauseDifference:
    """A campaign pause that two policies decided differently (None: not paused)."""

    tenant_id: str
    campaign_id: str
    episode: int
    first: str | None
    second: str | None


def _campaign_pauses(result: ReplayResult) -> dict[tuple[str, str, int], str]:
    pauses = {}
    for message in result.decisions:
        if message.role != TopicRole.CONTROL:
            continue
        command = read_control(message.value)
        if (
            not isinstance(command, PauseCommand)
            or command.scope is not PauseScope.CAMPAIGN
            or command.campaign_id is None
        ):
            continue
        evidence = command.evidence
        rule = f"{evidence.metric.value}/{evidence.window}" if evidence else "-"
        decided = command.model_dump(mode="json", include={"decided_at"})["decided_at"]
        pauses[command.tenant_id, command.campaign_id, command.episode] = f"{decided} {rule}"
    return pauses


def pause_differences(first: ReplayResult, second: ReplayResult) -> list[PauseDifference]:
    """Campaign pauses (by episode) that differ in time or rule between two replays."""
    mine, theirs = _campaign_pauses(first), _campaign_pauses(second)
    return [
        PauseDifference(*key, mine.get(key), theirs.get(key))
        for key in sorted(mine.keys() | theirs.keys())
        if mine.get(key) != theirs.get(key)
    ]


def render_differences(differences: list[PauseDifference], first: str, second: str) -> str:
    """The differing pauses side by side, one campaign episode per line."""
    rows = [("tenant", "campaign", "episode", first, second)]
    rows.extend(
        (d.tenant_id, d.campaign_id, str(d.episode), d.first or "-", d.second or "-")
        for d in differences
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"{len(differences)} campaign pauses differ")
    return "\n".join(lines)


def render_summary(result: ReplayResult) -> str:
    """The summary table of the campaigns and tenant pauses, and the replay's totals."""
    counts = (
        f"{result.events} events: {result.applied} applied, {result.duplicates} duplicates, "
        f"{result.late} late, {result.rejected} rejected"
    )
    return render_table(result.summary, counts)
