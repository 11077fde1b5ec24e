"""`sendguard bridge kumomta|webhook`: make an MTA or an endpoint obey the control topic."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

import click

from processor.errors import ConfigurationError

if TYPE_CHECKING:
    from datetime import timedelta

    from processor.config.settings import Settings
    from processor.runtime.bridge import BridgeTarget

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _expiry_s(text: str | None, default: timedelta) -> int:
    if text is None:
        return int(default.total_seconds())
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise click.BadParameter(f"{text!r}: expected a positive number with s, m, h or d (7d)")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


@click.group()
def bridge() -> None:
    """Apply pause and resume commands to an MTA or an endpoint (docs/BRIDGES.md)."""


@bridge.command("kumomta")
@click.option("--url", help="kumod's HTTP listener (default: SENDGUARD_BRIDGE_KUMOMTA_URL).")
@click.option(
    "--expiry",
    help="How long a suspension lasts unless a resume lifts it, e.g. 7d or 36h "
    "(default: SENDGUARD_BRIDGE_SUSPENSION_EXPIRY, 7 days).",
)
def kumomta(url: str | None, expiry: str | None) -> None:
    """Suspend paused campaigns and tenants in KumoMTA; lift them on resume (SIGTERM stops it)."""
    from processor.logs import configure_logging
    from processor.runtime.bootstrap import load_settings
    from processor.runtime.bridge import kumomta_target

    settings = load_settings()
    configure_logging(settings.log_level)
    target_url = url or settings.bridge_kumomta_url
    if target_url is None:
        raise ConfigurationError("no KumoMTA URL: pass --url or set SENDGUARD_BRIDGE_KUMOMTA_URL")
    if not target_url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{target_url!r} is not an http(s) URL", param_hint="--url")
    expiry_s = _expiry_s(expiry, settings.bridge_suspension_expiry)
    _run(settings, kumomta_target(settings, target_url, expiry_s))


@bridge.command("webhook")
@click.argument("url")
@click.option(
    "--name",
    default="default",
    show_default=True,
    help="Names the consumer group and ledger: one per endpoint.",
)
def webhook(url: str, name: str) -> None:
    """POST each command, signed, to URL (SIGTERM stops it)."""
    from processor.logs import configure_logging
    from processor.runtime.bootstrap import load_settings
    from processor.runtime.bridge import webhook_target

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter(f"{url!r} is not an http(s) URL", param_hint="URL")
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise click.BadParameter("letters, digits, '.', '_' and '-' only", param_hint="--name")
    settings = load_settings()
    configure_logging(settings.log_level)
    _run(settings, webhook_target(settings, url, name))


def _run(settings: Settings, target: BridgeTarget) -> None:
    """Serve /metrics (if SENDGUARD_METRICS_PORT is set) and bridge until stopped."""
    from processor.adapters.metrics import PrometheusBridgeMetrics
    from processor.runtime.bootstrap import build_metrics
    from processor.runtime.bridge import run_bridge

    metrics, server = build_metrics(settings, f"bridge-{target.name}")
    if server is not None:
        server.start()  # before Kafka: a taken port is said at once, as a setting error
    try:
        bridge_metrics = PrometheusBridgeMetrics(metrics, target.name)
        asyncio.run(run_bridge(settings, target, metrics=bridge_metrics))
    finally:
        if server is not None:
            server.stop()
