"""`sendguard status` and `sendguard explain`: which campaigns are paused, warned, locked, and why.

Both read the compacted health topic and the control topic from the beginning (nothing of
their own is stored); `status` looks up operator locks and `explain` the campaign's windows in
Redis.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from processor.errors import SendguardError

if TYPE_CHECKING:
    from datetime import datetime

    from processor.config.settings import Settings
    from processor.domain.explanation import SequentialExplanation
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

    board = _board()
    topics = [settings.topic(TopicRole.CONTROL), settings.topic(TopicRole.HEALTH)]
    shown_at = 0.0
    dirty = False
    loop = asyncio.get_running_loop()
    async for item in read_topics(settings, topics, follow=watch):
        if item is CAUGHT_UP:
            await _show(settings, board, tenant_id, wanted, as_json=as_json, clear=watch)
            shown_at = loop.time()
            continue
        dirty = _feed(board, item) or dirty
        if watch and dirty and loop.time() - shown_at >= WATCH_REFRESH_S:
            await _show(settings, board, tenant_id, wanted, as_json=as_json, clear=True)
            shown_at, dirty = loop.time(), False


def _board() -> StatusBoard:
    from processor.services.status_board import StatusBoard

    return StatusBoard()


def _feed(board: StatusBoard, item: Any) -> bool:
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


def _percent(value: float | None) -> str:
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
            cells = (f"{metric.value}/{window}", *map(_percent, (rate, bound, threshold)))
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


@click.command("explain")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--json", "as_json", is_flag=True, help="The explanation as one JSON object.")
def explain_command(tenant_id: str, campaign_id: str, *, as_json: bool) -> None:
    """Why a campaign is (or is not) paused or warned: every window and rule, with the numbers.

    Reads the campaign's state in Redis and its history on the health and control topics.
    """
    from processor.runtime.bootstrap import load_settings

    settings = load_settings()
    report = asyncio.run(_explain(settings, tenant_id, campaign_id))
    if as_json:
        click.echo(json.dumps(report, separators=(",", ":")))
    else:
        click.echo(_render_explanation(report))


async def _explain(settings: Settings, tenant_id: str, campaign_id: str) -> dict[str, Any]:
    from processor.adapters.topic_reader import CaughtUp, read_topics
    from processor.config.policy_file import PolicyHolder
    from processor.domain.codec import decode_state
    from processor.domain.explanation import explain, explain_sequential
    from processor.domain.sequential import top_domains
    from processor.domain.windows import RATE_TERMS, Counter
    from processor.ports.detection_store import CampaignAsk, CampaignRef
    from processor.runtime.bootstrap import build_reading_store, build_redis
    from schemas.topics import TopicRole

    holder = PolicyHolder(settings.policy_file)
    book = holder()
    ref = CampaignRef(tenant_id, campaign_id)
    client = build_redis(settings)
    try:
        store = await build_reading_store(settings, client, book)
        loaded = (await store.load_campaigns([CampaignAsk(ref)]))[0]
        lock = await store.campaign_lock(ref)
    finally:
        await client.aclose()
    if loaded.blob is None:
        raise SendguardError(
            f"no state for {tenant_id}:{campaign_id} in Redis (never seen, or expired)"
        )
    state = decode_state(loaded.blob, book.windows)
    policy = book.for_campaign(tenant_id, campaign_id)
    board = _board()
    topics = [settings.topic(TopicRole.CONTROL), settings.topic(TopicRole.HEALTH)]
    key = f"{tenant_id}:{campaign_id}".encode()
    keys = {key, f"{tenant_id}:*".encode()}
    async for item in read_topics(settings, topics):
        if isinstance(item, CaughtUp):
            break
        if item.key in keys:
            _feed(board, item)
    row = board.row(tenant_id, campaign_id)
    windows = []
    for name in [w.spec.name for w in state.windows.windows] + ["lifetime"]:
        totals = state.windows.window(name)
        counts = {Counter(i).name.lower(): totals[i] for i in range(len(totals))}
        rates = {
            metric.value: (totals[n] / totals[d] if totals[d] else None)
            for metric, (n, d) in RATE_TERMS.items()
        }
        windows.append({"window": name, "counts": counts, "rates": rates})
    rules = [
        {
            "metric": e.reading.rule.metric.value,
            "window": e.reading.rule.window,
            "numerator": e.reading.numerator,
            "denominator": e.reading.denominator,
            "active_denominator": e.active_denominator,
            "denominator_lag_s": e.reading.rule.denominator_lag_ms // 1000,
            "rate": e.reading.rate,
            "wilson_lower_bound": e.reading.wilson_lower_bound,
            "min_numerator": e.reading.rule.min_numerator,
            "min_denominator": e.reading.rule.min_denominator,
            "warn": e.reading.rule.warn,
            "pause": e.reading.rule.pause,
            "verdict": e.verdict,
            "why": e.why,
        }
        for e in explain(state, policy)
    ]
    sequential = [
        {
            **_sequential_row(e, policy.z),
            "top_domains_since_change": [
                {"domain": d, "count": n}
                for d, n in top_domains(state.sequential, e.reading.rule.metric, 5)
            ],
        }
        for e in explain_sequential(state, policy)
    ]
    return {
        "tenant_id": tenant_id,
        "campaign_id": campaign_id,
        "status": state.status.value,
        "episode": state.episode,
        "locked": lock is not None,
        "policy": {
            "source": str(settings.policy_file) if settings.policy_file else "built-in",
            "version": policy.version,
            "confidence": 1 - 2 * (1 - _normal_cdf(policy.z)),
        },
        "windows": windows,
        "rules": rules,
        "sequential": sequential,
        "top_domains": {
            metric.value: [{"domain": d, "count": n} for d, n in state.top_domains(metric)]
            for metric in RATE_TERMS
        },
        "timeline": [
            {"at": at.isoformat(), "status": s.value} for at, s in (row.timeline if row else [])
        ],
        "pause": row.pause.model_dump(mode="json") if row and row.pause else None,
    }


def _sequential_row(explanation: SequentialExplanation, z: float) -> dict[str, Any]:
    from processor.ports.records import from_ms

    reading, rule = explanation.reading, explanation.reading.rule
    low, high = reading.interval(z)
    return {
        "metric": rule.metric.value,
        "p0": rule.p0,
        "p1": rule.p1,
        "h": rule.h,
        "warn_h": rule.warn_h,
        "statistic": reading.statistic,
        "fraction_of_h": reading.fraction_of_h,
        "pending_events": explanation.pending,
        "change_at": (
            None if reading.change_at_ms is None else from_ms(reading.change_at_ms).isoformat()
        ),
        "change_sends": reading.change_sends,
        "numerator": reading.numerator,
        "denominator": reading.denominator,
        "exposure": reading.exposure,
        "rate": reading.rate,
        "interval": [low, high],
        "min_numerator": rule.min_numerator,
        "min_denominator": rule.min_denominator,
        "lag_s": rule.lag_ms // 1000,
        "verdict": explanation.verdict,
        "why": explanation.why,
    }


def _normal_cdf(z: float) -> float:
    from statistics import NormalDist

    return NormalDist().cdf(z)


def _render_explanation(report: dict[str, Any]) -> str:
    locked = "yes" if report["locked"] else "no"
    policy = report["policy"]
    lines = [
        (
            f"{report['tenant_id']}:{report['campaign_id']}  status {report['status']}"
            f"  episode {report['episode']}  locked {locked}"
        ),
        (
            f"policy {policy['source']} (version {policy['version']}, "
            f"Wilson bounds at {policy['confidence']:.0%} confidence)"
        ),
        "",
        "windows:",
    ]
    for window in report["windows"]:
        counts = ", ".join(f"{k} {v}" for k, v in window["counts"].items() if v)
        rates = ", ".join(f"{k} {_percent(v)}" for k, v in window["rates"].items())
        lines.append(f"  {window['window']:>8}: {counts or 'no events'}")
        lines.append(f"  {'':>8}  rates (lifetime of the window): {rates}")
    lines += ["", "rules (worst first):"]
    for rule in report["rules"]:
        lag = (
            f", denominator reaching {rule['denominator_lag_s'] // 60} min further back"
            if rule["denominator_lag_s"]
            else ""
        )
        lines.append(
            f"  {rule['verdict'].upper():5} {rule['metric']}/{rule['window']}: "
            f"{rule['numerator']}/{rule['denominator']} = {_percent(rule['rate'])}, "
            f"bound {_percent(rule['wilson_lower_bound'])}; warn {_percent(rule['warn'])}, "
            f"pause {_percent(rule['pause'])}; floors {rule['min_numerator']} events, "
            f"{rule['min_denominator']} denominator{lag}"
        )
        lines.append(f"        {rule['why']}")
    lines += _render_sequential(report["sequential"])
    domains = {m: d for m, d in report["top_domains"].items() if d}
    if domains:
        lines += ["", "top recipient domains:"]
        for metric, ranked in domains.items():
            lines.append(f"  {metric}: " + ", ".join(f"{d['domain']} {d['count']}" for d in ranked))
    if report["timeline"]:
        lines += ["", "status timeline:"]
        lines += [f"  {entry['at']}  {entry['status']}" for entry in report["timeline"]]
    return "\n".join(lines)


def _render_sequential(rules: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    if rules:
        lines += ["", "sequential rules (CUSUM of p1 against p0, worst first):"]
    for rule in rules:
        lines.append(
            f"  {rule['verdict'].upper():5} {rule['metric']}/sequential: p0 {_percent(rule['p0'])},"
            f" p1 {_percent(rule['p1'])}; statistic {rule['statistic']:.2f} of h {rule['h']:g}"
            f" (warn {rule['warn_h']:g}); floors {rule['min_numerator']} events,"
            f" {rule['min_denominator']} matured since the change"
        )
        if rule["change_at"] is not None:
            denominator = "sends" if rule["metric"] == "hard_bounce" else "deliveries"
            lines.append(
                f"        since the change point {rule['change_at']} (after send"
                f" {rule['change_sends']}): {rule['numerator']} events, {rule['denominator']}"
                f" {denominator}, {rule['exposure']:.0f} matured (lag {rule['lag_s'] // 60}"
                f" min); rate {_percent(rule['rate'])}, interval"
                f" {_percent(rule['interval'][0])}-{_percent(rule['interval'][1])}"
            )
        if rule["top_domains_since_change"]:
            ranked = ", ".join(
                f"{d['domain']} {d['count']}" for d in rule["top_domains_since_change"]
            )
            lines.append(f"        their recipient domains: {ranked}")
        if rule["pending_events"]:
            lines.append(f"        {rule['pending_events']} events this step, counted at its end")
        lines.append(f"        {rule['why']}")
    return lines
