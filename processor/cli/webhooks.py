"""`sendguard webhooks`: reads the settings and credentials file, builds clients, serves."""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

import click

from processor.errors import ConfigurationError, SendguardError

if TYPE_CHECKING:
    from processor.config.settings import Settings
    from processor.webhooks.credentials import Credentials


async def _serve(settings: Settings, credentials: Credentials, host: str, port: int) -> None:
    from aiokafka import AIOKafkaProducer

    from processor.adapters.kafka import producer_options
    from processor.runtime.bootstrap import build_metrics, build_redis
    from processor.webhooks.server import run_webhooks

    producer = AIOKafkaProducer(
        **producer_options(
            settings,
            f"{settings.app_id}-webhooks",
            # The raw copy of a full-size body is base64, a third larger than the body itself.
            max_request_size=settings.webhook_raw_record_max_bytes,
        )
    )
    metrics, metrics_server = build_metrics(settings, "webhooks")
    if metrics_server is not None:
        metrics_server.start()
    redis = build_redis(settings)
    try:
        await run_webhooks(
            settings, credentials, producer, redis, host=host, port=port, metrics=metrics
        )
    finally:
        await redis.aclose()
        if metrics_server is not None:
            metrics_server.stop()


@click.command("webhooks")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8025,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="TCP port (0: any free port).",
)
def webhooks(host: str, port: int) -> None:
    """Receive provider webhooks: POST /webhooks/{provider}[/{tenant}] (SIGTERM stops it).

    Each request is authenticated with the tenant credentials of
    SENDGUARD_WEBHOOK_CREDENTIALS_FILE, normalized and published to the delivery-events topic
    (docs/WEBHOOKS.md). GET /healthz answers once Kafka is connected.
    """
    from processor.logs import configure_logging
    from processor.runtime.bootstrap import load_settings
    from processor.webhooks.credentials import load_credentials

    settings = load_settings()
    configure_logging(settings.log_level, settings.library_log_level)
    if settings.webhook_credentials_file is None:
        raise ConfigurationError(
            "SENDGUARD_WEBHOOK_CREDENTIALS_FILE is not set (see docs/WEBHOOKS.md)"
        )
    credentials = load_credentials(settings.webhook_credentials_file, os.environ)
    try:
        asyncio.run(_serve(settings, credentials, host, port))
    except OSError as exc:  # the port is taken, or the address is not ours
        raise SendguardError(str(exc)) from exc
