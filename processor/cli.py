"""The `sendguard` command: the only place that reads the environment and builds clients."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn, TextIO

import click
from pydantic import SecretStr, ValidationError

from processor.errors import ConfigurationError, SendguardError
from processor.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from redis.asyncio import Redis

    from processor.adapters.redis_store import RedisStore
    from processor.domain.policy import PolicyBook
    from processor.messages import RawRecord


DEMO_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
"""Event time at which the demo stream starts (fixed, so every run prints the same)."""


def _fail(message: str) -> NoReturn:
    click.echo(f"sendguard: {message}", err=True)
    sys.exit(2)


def load_settings() -> Settings:
    """Settings from the environment; a bad value stops here with the variable's name."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            field, *inside = (str(part) for part in error["loc"])
            # The variable is the field's; what lies inside it (a key, an item) is not a name.
            where = f" ({'.'.join(inside)})" if inside else ""
            problems.append(f"SENDGUARD_{field.upper()}{where}: {error['msg']}")
        _fail("invalid configuration: " + "; ".join(problems))


def build_redis(settings: Settings) -> Redis:
    """A Redis client with bounded retries on connection errors."""
    from redis.asyncio import Redis  # noqa: PLC0415  # keep `sendguard --help` fast
    from redis.backoff import ExponentialBackoff  # noqa: PLC0415  # same as above
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415  # same
    from redis.exceptions import TimeoutError as RedisTimeoutError  # noqa: PLC0415  # same
    from redis.retry import Retry  # noqa: PLC0415  # same as above

    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        password=password,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=6),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def build_store(settings: Settings, client: Redis, book: PolicyBook) -> RedisStore:
    """The Redis detection store with TTLs derived from the policy's longest window."""
    from processor.adapters.keys import Keys  # noqa: PLC0415  # keep `sendguard --help` fast
    from processor.adapters.redis_store import RedisStore  # noqa: PLC0415  # same as above

    longest_ms = book.longest_window_ms
    margin_ms = int(settings.state_margin_s * 1000)
    return RedisStore(
        client,
        Keys(settings.redis_key_prefix),
        state_ttl_ms=longest_ms + margin_ms,
        paused_state_ttl_ms=int(settings.paused_state_ttl_s * 1000),
        seen_ttl_ms=2 * longest_ms + margin_ms,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """sendguard: pause email campaigns whose bounce, complaint or unsubscribe rates spike."""


@main.command()
def worker() -> None:
    """Run the stream worker: detection, pause commands and health (SIGTERM stops it)."""
    from processor.adapters.kafka import declare_topics  # noqa: PLC0415  # heavy imports only here
    from processor.app import Wiring, create_app, run_worker  # noqa: PLC0415  # same as above
    from processor.cli_resume import build_contact_store, with_resume  # noqa: PLC0415  # same
    from processor.detection import DetectionService, Publisher  # noqa: PLC0415  # same as above
    from processor.logs import configure_logging  # noqa: PLC0415  # same as above
    from processor.policy_file import PolicyHolder  # noqa: PLC0415  # same as above
    from processor.settings import WorkerRole  # noqa: PLC0415  # same as above

    settings = load_settings()
    configure_logging(settings.log_level)
    try:
        holder = PolicyHolder(settings.policy_file)
    except ConfigurationError as exc:
        _fail(str(exc))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(declare_topics(settings))
    except SendguardError as exc:
        _fail(str(exc))
    redis_client = build_redis(settings)
    store = build_store(settings, redis_client, holder())
    contacts = build_contact_store(settings, redis_client)

    skew_ms = int(settings.max_future_skew_s * 1000)

    def detection(publisher: Publisher) -> DetectionService:
        return DetectionService(
            store,
            publisher,
            holder,
            contacts=contacts,
            max_future_skew_ms=skew_ms,
            health_min_interval_s=settings.health_min_interval_s,
            state_cache_campaigns=settings.state_cache_campaigns,
            state_write_behind_s=settings.state_write_behind_ms / 1000,
        )

    roles = settings.worker_roles
    wiring = Wiring(
        detection=detection if WorkerRole.DETECT in roles else None, reload_policy=holder.reload
    )
    if WorkerRole.RESUME in roles:
        wiring = with_resume(wiring, settings, store, contacts, holder)
    app = create_app(settings, wiring)
    run_worker(app, loop, settings.log_level)


@main.command("replay")
@click.argument("source", type=click.File("rb"))
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML policy file (built-in defaults if omitted).",
)
@click.option("--redis", "redis_url", help="Use this Redis instead of the embedded store.")
@click.option("--key-prefix", default="sendguard-replay", show_default=True)
@click.option(
    "--provider",
    "provider_name",
    type=click.Choice(["ses", "sendgrid", "mailgun", "postmark", "sparkpost"]),
    help="SOURCE holds this provider's webhook payloads (one document, or one per line).",
)
@click.option("--tenant", "tenant_id", default="default", show_default=True)
@click.option("--campaign", "campaign_id", help="Campaign of payloads that name none.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def replay_command(
    source: BinaryIO,
    policy_path: Path | None,
    redis_url: str | None,
    key_prefix: str,
    *,
    provider_name: str | None,
    tenant_id: str,
    campaign_id: str | None,
    no_progress: bool,
) -> None:
    """Run detection over SOURCE (JSON lines of events, '-' for stdin) without Kafka.

    Prints the pause commands and status changes the worker would publish as JSON lines on
    stdout, and a summary table per campaign on stderr.
    """
    from processor.replay import records_from_lines  # noqa: PLC0415  # keep `sendguard --help` fast

    if provider_name is None:
        records = records_from_lines(source)
    else:
        from processor.adapters.providers import Provider  # noqa: PLC0415  # same as above
        from processor.cli_normalize import normalize_file  # noqa: PLC0415  # same as above

        def provider_lines() -> Iterator[str]:
            results = normalize_file(
                Provider(provider_name), tenant_id, source.read(), fallback_campaign_id=campaign_id
            )
            for result in results:
                for rejection in result.rejected:
                    click.echo(f"rejected {rejection.reason}", err=True)
                yield from (event.model_dump_json() for event in result.events)

        records = records_from_lines(provider_lines())
    _run_replay(records, policy_path, redis_url, key_prefix, no_progress=no_progress)


def _run_replay(
    records: Iterable[RawRecord],
    policy_path: Path | None,
    redis_url: str | None,
    key_prefix: str,
    *,
    no_progress: bool,
    total: int | None = None,
) -> None:
    from tqdm import tqdm  # noqa: PLC0415  # keep `sendguard --help` fast

    from processor.adapters.keys import Keys  # noqa: PLC0415  # same as above
    from processor.adapters.redis_store import RedisStore  # noqa: PLC0415  # same as above
    from processor.policy_file import PolicyHolder  # noqa: PLC0415  # same as above
    from processor.replay import render_summary, replay  # noqa: PLC0415  # same as above
    from processor.store import DetectionStore, InMemoryStore  # noqa: PLC0415  # same as above

    try:
        holder = PolicyHolder(policy_path)
    except ConfigurationError as exc:
        _fail(str(exc))
    bar = tqdm(total=total, unit=" events", disable=no_progress, file=sys.stderr)

    async def run() -> str:
        store: DetectionStore = InMemoryStore()
        client = None
        if redis_url is not None:
            client = build_redis(Settings(redis_url=SecretStr(redis_url)))
            longest = holder().longest_window_ms
            store = RedisStore(
                client,
                Keys(key_prefix),
                state_ttl_ms=2 * longest,
                paused_state_ttl_ms=2 * longest,
                seen_ttl_ms=2 * longest,
            )
        try:
            result = await replay(
                records,
                store=store,
                policy_book=holder,
                out=sys.stdout,
                errors=sys.stderr,
                progress=bar.update,
            )
        finally:
            if client is not None:
                await client.aclose()
        return render_summary(result)

    try:
        summary = asyncio.run(run())
    except SendguardError as exc:
        _fail(str(exc))
    finally:
        bar.close()
    click.echo(summary, err=True)


@main.command()
@click.option("--seed", default=7, show_default=True, help="Seed of the generated stream.")
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML policy file (built-in defaults if omitted).",
)
@click.option(
    "--events-out",
    type=click.File("w"),
    help="Also write the generated events here as JSON lines (input for `replay`).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def demo(
    seed: int, policy_path: Path | None, events_out: TextIO | None, *, no_progress: bool
) -> None:
    """Replay a realistic seeded stream: tenants, healthy and bad lists, a complaint wave.

    Same output as `replay`: decisions as JSON lines on stdout, the summary on stderr.
    """
    from processor.messages import FILE_TOPIC, RawRecord  # noqa: PLC0415  # keep `sendguard --help` fast
    from processor.workload import merged_events, to_json_line  # noqa: PLC0415  # same as above
    from processor.workload_profiles import (  # noqa: PLC0415  # same as above
        demo_profiles,
        expected_event_count,
    )

    profiles = demo_profiles(seed)
    total = int(sum(expected_event_count(p) for p in profiles))

    def records() -> Iterator[RawRecord]:
        events = merged_events(profiles, seed, DEMO_START)
        for number, event in enumerate(events):
            line = to_json_line(event)
            if events_out is not None:
                events_out.write(line + "\n")
            yield RawRecord(FILE_TOPIC, 0, number, None, line.encode(), None)

    _run_replay(records(), policy_path, None, "", no_progress=no_progress, total=total)


@main.command("lock")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--by", "locked_by", required=True, help="Who locks it (shown to requesters).")
@click.option("--reason", default="", help="Why, for the record.")
def lock_command(tenant_id: str, campaign_id: str, locked_by: str, reason: str) -> None:
    """Lock a campaign's pause: only a privileged resume request may lift it."""
    lock = json.dumps(
        {"by": locked_by, "reason": reason, "at": datetime.now(tz=UTC).isoformat()},
        separators=(",", ":"),
    )
    _set_lock(tenant_id, campaign_id, lock)
    click.echo(f"locked {tenant_id}:{campaign_id} (by {locked_by})")


@main.command("unlock")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
def unlock_command(tenant_id: str, campaign_id: str) -> None:
    """Lift the operator lock of a campaign's pause (the pause itself stays)."""
    _set_lock(tenant_id, campaign_id, None)
    click.echo(f"unlocked {tenant_id}:{campaign_id}")


def _set_lock(tenant_id: str, campaign_id: str, lock: str | None) -> None:
    from processor.policy_file import load_policy_file  # noqa: PLC0415  # keep `sendguard --help` fast
    from processor.store import CampaignRef  # noqa: PLC0415  # same as above

    settings = load_settings()

    async def run() -> None:
        client = build_redis(settings)
        try:
            store = build_store(settings, client, load_policy_file(settings.policy_file))
            await store.set_campaign_lock(CampaignRef(tenant_id, campaign_id), lock)
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    except SendguardError as exc:
        _fail(str(exc))


@main.group()
def schemas() -> None:
    """Message contracts of the topics."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--asyncapi-only", is_flag=True, help="Write only asyncapi.yaml.")
def schemas_export(directory: Path, *, asyncapi_only: bool) -> None:
    """Write a JSON Schema per message and an AsyncAPI 3 document into DIRECTORY."""
    from processor.schema_export import (  # noqa: PLC0415  # keep `sendguard --help` fast
        ASYNCAPI_FILE_NAME,
        asyncapi_document,
        export,
        render_asyncapi_yaml,
    )

    prefix = load_settings().topic_prefix
    directory.mkdir(parents=True, exist_ok=True)
    if asyncapi_only:
        path = directory / ASYNCAPI_FILE_NAME
        path.write_text(render_asyncapi_yaml(asyncapi_document(prefix)), encoding="utf-8")
        written = [path]
    else:
        written = export(directory, topic_prefix=prefix)
    for path in written:
        click.echo(str(path))


@main.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every sendguard topic that is missing (partitions, compaction as documented)."""
    from processor.adapters.kafka import declare_topics  # noqa: PLC0415  # heavy imports only here

    settings = load_settings()
    try:
        created = asyncio.run(declare_topics(settings))
    except SendguardError as exc:
        _fail(str(exc))
    click.echo("created: " + (", ".join(created) if created else "nothing, all topics exist"))


from processor.cli_resume import import_suppressions, resume  # noqa: E402  # registered last

main.add_command(resume)
main.add_command(import_suppressions)

from processor.cli_webhooks import webhooks  # noqa: E402  # registered last: it imports from here lazily

main.add_command(webhooks)

from processor.cli_normalize import normalize_command  # noqa: E402  # registered last, like the others

main.add_command(normalize_command)
