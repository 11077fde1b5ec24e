"""Unit tests of the resume filter rules and the recipient-set stream."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from processor.domain.contact_state import MAX_COUNTED_SENDS, ContactState
from processor.domain.recipients import (
    Candidate,
    FilterRules,
    RecipientSetAccumulator,
    exclusion_reason,
)
from schemas.audience import ConsentState
from schemas.events import EventType, Recipient
from schemas.resume import ExclusionReason
from tests.unit.domain.contact_support import Op, apply_all, at, unengaged

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

S = ContactState
X = ExclusionReason
GRANTED, REVOKED = ConsentState.GRANTED, ConsentState.REVOKED
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NAIVE = datetime(2025, 1, 1)  # noqa: DTZ001  # naive on purpose, to be refused
DEFAULT = FilterRules()
EXPLICIT = FilterRules(require_explicit_consent=True)


# --- filter rules -----------------------------------------------------------------------------


SIX_MONTHS = timedelta(weeks=26)
STALE = NOW - SIX_MONTHS - timedelta(seconds=1)
WEEKLY = FilterRules(stale_after=timedelta(weeks=1))
THREE_SENDS = FilterRules(unengaged_never_engaged_sends=3)
MOST_SENDS = FilterRules(unengaged_never_engaged_sends=MAX_COUNTED_SENDS)


@pytest.mark.parametrize(
    ("state", "rules", "expected"),
    [
        (S(), DEFAULT, None),
        (S(), EXPLICIT, X.NO_CONSENT),
        (S(consent=GRANTED), EXPLICIT, None),
        (S(consent=REVOKED), DEFAULT, X.NO_CONSENT),
        (S(consent=REVOKED), EXPLICIT, X.NO_CONSENT),
        (S(consent=GRANTED, deleted=True), DEFAULT, X.NO_CONSENT),
        (S(unsubscribed=True), DEFAULT, X.UNSUBSCRIBED),
        (S(hard_bounced=True), DEFAULT, X.HARD_BOUNCED),
        (S(complained=True), DEFAULT, X.COMPLAINED),
        (S(last_marketing_send_at=NOW - SIX_MONTHS), DEFAULT, None),
        (S(last_marketing_send_at=STALE), DEFAULT, X.NOT_EMAILED_RECENTLY),
        (
            S(last_marketing_send_at=NOW - timedelta(days=8)),
            WEEKLY,
            X.NOT_EMAILED_RECENTLY,
        ),
        (unengaged(10), DEFAULT, None),
        (unengaged(11), DEFAULT, X.UNENGAGED),
        (unengaged(11, engaged_before=True), DEFAULT, None),
        (unengaged(15, engaged_before=True), DEFAULT, None),
        (unengaged(16, engaged_before=True), DEFAULT, X.UNENGAGED),
        (unengaged(3), THREE_SENDS, X.UNENGAGED),
        (unengaged(20), MOST_SENDS, X.UNENGAGED),
        (unengaged(19), MOST_SENDS, None),
    ],
)
def test_exclusion_rules(state: ContactState, rules: FilterRules, expected: X | None) -> None:
    """Each rule excludes exactly past its documented boundary, in either consent mode."""
    assert exclusion_reason(state, rules, NOW) == expected


@pytest.mark.parametrize(
    ("engaged_first", "sends", "expected"),
    [
        (False, 10, None),
        (False, 11, X.UNENGAGED),
        (True, 15, None),
        (True, 16, X.UNENGAGED),
    ],
)
def test_unengaged_boundary_counted_from_sends(
    *, engaged_first: bool, sends: int, expected: X | None
) -> None:
    """The 11th unengaged send (16th after an engagement) excludes; the one before does not."""
    opens: list[Op] = [(EventType.OPEN, None, at(0))] if engaged_first else []
    sent: list[Op] = [(EventType.SENT, None, at(60 * (n + 1))) for n in range(sends)]
    assert exclusion_reason(apply_all(opens + sent), DEFAULT, NOW) == expected


TRIGGERS: dict[ExclusionReason, dict[str, Any]] = {
    X.NO_CONSENT: {"consent": ConsentState.REVOKED},
    X.UNSUBSCRIBED: {"unsubscribed": True},
    X.HARD_BOUNCED: {"hard_bounced": True},
    X.COMPLAINED: {"complained": True},
    X.NOT_EMAILED_RECENTLY: {"last_marketing_send_at": NOW - timedelta(weeks=27)},
    X.UNENGAGED: {
        "last_marketing_send_at": NOW - timedelta(weeks=27),
        "recent_sends": tuple(NOW - timedelta(weeks=27 + n) for n in range(11)),
    },
}


@pytest.mark.parametrize(("first", "second"), list(itertools.combinations(ExclusionReason, 2)))
def test_precedence_follows_the_enum_order(first: ExclusionReason, second: ExclusionReason) -> None:
    """When two reasons apply, the one listed earlier in ExclusionReason is reported."""
    state = ContactState(**{**TRIGGERS[first], **TRIGGERS[second]})
    assert exclusion_reason(state, DEFAULT, NOW) is first


# --- recipient-set accumulator ----------------------------------------------------------------


def recipient(n: int) -> Recipient:
    """Recipient number `n`."""
    return Recipient(contact_id=f"c{n}", address=f"c{n}@example.com")


candidate_states = st.sampled_from([S(), *(S(**fields) for fields in TRIGGERS.values())])
candidate_lists = st.lists(st.tuples(candidate_states, st.booleans()), max_size=40).map(
    lambda rows: [
        Candidate(recipient(n), state, attempted) for n, (state, attempted) in enumerate(rows)
    ]
)


def expected_kept(candidates: list[Candidate]) -> list[Recipient]:
    """The kept recipients, recomputed one by one from the rules."""
    return [
        c.recipient
        for c in candidates
        if not c.attempted and exclusion_reason(c.state, DEFAULT, NOW) is None
    ]


@given(candidate_lists, st.integers(min_value=1, max_value=7))
def test_chunks_concatenate_to_the_kept_recipients(candidates: list[Candidate], size: int) -> None:
    """Chunks are full but the last, indexed in order, and together list the kept in order."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=size)
    chunks = list(accumulator.process(candidates))
    assert [r for chunk in chunks for r in chunk.recipients] == expected_kept(candidates)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    assert all(len(chunk.recipients) == size for chunk in chunks[:-1])
    assert all(1 <= len(chunk.recipients) <= size for chunk in chunks)
    assert accumulator.summary().chunk_count == len(chunks)


@given(candidate_lists)
@example([])
def test_summary_counts_and_checksum(candidates: list[Candidate]) -> None:
    """The checksum is sha256 over the kept ids plus newlines; each recipient is counted once."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=3)
    list(accumulator.process(candidates))
    summary = accumulator.summary()
    kept = expected_kept(candidates)
    assert (
        summary.checksum
        == hashlib.sha256("".join(f"{r.contact_id}\n" for r in kept).encode()).hexdigest()
    )
    assert summary.total_recipients == len(kept)
    assert summary.already_attempted == sum(c.attempted for c in candidates)
    assert summary.audience_size == len(candidates)
    assert summary.total_recipients + summary.already_attempted + sum(
        summary.excluded.values()
    ) == len(candidates)
    assert all(summary.excluded.values())


def test_summary_of_a_small_set() -> None:
    """A worked example: attempted, excluded and kept recipients land in the right totals."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=2)
    candidates = [
        Candidate(recipient(1), S(), attempted=False),
        Candidate(recipient(2), S(unsubscribed=True, hard_bounced=True), attempted=False),
        Candidate(recipient(3), S(unsubscribed=True), attempted=True),
        Candidate(recipient(4), S(hard_bounced=True), attempted=False),
        Candidate(recipient(5), S(), attempted=False),
        Candidate(recipient(6), S(), attempted=False),
    ]
    chunks = list(accumulator.process(candidates))
    assert [[r.contact_id for r in chunk.recipients] for chunk in chunks] == [["c1", "c5"], ["c6"]]
    summary = accumulator.summary()
    assert summary.excluded == {ExclusionReason.UNSUBSCRIBED: 1, ExclusionReason.HARD_BOUNCED: 1}
    assert (summary.total_recipients, summary.already_attempted, summary.chunk_count) == (3, 1, 2)
    assert summary.checksum == hashlib.sha256(b"c1\nc5\nc6\n").hexdigest()


def test_chunks_stream_before_the_audience_ends() -> None:
    """A full chunk is handed over before the next recipient is read, so memory stays bounded."""
    read: list[int] = []
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=10)

    def audience() -> Iterator[Candidate]:
        for n in range(1_005):
            assert len(accumulator._pending) < 10
            read.append(n)
            yield Candidate(recipient(n), S(), attempted=False)

    for chunk in accumulator.process(audience()):
        assert len(read) == chunk.index * 10 + len(chunk.recipients)
    assert accumulator.summary().chunk_count == 101


@pytest.mark.parametrize(
    ("action", "error"),
    [
        (lambda a: a.summary(), "not finished"),
        (lambda a: (a.finish(), a.finish()), "already finished"),
        (
            lambda a: (a.finish(), a.add(recipient(1), S(), attempted=False)),
            "already finished",
        ),
    ],
)
def test_accumulator_enforces_its_lifecycle(
    action: Callable[[RecipientSetAccumulator], object], error: str
) -> None:
    """A summary needs a finished set, and a finished set takes no more recipients."""
    accumulator = RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=1)
    with pytest.raises(RuntimeError, match=error):
        action(accumulator)


@pytest.mark.parametrize(
    "call",
    [
        lambda: FilterRules(stale_after=timedelta(0)),
        lambda: FilterRules(unengaged_never_engaged_sends=0),
        lambda: FilterRules(unengaged_engaged_before_sends=0),
        lambda: FilterRules(unengaged_engaged_before_sends=MAX_COUNTED_SENDS + 1),
        lambda: exclusion_reason(S(), DEFAULT, NAIVE),
        lambda: RecipientSetAccumulator(rules=DEFAULT, now=NAIVE, chunk_size=1),
        lambda: RecipientSetAccumulator(rules=DEFAULT, now=NOW, chunk_size=0),
    ],
)
def test_bad_arguments_are_refused(call: Callable[[], object]) -> None:
    """Naive times, out-of-range counts and nonsensical rules or sizes are refused up front."""
    with pytest.raises(ValueError, match=r"must be"):
        call()
