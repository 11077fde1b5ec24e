"""`sendguard status`: which campaigns are paused, warned or locked, and by which rule.

It reads the compacted health topic and the control topic from the beginning (nothing of its
own is stored) and looks up operator locks in Redis; `new_board`, `feed` and `percent` serve
`sendguard explain` (cli/explain.py) too.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from datetime import datetime

    from processor.config.settings import Settings
    from processor.services.status_board import CampaignRow, StatusBoard

STATUS_CHOICES = ("healthy", "warning", "paused", "resumed", "locked")
WATCH_REFRESH_S = 2.0


@click.command("status")
@click.option("--tenant", "tenant_id", help="Only this tenant's campaigns.")
@click.option(
    "--status",
    "statuses",
    help=f"Comma-separated statuses to show: {', '.join(STATUS_CHOICES)} (default: all).",
)
@click.option("--watch", is_flag=True, help="Keep reading and redraw as snapshots arrive.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per campaign.")
def status_command(
    tenant_id: str | None, statuses: str | None, *, watch: bool, as_json: bool
) -> None:
    """List campaigns with their status, the rule behind it, since when, and operator locks.

    Reads the health and control topics; exit status 0, or 2 if Kafka or Redis cannot be read.
    """
    from processor.runtime.bootstrap import load_settings

    wanted = _parse_statuses(statuses)
    settings = load_settings()
    asyncio.run(_status(settings, tenant_id, wanted, watch=watch, as_json=as_json))


def _parse_statuses(text: str | None) -> frozenset[str] | None:
    if not text:
        return None
    chosen = frozenset(part.strip().lower() for part in text.split(",") if part.strip())
    unknown = sorted(chosen - set(STATUS_CHOICES))
    if unknown:
        raise click.BadParameter(
            f"unknown status {', '.join(unknown)}; choose from {', '.join(STATUS_CHOICES)}",
            param_hint="--status",
        )
    return chosen


async def _status(
    settings: Settings,
    tenant_id: str | None,
    wanted: frozenset[str] | None,
    *,
    watch: bool,
    as_json: bool,
) -> None:
    from processor.adapters.topic_reader import CAUGHT_UP, read_topics
    from schemas.topics import TopicRole

    board = new_board()
    topics = [settings.topic(TopicRole.CONTROL), settings.topic(TopicRole.HEALTH)]
    shown_at = 0.0
    dirty = False
    loop = asyncio.get_running_loop()
    async for item in read_topics(settings, topics, follow=watch):
        if item is CAUGHT_UP:
            await _show(settings, board, tenant_id, wanted, as_json=as_json, clear=watch)
            shown_at = loop.time()
            continue
        dirty = feed(board, item) or dirty
        if watch and dirty and loop.time() - shown_at >= WATCH_REFRESH_S:
            await _show(settings, board, tenant_id, wanted, as_json=as_json, clear=True)
            shown_at, dirty = loop.time(), False


def new_board() -> StatusBoard:
    """An empty status board."""
    from processor.services.status_board import StatusBoard

    return StatusBoard()


def feed(board: StatusBoard, item: Any) -> bool:
    """Apply one topic message to the board; False if it was not a message of ours."""
    from pydantic import ValidationError

    from schemas.control import PauseCommand, ResumeCommand
    from schemas.health import HealthSnapshot

    if not item.value:
        return False
    try:
        data = json.loads(item.value)
        if "command" in data:
            model = PauseCommand if data["command"] == "pause" else ResumeCommand
            board.apply_control(model.model_validate(data))
        else:
            board.apply_health(HealthSnapshot.model_validate(data))
    except (ValueError, TypeError, ValidationError):
        return False  # not written by a sendguard of this version: not ours to show
    return True


async def _show(
    settings: Settings,
    board: StatusBoard,
    tenant_id: str | None,
    wanted: frozenset[str] | None,
    *,
    as_json: bool,
    clear: bool,
) -> None:
    from schemas.health import CampaignStatus

    statuses = None
    if wanted is not None:
        statuses = [CampaignStatus(s) for s in wanted - {"locked"}]
        if "locked" in wanted and not statuses:
            statuses = [CampaignStatus.PAUSED]
    rows = board.rows(tenant_id=tenant_id, statuses=statuses)
    await _look_up_locks(settings, [r for r in rows if r.status is CampaignStatus.PAUSED])
    if wanted is not None and "locked" in wanted:
        rows = [r for r in rows if r.locked]
    if clear:
        click.clear()
    if as_json:
        from processor.services.status_board import row_summary

        for row in rows:
            click.echo(json.dumps(row_summary(row), separators=(",", ":")))
        return
    click.echo(_table(rows))


async def _look_up_locks(settings: Settings, rows: list[CampaignRow]) -> None:
    from processor.config.policy_file import load_policy_file
    from processor.ports.detection_store import CampaignRef
    from processor.runtime.bootstrap import build_reading_store, build_redis

    if not rows:
        return
    client = build_redis(settings)
    try:
        store = await build_reading_store(settings, client, load_policy_file(settings.policy_file))
        for row in rows:
            row.locked = (
                await store.campaign_lock(CampaignRef(row.tenant_id, row.campaign_id)) is not None
            )
    finally:
        await client.aclose()


def percent(value: float | None) -> str:
    """A rate as a percentage with two decimals; '-' for none."""
    return "-" if value is None else f"{value:.2%}"


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%SZ")


def _table(rows: list[CampaignRow]) -> str:
    from processor.services.status_board import rule_of

    header = ("TENANT", "CAMPAIGN", "STATUS", "RULE", "RATE", "BOUND", "THRESHOLD", "SINCE")
    lines: list[tuple[str, ...]] = [(*header, "LOCKED")]
    for row in rows:
        locked = "?" if row.locked is None else ("yes" if row.locked else "no")
        if row.status.value != "paused":
            locked = "-"
        rule = rule_of(row)
        cells: tuple[str, ...] = ("-", "-", "-", "-")
        if rule is not None:
            metric, window, rate, bound, threshold = rule
            cells = (f"{metric.value}/{window}", *map(percent, (rate, bound, threshold)))
        lines.append(
            (row.tenant_id, row.campaign_id, row.status.value, *cells, _when(row.since), locked)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    text.append(f"{len(rows)} campaigns")
    return "\n".join(text)
