"""`sendguard dashboard`: the live status page (read-only, loopback by default)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import click

from processor.errors import SendguardError

if TYPE_CHECKING:
    from processor.config.policy_file import PolicyHolder
    from processor.config.settings import Settings
    from processor.services.status_board import CampaignRow


@click.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8030,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
def dashboard_command(host: str, port: int) -> None:
    """Serve the live status page: campaigns, pauses with their evidence, rate charts.

    Reads the health and control topics (nothing stored). With SENDGUARD_DASHBOARD_USER and
    SENDGUARD_DASHBOARD_PASSWORD set, every request needs basic auth. Ctrl-C or SIGTERM stops it.
    """
    from processor.config.policy_file import PolicyHolder
    from processor.logs import configure_logging
    from processor.runtime.bootstrap import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    holder = PolicyHolder(settings.policy_file)
    with contextlib.suppress(KeyboardInterrupt):
        try:
            asyncio.run(_serve(settings, holder, host, port))
        except OSError as exc:  # the port is taken, or the address is not ours
            raise SendguardError(f"status page cannot listen on {host}:{port}: {exc}") from exc


async def _serve(settings: Settings, holder: PolicyHolder, host: str, port: int) -> None:
    from processor.dashboard.server import create_dashboard_app, serve_dashboard
    from processor.ports.detection_store import CampaignRef
    from processor.runtime.bootstrap import build_reading_store, build_redis

    client = build_redis(settings)
    store = await build_reading_store(settings, client, holder())

    async def look_up_locks(rows: list[CampaignRow]) -> None:
        for row in rows:
            lock = await store.campaign_lock(CampaignRef(row.tenant_id, row.campaign_id))
            row.locked = lock is not None

    try:
        await serve_dashboard(create_dashboard_app(settings, holder, look_up_locks), host, port)
    finally:
        await client.aclose()
