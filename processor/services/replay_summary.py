"""The replay's summary table: each campaign's lifetime counts, status and why it paused.

Tenant pauses get a row of their own; the footer counts events and pause commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from processor.domain.codec import decode_state
from processor.ports.detection_store import CampaignAsk, CampaignRef
from schemas.control import PauseCommand, PauseScope, read_control
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.domain.policy import PolicyBook
    from processor.ports.detection_store import DetectionStore, OutboxMessage

ALL_CAMPAIGNS = "(all campaigns)"
"""The campaign column of a tenant pause's row."""


@dataclass(frozen=True, slots=True)
class Ratio:
    """A count over the count it is a rate of: bounces per send, complaints per delivery."""

    count: int
    of: int

    @property
    def rate(self) -> float | None:
        """Count / of; None where it is no rate: nothing to divide by, or more than all of it.

        More complaints than deliveries happen when a file holds feedback whose sends are
        not in it: shown as such, not as a rate over 100%.
        """
        if not self.of or self.count > self.of:
            return None
        return self.count / self.of

    def shown(self) -> str:
        """The rate as a percentage; '-' for 0 of 0, 'n/a' where there is no rate."""
        rate = self.rate
        if rate is not None:
            return f"{rate * 100:.2f}%"
        return "-" if not self.count else "n/a"


@dataclass(frozen=True, slots=True)
class CampaignSummary:
    """One campaign's row: lifetime counts over the replay, its status and why it paused."""

    tenant_id: str
    campaign_id: str
    status: str
    sent: int
    delivered: int
    hard_bounces: Ratio
    complaints: Ratio
    unsubscribes: Ratio
    paused_at: str | None = None
    pause_reason: str | None = None


@dataclass(frozen=True, slots=True)
class TenantPause:
    """A tenant-scoped pause: every campaign of the tenant stops."""

    tenant_id: str
    paused_at: str
    campaigns: tuple[str, ...]
    """The campaign pauses that caused it, oldest first."""


@dataclass(slots=True)
class Summary:
    """The rows of the summary table."""

    campaigns: list[CampaignSummary] = field(default_factory=list)
    tenant_pauses: list[TenantPause] = field(default_factory=list)
    campaign_pause_commands: int = 0


def pause_reason(command: PauseCommand) -> str:
    """Why a campaign paused, in one cell: the breached rule and the numbers behind it."""
    evidence = command.evidence
    if evidence is None:
        return "-"
    return (
        f"{evidence.metric.value} {evidence.window}: {evidence.numerator}/{evidence.denominator}"
        f" = {evidence.rate:.2%}, lower bound {evidence.wilson_lower_bound:.2%}"
        f" > {evidence.threshold:.2%}"
    )


async def summarize(
    store: DetectionStore,
    refs: Sequence[CampaignRef],
    decisions: Sequence[OutboxMessage],
    book: PolicyBook,
) -> Summary:
    """The rows for `refs` (in their order) from their stored states and the decisions made."""
    pauses: dict[tuple[str, str], PauseCommand] = {}
    summary = Summary()
    for message in decisions:
        if message.role != TopicRole.CONTROL:
            continue
        command = read_control(message.value)
        if not isinstance(command, PauseCommand):
            continue
        if command.scope is PauseScope.TENANT:
            summary.tenant_pauses.append(
                TenantPause(
                    command.tenant_id, _event_time(command), tuple(command.paused_campaigns)
                )
            )
        elif command.campaign_id is not None:
            summary.campaign_pause_commands += 1
            pauses.setdefault((command.tenant_id, command.campaign_id), command)
    loaded = await store.load_campaigns([CampaignAsk(ref) for ref in refs])
    for ref, stored in zip(refs, loaded, strict=True):
        if stored.blob is None:
            continue
        state = decode_state(stored.blob, book.windows)
        sent, delivered, hard, complaints, unsubscribes = state.windows.lifetime[:5]
        pause = pauses.get((ref.tenant_id, ref.campaign_id))
        summary.campaigns.append(
            CampaignSummary(
                tenant_id=ref.tenant_id,
                campaign_id=ref.campaign_id,
                status=state.status.value,
                sent=sent,
                delivered=delivered,
                hard_bounces=Ratio(hard, sent),
                complaints=Ratio(complaints, delivered),
                unsubscribes=Ratio(unsubscribes, delivered),
                paused_at=None if pause is None else _event_time(pause),
                pause_reason=None if pause is None else pause_reason(pause),
            )
        )
    return summary


def _event_time(command: PauseCommand) -> str:
    shown: str = command.model_dump(mode="json", include={"decided_at"})["decided_at"]
    return shown


_CAPTION = (
    "Rates over each campaign's whole replay (lifetime): hard bounces per send, complaints and\n"
    "unsubscribes per delivery. The pause rules also look at sliding windows: see 'why paused'."
)
_NO_RATE = (
    "n/a: more of them than the sends or deliveries they answer; the input holds feedback "
    "whose sends are not in it."
)


def render_table(summary: Summary, counts: str) -> str:
    """A plain-text table of the campaigns and tenant pauses, then `counts` and the pauses."""
    header = ("tenant", "campaign", "status", "sent", "delivered", "hard bnc", "complaint",
              "unsub", "paused at (event time)", "why paused")  # fmt: skip
    rows: list[tuple[str, ...]] = [header]
    tenant_rows = {pause.tenant_id: pause for pause in summary.tenant_pauses}
    previous: str | None = None
    for c in [*summary.campaigns, None]:
        tenant = None if c is None else c.tenant_id
        if previous is not None and tenant != previous and previous in tenant_rows:
            rows.append(_tenant_row(tenant_rows.pop(previous)))
        previous = tenant
        if c is not None:
            rows.append(
                (
                    c.tenant_id,
                    c.campaign_id,
                    c.status,
                    str(c.sent),
                    str(c.delivered),
                    c.hard_bounces.shown(),
                    c.complaints.shown(),
                    c.unsubscribes.shown(),
                    c.paused_at or "-",
                    c.pause_reason or "-",
                )
            )
    rows.extend(_tenant_row(pause) for pause in tenant_rows.values())  # tenants without a row
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [*_CAPTION.splitlines(), ""]
    lines.extend(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
    lines.insert(4, "  ".join("-" * w for w in widths))
    if any("n/a" in row[5:8] for row in rows[1:]):
        lines.append(_NO_RATE)
    campaign_pauses = summary.campaign_pause_commands
    tenant_pauses = len(summary.tenant_pauses)
    lines.append("")
    lines.append(
        f"{counts}; {len(summary.campaigns)} campaigns, "
        f"{campaign_pauses + tenant_pauses} pause commands "
        f"({campaign_pauses} campaign, {tenant_pauses} tenant)"
    )
    return "\n".join(lines)


def _tenant_row(pause: TenantPause) -> tuple[str, ...]:
    why = f"tenant escalation after {len(pause.campaigns)} campaign pauses"
    return (pause.tenant_id, ALL_CAMPAIGNS, "paused", "", "", "", "", "", pause.paused_at, why)
