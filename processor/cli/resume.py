"""The resume side of the `sendguard` command: `resume` and `import-suppressions`.

Also how operator requests (resume, lock, unlock) are signed, sent and answered.

Heavy imports stay inside the commands, so `sendguard --help` stays fast.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from processor.errors import SendguardError
from schemas.base import campaign_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tqdm import tqdm

    from processor.config.settings import Settings
    from processor.domain.suppressions import ParsedRow, RowResult
    from schemas.resume import ResumeOutcome, ResumeRequest

PUBLISH_BATCH = 1000
"""Contact updates in flight before the import waits for the broker's acknowledgements."""


@click.command("resume")
@click.option("--tenant", required=True, help="The tenant of the paused campaign.")
@click.option("--campaign", required=True, help="The paused campaign.")
@click.option("--by", "requested_by", required=True, help="Who asks (kept in the command).")
@click.option("--reason", default="", help="Why, for the record.")
@click.option(
    "--privileged",
    is_flag=True,
    help="Lift a tenant-scoped or operator-locked pause: signed with SENDGUARD_OPERATOR_KEY.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
@click.option("--request-id", default=None, help="Idempotency key (default: a new UUID).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def resume(
    *,
    tenant: str,
    campaign: str,
    requested_by: str,
    reason: str,
    timeout_s: float,
    request_id: str | None,
    privileged: bool,
    as_json: bool,
) -> None:
    """Ask the worker to send a paused campaign to its remaining recipients; print its answer.

    Exit status: 0 accepted, 1 rejected, 2 no answer in time or an error.
    """
    from schemas.resume import OperatorAction

    fields = {"tenant_id": tenant, "campaign_id": campaign, "requested_by": requested_by}
    ask_operator(
        {**fields, "reason": reason, "privileged": privileged, "action": OperatorAction.RESUME},
        request_id=request_id,
        timeout_s=timeout_s,
        as_json=as_json,
        sign=privileged,
    )


def ask_operator(
    fields: dict[str, Any],
    *,
    request_id: str | None,
    timeout_s: float,
    as_json: bool,
    sign: bool,
) -> None:
    """Send a request on resume-requests (signed if `sign`), print its answer and exit.

    Exit status: 0 accepted, 1 rejected, 2 no answer in time or an error.
    """
    from aiokafka.errors import KafkaError
    from pydantic import ValidationError

    from processor.runtime.bootstrap import load_settings
    from processor.services.event_input import describe_validation_error
    from schemas.resume import OperatorAction, ResumeRequest

    settings = load_settings()
    try:
        request = ResumeRequest(
            schema_version=1 if fields["action"] is OperatorAction.RESUME else 2,
            request_id=request_id or str(uuid.uuid4()),
            requested_at=datetime.now(tz=UTC),
            **fields,
        )
    except ValidationError as exc:
        raise SendguardError(f"invalid request: {describe_validation_error(exc)}") from None
    if sign:
        request = _signed(settings, request)
    try:
        outcome = asyncio.run(asyncio.wait_for(_ask(settings, request), timeout_s))
    except TimeoutError:
        raise SendguardError(
            f"no answer to request {request.request_id} within {timeout_s:g} s: is a worker up?"
        ) from None
    except KafkaError as exc:
        raise SendguardError(f"Kafka at {settings.kafka_bootstrap_servers} failed: {exc}") from exc
    click.echo(outcome.model_dump_json() if as_json else _describe(outcome))
    sys.exit(0 if outcome.accepted else 1)


def _signed(settings: Settings, request: ResumeRequest) -> ResumeRequest:
    """The request signed with the operator key of the environment (the worker verifies it)."""
    from processor.config.operator_keys import signed

    secret = settings.operator_key.get_secret_value().strip() if settings.operator_key else ""
    if not secret or not settings.operator_key_id:
        raise SendguardError(
            f"a {request.action.value} request is signed with an operator key: set "
            "SENDGUARD_OPERATOR_KEY_ID and SENDGUARD_OPERATOR_KEY"
        )
    return signed(request, settings.operator_key_id, secret)


async def _ask(settings: Settings, request: ResumeRequest) -> ResumeOutcome:
    """Publish the request, then read resume-outcomes from before it until its answer."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.errors import UnknownTopicOrPartitionError

    from processor.adapters.kafka import client_options, producer_options
    from schemas.resume import ResumeOutcome
    from schemas.topics import TopicRole

    options = client_options(settings)
    outcomes = settings.topic(TopicRole.RESUME_OUTCOMES)
    # No group: start() assigns every partition of the topic, or fails if it does not exist.
    consumer = AIOKafkaConsumer(outcomes, **options, group_id=None, enable_auto_commit=False)
    producer = AIOKafkaProducer(**producer_options(settings))
    try:  # both stopped however far they got: an unclosed client warns when collected
        try:
            await consumer.start()
        except UnknownTopicOrPartitionError as exc:
            raise SendguardError(f"topic {outcomes} does not exist: is a worker set up?") from exc
        await producer.start()
        await consumer.seek_to_end()
        for partition in consumer.assignment():  # pin the end offsets before the answer exists
            await consumer.position(partition)
        key = campaign_key(request.tenant_id, request.campaign_id).encode()
        topic = settings.topic(TopicRole.RESUME_REQUESTS)
        await producer.send_and_wait(topic, request.model_dump_json().encode(), key=key)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    if not record.value or record.key != key:
                        continue
                    outcome = ResumeOutcome.model_validate_json(record.value)
                    if outcome.request_id == request.request_id:
                        return outcome
    finally:
        await producer.stop()
        await consumer.stop()


def _describe(outcome: ResumeOutcome) -> str:
    from schemas.resume import OperatorAction

    if not outcome.accepted:
        rejection = outcome.rejection.value if outcome.rejection else "rejected"
        return f"rejected ({rejection}): {outcome.detail} [request {outcome.request_id}]"
    if outcome.action is not OperatorAction.RESUME:
        return outcome.detail
    headline = (
        f"accepted: {outcome.total_recipients} recipients in {outcome.chunk_count} chunks as "
        f"campaign {outcome.clone_campaign_id} [request {outcome.request_id}]"
    )
    lines = [headline, f"  already attempted: {outcome.already_attempted}"]
    lines.extend(f"  excluded, {reason.value}: {n}" for reason, n in outcome.excluded.items())
    return "\n".join(lines)


def _columns_help() -> str:
    from processor.domain.suppressions import (
        CONTACT_ID_COLUMNS,
        EMAIL_COLUMNS,
        STATUS_COLUMNS,
        TIME_COLUMNS,
    )

    def names(columns: tuple[str, ...]) -> str:
        return ", ".join(columns)

    return f"""Publish the opt-outs of another email system's CSV export as contact updates.

    FILE is CSV with a header row. Columns, named case-insensitively (spaces and hyphens read
    as '_'): the email, required ({names(EMAIL_COLUMNS)}); a contact id
    ({names(CONTACT_ID_COLUMNS)}; default: the lower-cased email); a status
    ({names(STATUS_COLUMNS)}: unsubscribed, bounced, complained, cleaned or a variant; a
    subscribed or active row is an error); a time ({names(TIME_COLUMNS)}: ISO 8601, UTC
    without an offset, or epoch seconds; default: now). Other columns are ignored.

    Every row is checked before Kafka is contacted: each bad row is reported on stderr with its
    line number and skipped, the others are published. --dry-run stops after the check.
    Exit status: 0 every row good (and imported), 1 some rows rejected, 2 the file or Kafka
    failed.
    """


@click.command("import-suppressions", help=_columns_help())
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", required=True, help="The tenant whose contacts opted out.")
@click.option("--source", default=None, help="The system it came from (default: file name).")
@click.option("--dry-run", is_flag=True, help="Check every row and report; publish nothing.")
def import_suppressions(file: Path, tenant: str, source: str | None, *, dry_run: bool) -> None:
    """Import opt-outs (the help comes from `_columns_help`: the columns accepted)."""
    from aiokafka.errors import KafkaError
    from tqdm import tqdm

    from processor.domain.suppressions import RowError
    from processor.runtime.bootstrap import load_settings
    from schemas.topics import TopicRole

    settings = None if dry_run else load_settings()
    now = datetime.now(UTC)
    good: dict[str, int] = {}
    rejected = 0
    with (
        _rows(file, tenant, source, now) as (lines, results),
        tqdm(total=lines, unit="line", desc="checking", file=sys.stderr, disable=None) as bar,
    ):
        for result in results:
            bar.update(max(0, result.line - bar.n))
            if isinstance(result, RowError):
                rejected += 1
                bar.write(f"sendguard: {result.message}", file=sys.stderr)
            else:
                status = result.status or "unsubscribed"
                good[status] = good.get(status, 0) + 1
        bar.update(max(0, lines - bar.n))
    counts = ", ".join(f"{status} {n}" for status, n in sorted(good.items()))
    counted = f"{sum(good.values())} opt-outs of tenant {tenant}" + (
        f" ({counts})" if counts else ""
    )
    if settings is None:
        click.echo(f"checked: {counted} to import; {rejected} rows rejected; nothing published")
        sys.exit(1 if rejected else 0)
    topic = settings.topic(TopicRole.CONTACT_UPDATES)
    if good:
        with _rows(file, tenant, source, now) as (lines, results):
            parsed = (result for result in results if not isinstance(result, RowError))
            with tqdm(
                total=lines, unit="line", desc="publishing", file=sys.stderr, disable=None
            ) as bar:
                try:
                    asyncio.run(_publish_rows(settings, topic, parsed, bar))
                except KafkaError as exc:
                    raise SendguardError(
                        f"publishing to {topic} on {settings.kafka_bootstrap_servers} failed: {exc}"
                    ) from exc
    click.echo(f"imported {counted} to {topic}; {rejected} rows rejected")
    sys.exit(1 if rejected else 0)


@contextmanager
def _rows(
    file: Path, tenant: str, source: str | None, now: datetime
) -> Iterator[tuple[int, Iterator[RowResult]]]:
    """The file's line count and its rows, parsed lazily; its errors as SendguardError."""
    from processor.domain.suppressions import SuppressionFileError, parse_suppression_rows

    try:
        with file.open(encoding="utf-8", newline="") as handle:
            lines = sum(1 for _ in handle)
            handle.seek(0)
            results = parse_suppression_rows(
                handle, tenant_id=tenant, source=source or file.name[:100], now=now
            )
            yield lines, results
    except (SuppressionFileError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise SendguardError(f"{file}: {exc}") from exc


async def _publish_rows(
    settings: Settings, topic: str, rows: Iterator[ParsedRow], bar: tqdm[Any]
) -> None:
    """Publish each row's update, a bounded number in flight at a time."""
    from aiokafka import AIOKafkaProducer

    from processor.adapters.kafka import producer_options

    producer = AIOKafkaProducer(**producer_options(settings))
    try:  # stopped even if it never connected: an unclosed producer warns when collected
        await producer.start()
        in_flight: list[asyncio.Future[object]] = []
        for row in rows:
            bar.update(max(0, row.line - bar.n))
            update = row.update
            value = update.model_dump_json().encode()
            in_flight.append(await producer.send(topic, value, key=update.key.encode()))
            if len(in_flight) >= PUBLISH_BATCH:
                await asyncio.gather(*in_flight)
                in_flight.clear()
        await asyncio.gather(*in_flight)
        bar.update(max(0, (bar.total or 0) - bar.n))
    finally:
        await producer.stop()
