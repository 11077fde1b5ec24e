"""`sendguard normalize`: provider webhook payloads and returned mail to normalized events."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from processor.adapters.providers import (
    AttributionConfig,
    NormalizeResult,
    Provider,
    normalize_body,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

PROVIDER_CHOICE = click.Choice([p.value for p in Provider], case_sensitive=False)
MAIL_FORMATS: Final = ("rfc3464", "arf")
"""Formats read one message per file (`processor/adapters/mail`), not JSON payloads."""
NORMALIZE_CHOICE = click.Choice([*PROVIDER_CHOICE.choices, *MAIL_FORMATS], case_sensitive=False)


def payloads_of(data: bytes) -> Iterator[tuple[int | None, bytes]]:
    """A file holds one JSON document (a webhook body), or one body per line (JSON lines).

    Each body comes with its line number (from 1); None for the one document.
    """
    try:
        json.loads(data)
    except ValueError:
        for number, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                yield number, line
    else:
        yield None, data


def normalize_file(
    provider: Provider, tenant_id: str, data: bytes, *, fallback_campaign_id: str | None = None
) -> Iterator[tuple[int | None, NormalizeResult]]:
    """Normalize every payload of one file; each result with its payload's line (see above)."""
    attribution = AttributionConfig(fallback_campaign_id=fallback_campaign_id)
    for line, body in payloads_of(data):
        yield line, normalize_body(provider, body, tenant_id=tenant_id, attribution=attribution)


@click.command("normalize")
@click.option("--provider", "provider_name", type=NORMALIZE_CHOICE, required=True)
@click.option("--tenant", "tenant_id", default="default", show_default=True)
@click.option("--campaign", "campaign_id", help="Campaign of payloads that name none.")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def normalize_command(
    provider_name: str, tenant_id: str, campaign_id: str | None, files: tuple[Path, ...]
) -> None:
    """Print FILES' provider payloads as normalized events (JSON lines on stdout).

    rfc3464 and arf read one message per file (a bounce, a feedback report): attributed by
    their VERP token (SENDGUARD_TOKEN_KEY, SENDGUARD_MAIL_BOUNCE_DOMAINS) or the returned
    message's headers, else by --tenant and --campaign. Rejected records go to stderr with the
    reason naming the field; the exit code is 1 if any record was rejected. The output is
    valid input for `sendguard replay`.
    """
    rejected = 0
    for path in files:
        data = path.read_bytes()
        if provider_name.lower() in MAIL_FORMATS:
            mail = _normalize_mail(provider_name.lower(), data, tenant_id, campaign_id)
            results: list[tuple[int | None, NormalizeResult]] = [(None, mail)]
        else:
            results = list(
                normalize_file(
                    Provider(provider_name.lower()),
                    tenant_id,
                    data,
                    fallback_campaign_id=campaign_id,
                )
            )
        for line, result in results:
            where = str(path) if line is None else f"{path}:{line}"
            for event in result.events:
                click.echo(event.model_dump_json())
            for rejection in result.rejected:
                rejected += 1
                click.echo(f"{where}: rejected {rejection.reason}", err=True)
            for ignored in result.ignored:
                click.echo(f"{where}: ignored {ignored.reason}", err=True)
            for confirmation in result.subscription_confirmations:
                click.echo(
                    f"{where}: SNS {confirmation.kind} for {confirmation.topic_arn}: confirm it "
                    f"by visiting {confirmation.subscribe_url}",
                    err=True,
                )
    sys.exit(1 if rejected else 0)


def _normalize_mail(
    mail_format: str, data: bytes, tenant_id: str, campaign_id: str | None
) -> NormalizeResult:
    from dataclasses import replace
    from datetime import UTC, datetime

    from processor.adapters.mail import Envelope, MailFormat, normalize_mail
    from processor.mail import mail_attribution
    from processor.runtime.bootstrap import load_settings

    attribution = replace(
        mail_attribution(load_settings()),
        fallback_tenant_id=tenant_id,
        fallback_campaign_id=campaign_id,
    )
    envelope = Envelope(received_at=datetime.now(UTC))
    return normalize_mail(data, envelope, attribution, expect=MailFormat(mail_format)).result
