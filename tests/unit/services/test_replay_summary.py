"""The replay summary: lifetime rates that never exceed 100%, why each pause, tenant pauses."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.domain.policy import PolicyBook
from processor.services.replay import (
    ReplayResult,
    embedded_store,
    records_from_lines,
    render_summary,
    replay,
)
from processor.services.replay_summary import ALL_CAMPAIGNS, Ratio
from tests.unit.cli.streams import campaign_lines, event


@pytest.mark.parametrize(
    ("count", "of", "shown"),
    [
        (0, 0, "-"),
        (0, 5, "0.00%"),
        (1, 4, "25.00%"),
        (4, 4, "100.00%"),
        (1, 0, "n/a"),
        (3, 2, "n/a"),
    ],
)
def test_a_ratio_is_shown_as_a_rate_only_when_it_is_one(count: int, of: int, shown: str) -> None:
    """More outcomes than the sends they answer is no rate: 'n/a', never over 100%."""
    assert Ratio(count, of).shown() == shown


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**6))
def test_a_shown_rate_never_exceeds_100_percent(count: int, of: int) -> None:
    """Whatever the counts, a rate is within [0, 1] or there is none."""
    rate = Ratio(count, of).rate
    assert rate is None or 0 <= rate <= 1


async def replayed(lines: list[str]) -> ReplayResult:
    """The replay of `lines` on the embedded store with the default policy."""
    book = PolicyBook()
    return await replay(
        records_from_lines(lines),
        store=embedded_store(book),
        policy_book=lambda: book,
        out=io.StringIO(),
        errors=io.StringIO(),
    )


async def test_a_tenant_pause_has_its_row_and_the_footer_counts_it() -> None:
    """Three bad lists pause their tenant: a row after its campaigns, counted in the footer."""
    lines = [line for c in "abcd" for line in campaign_lines(c, 300, bad=c != "d")]
    text = render_summary(await replayed(lines))
    rows = text.splitlines()
    tenant_row = next(row for row in rows if ALL_CAMPAIGNS in row)
    assert (
        rows.index(tenant_row) == rows.index(next(r for r in rows if r.startswith("acme    d"))) + 1
    )
    assert tenant_row.split()[:4] == ["acme", "(all", "campaigns)", "paused"]
    assert tenant_row.endswith("tenant escalation after 3 campaign pauses")
    assert text.endswith("4 campaigns, 4 pause commands (3 campaign, 1 tenant)")


async def test_each_paused_campaign_says_why() -> None:
    """The 'why paused' cell names the breached rule with its numbers; healthy ones say '-'."""
    lines = campaign_lines("bad", 300, bad=True) + campaign_lines("good", 300)
    result = await replayed(lines)
    bad, good = result.summary.campaigns
    assert bad.pause_reason == "hard_bounce 1h: 40/200 = 20.00%, lower bound 15.05% > 5.00%"
    assert good.pause_reason is None
    rows = render_summary(result).splitlines()
    assert "why paused" in rows[3]
    assert rows[5].endswith(bad.pause_reason)
    assert rows[6].endswith("-")


async def test_the_summary_says_its_rates_are_lifetime_figures() -> None:
    """The caption says what the rates are over, so they are not read as the rules' windows."""
    text = render_summary(await replayed(campaign_lines("good", 10)))
    assert text.startswith("Rates over each campaign's whole replay (lifetime)")


async def test_feedback_without_its_sends_is_not_a_rate_over_100_percent() -> None:
    """Complaints whose deliveries are not in the input: 'n/a' and a note, not 300%."""
    lines = [event(0, "c", "sent", 0), event(0, "c", "delivered", 1)]
    lines += [event(n, "c", "complaint", 10 + n) for n in range(1, 4)]
    text = render_summary(await replayed(lines))
    row = next(row for row in text.splitlines() if row.startswith("acme"))
    assert row.split()[3:8] == ["1", "1", "0.00%", "n/a", "0.00%"]
    assert "n/a: more of them than the sends or deliveries they answer" in text
