"""`sendguard mail` (the bounce and feedback listener), `verp` and `unsubscribe-link` (minting)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from typing import TYPE_CHECKING

import click

from processor.errors import ConfigurationError, SendguardError

if TYPE_CHECKING:
    from processor.config.settings import Settings


def _signing_key(settings: Settings) -> bytes:
    keys = settings.token_keys()
    if not keys:
        raise ConfigurationError("SENDGUARD_TOKEN_KEY is not set (see docs/MAIL.md)")
    return keys[0]


async def _serve(
    settings: Settings, host: str, smtp_port: int | None, lmtp_port: int | None
) -> None:
    from aiokafka import AIOKafkaProducer

    from processor.adapters.kafka import client_options
    from processor.mail import run_mail
    from processor.runtime.bootstrap import build_metrics

    producer = AIOKafkaProducer(
        **client_options(settings),
        acks="all",
        enable_idempotence=True,
        client_id=f"{settings.app_id}-mail",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics, metrics_server = build_metrics(settings, "mail")
    if metrics_server is not None:
        metrics_server.start()
    try:
        await run_mail(
            settings,
            producer,
            host=host,
            smtp_port=smtp_port,
            lmtp_port=lmtp_port,
            stop=stop,
            metrics=metrics,
        )
    finally:
        if metrics_server is not None:
            metrics_server.stop()


@click.command("mail")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--smtp-port",
    default=2525,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="SMTP port (0: any free port).",
)
@click.option(
    "--lmtp-port",
    type=click.IntRange(0, 65535),
    help="Also listen for LMTP on this port (for a local MTA that hands mail over by LMTP).",
)
@click.option("--no-smtp", is_flag=True, help="LMTP only.")
def mail_command(host: str, smtp_port: int, lmtp_port: int | None, *, no_smtp: bool) -> None:
    """Receive bounces and feedback reports by SMTP/LMTP and publish their events.

    Recipients: VERP return paths of SENDGUARD_MAIL_BOUNCE_DOMAINS signed with
    SENDGUARD_TOKEN_KEY, and SENDGUARD_MAIL_PLAIN_ADDRESSES (docs/MAIL.md). SIGTERM stops it.
    With SENDGUARD_METRICS_PORT, serves /metrics (messages by outcome).
    """
    from processor.logs import configure_logging
    from processor.runtime.bootstrap import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.library_log_level)
    if not settings.mail_bounce_domains and not settings.mail_plain_addresses:
        raise ConfigurationError(
            "set SENDGUARD_MAIL_BOUNCE_DOMAINS or SENDGUARD_MAIL_PLAIN_ADDRESSES: "
            "otherwise every recipient is refused"
        )
    if settings.mail_bounce_domains:
        _signing_key(settings)
    if no_smtp and lmtp_port is None:
        raise click.UsageError("--no-smtp needs --lmtp-port")
    try:
        asyncio.run(_serve(settings, host, None if no_smtp else smtp_port, lmtp_port))
    except OSError as exc:  # the port is taken, or the address is not ours
        raise SendguardError(str(exc)) from exc


@click.command("verp")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--contact", "contact_id", required=True)
@click.option(
    "--domain", help="Bounce domain; default: the first of SENDGUARD_MAIL_BOUNCE_DOMAINS."
)
def verp_command(tenant_id: str, campaign_id: str, contact_id: str, domain: str | None) -> None:
    """Print the signed VERP return path of one message (MAIL FROM / Return-Path)."""
    from processor.domain.signed_tokens import LOCAL_PART_MAX, TokenError, VerpToken, verp_address
    from processor.runtime.bootstrap import load_settings

    settings = load_settings()
    domain = domain or next(iter(settings.mail_bounce_domains), None)
    if domain is None:
        raise ConfigurationError("pass --domain or set SENDGUARD_MAIL_BOUNCE_DOMAINS")
    try:
        address = verp_address(
            VerpToken(tenant_id, campaign_id, contact_id),
            _signing_key(settings),
            prefix=settings.mail_verp_prefix,
            domain=domain,
        )
    except TokenError as exc:
        raise SendguardError(str(exc)) from exc
    click.echo(address)
    local = address.rpartition("@")[0]
    if len(local) > LOCAL_PART_MAX:
        click.echo(
            f"warning: the local part has {len(local)} characters, over RFC 5321's "
            f"{LOCAL_PART_MAX}; most servers take it, some refuse it: shorter ids help",
            err=True,
        )


@click.command("unsubscribe-link")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--contact", "contact_id", required=True)
@click.option("--address", help="The recipient's address; default: the contact id.")
@click.option("--base-url", help="Public receiver URL; default: SENDGUARD_UNSUBSCRIBE_URL_BASE.")
@click.option("--ttl-s", type=click.FloatRange(min=1), help="Default: the configured lifetime.")
def unsubscribe_link_command(
    *,
    tenant_id: str,
    campaign_id: str,
    contact_id: str,
    address: str | None,
    base_url: str | None,
    ttl_s: float | None,
) -> None:
    """Print a one-click unsubscribe URL and its List-Unsubscribe headers (RFC 8058), as JSON."""
    from processor.domain.signed_tokens import (
        TokenError,
        UnsubscribeToken,
        mint_unsubscribe_token,
    )
    from processor.runtime.bootstrap import load_settings

    settings = load_settings()
    base = base_url or settings.unsubscribe_url_base
    if base is None:
        raise ConfigurationError("pass --base-url or set SENDGUARD_UNSUBSCRIBE_URL_BASE")
    expires = int(time.time() + (ttl_s or settings.unsubscribe_token_ttl_s))
    try:
        token = mint_unsubscribe_token(
            UnsubscribeToken(tenant_id, campaign_id, contact_id, address or contact_id, expires),
            _signing_key(settings),
        )
    except TokenError as exc:
        raise SendguardError(str(exc)) from exc
    url = f"{base.rstrip('/')}/unsubscribe/{token}"
    click.echo(
        json.dumps(
            {
                "url": url,
                "List-Unsubscribe": f"<{url}>",
                "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
                "expires_at": expires,
            },
            indent=2,
        )
    )
