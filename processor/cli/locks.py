"""`sendguard lock` and `sendguard unlock`: an operator's hold on a campaign's pause."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import click

from processor.errors import SendguardError
from schemas.base import campaign_key


@click.command("lock")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--by", "locked_by", required=True, help="Who locks it (shown to requesters).")
@click.option("--reason", default="", help="Why, for the record.")
def lock_command(tenant_id: str, campaign_id: str, locked_by: str, reason: str) -> None:
    """Lock a campaign's pause: only a privileged resume request may lift it.

    A campaign sendguard has no state of (never seen, a typo, or expired) is refused: exit 2.
    """
    lock = json.dumps(
        {"by": locked_by, "reason": reason, "at": datetime.now(tz=UTC).isoformat()},
        separators=(",", ":"),
    )
    _set_lock(tenant_id, campaign_id, lock)
    click.echo(f"locked {campaign_key(tenant_id, campaign_id)} (by {locked_by})")


@click.command("unlock")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
def unlock_command(tenant_id: str, campaign_id: str) -> None:
    """Lift the operator lock of a campaign's pause (the pause itself stays)."""
    had = _set_lock(tenant_id, campaign_id, None)
    key = campaign_key(tenant_id, campaign_id)
    click.echo(f"unlocked {key}" if had else f"{key} had no lock: nothing to do")


def _set_lock(tenant_id: str, campaign_id: str, lock: str | None) -> bool:
    """Set or lift the lock; whether there was one. Locking an unknown campaign is refused."""
    from processor.config.policy_file import load_policy_file
    from processor.ports.detection_store import CampaignAsk, CampaignRef
    from processor.runtime.bootstrap import build_reading_store, build_redis, load_settings

    settings = load_settings()
    ref = CampaignRef(tenant_id, campaign_id)

    async def run() -> bool:
        client = build_redis(settings)
        try:
            store = await build_reading_store(
                settings, client, load_policy_file(settings.policy_file)
            )
            if lock is not None:
                (stored,) = await store.load_campaigns([CampaignAsk(ref)])
                if stored.blob is None:
                    raise SendguardError(
                        f"no campaign {campaign_key(tenant_id, campaign_id)} in Redis (key "
                        f"prefix {settings.redis_key_prefix}): never seen, or its state "
                        "expired; nothing locked"
                    )
            had = await store.campaign_lock(ref) is not None
            await store.set_campaign_lock(ref, lock)
        finally:
            await client.aclose()
        return had

    return asyncio.run(run())
