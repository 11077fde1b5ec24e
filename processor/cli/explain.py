"""`sendguard explain`: why a campaign is (or is not) paused or warned, with every rule's numbers.

Reads the campaign's state in Redis (its windows and sequential statistics, judged by
`processor.domain.explanation`) and its history on the health and control topics.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from processor.cli.status import feed, new_board, percent
from processor.errors import SendguardError

if TYPE_CHECKING:
    from processor.config.settings import Settings
    from processor.domain.explanation import SequentialExplanation


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
    board = new_board()
    topics = [settings.topic(TopicRole.CONTROL), settings.topic(TopicRole.HEALTH)]
    key = f"{tenant_id}:{campaign_id}".encode()
    keys = {key, f"{tenant_id}:*".encode()}
    async for item in read_topics(settings, topics):
        if isinstance(item, CaughtUp):
            break
        if item.key in keys:
            feed(board, item)
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
        rates = ", ".join(f"{k} {percent(v)}" for k, v in window["rates"].items())
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
            f"{rule['numerator']}/{rule['denominator']} = {percent(rule['rate'])}, "
            f"bound {percent(rule['wilson_lower_bound'])}; warn {percent(rule['warn'])}, "
            f"pause {percent(rule['pause'])}; floors {rule['min_numerator']} events, "
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
            f"  {rule['verdict'].upper():5} {rule['metric']}/sequential: p0 {percent(rule['p0'])},"
            f" p1 {percent(rule['p1'])}; statistic {rule['statistic']:.2f} of h {rule['h']:g}"
            f" (warn {rule['warn_h']:g}); floors {rule['min_numerator']} events,"
            f" {rule['min_denominator']} matured since the change"
        )
        if rule["change_at"] is not None:
            denominator = "sends" if rule["metric"] == "hard_bounce" else "deliveries"
            lines.append(
                f"        since the change point {rule['change_at']} (after send"
                f" {rule['change_sends']}): {rule['numerator']} events, {rule['denominator']}"
                f" {denominator}, {rule['exposure']:.0f} matured (lag {rule['lag_s'] // 60}"
                f" min); rate {percent(rule['rate'])}, interval"
                f" {percent(rule['interval'][0])}-{percent(rule['interval'][1])}"
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
