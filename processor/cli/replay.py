"""`sendguard replay` and `sendguard demo`: detection over a file or a seeded stream, no Kafka."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

import click

from processor.adapters.providers import Provider
from processor.cli.exit_codes import EXIT_REJECTED
from processor.cli.normalize import PROVIDER_CHOICE

if TYPE_CHECKING:
    from collections.abc import Iterator

    from processor.cli.replay_run import ReplayInput
    from processor.ports.records import RawRecord
    from processor.services.replay import ReplayResult


DEMO_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
"""Event time at which the demo stream starts (fixed, so every run prints the same)."""


_KEY_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+$")


def _checked_prefix(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not _KEY_PREFIX.match(value):
        raise click.BadParameter("letters, digits, '_', '.' and '-' only")
    return value


@click.command("replay")
@click.argument("source", type=click.File("rb"))
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML policy file (built-in defaults if omitted).",
)
@click.option(
    "--redis",
    "redis_url",
    metavar="URL",
    help="Run on this Redis (redis://, rediss://) instead of the embedded store.",
)
@click.option(
    "--key-prefix",
    callback=_checked_prefix,
    help="With --redis: keep the state under this key prefix (reused by the next run with it). "
    "Default: a fresh prefix per run, its keys deleted at the end.",
)
@click.option(
    "--compare-policy",
    "compare_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also replay under this policy (embedded store) and print the pauses that differ.",
)
@click.option(
    "--provider",
    "provider_name",
    type=PROVIDER_CHOICE,
    help="SOURCE holds this provider's webhook payloads (one document, or one per line).",
)
@click.option("--tenant", "tenant_id", default="default", show_default=True)
@click.option("--campaign", "campaign_id", help="Campaign of payloads that name none.")
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def replay_command(
    source: BinaryIO,
    policy_path: Path | None,
    redis_url: str | None,
    key_prefix: str | None,
    *,
    provider_name: str | None,
    tenant_id: str,
    campaign_id: str | None,
    no_progress: bool,
    compare_path: Path | None = None,
) -> None:
    """Run detection over SOURCE (JSON lines of delivery events, '-' for stdin) without Kafka.

    SOURCE may be gzip-compressed (the content tells, whatever its name). With --provider it
    holds that provider's webhook payloads instead: one document, or one per line.

    Prints the pause commands and status changes the worker would publish as JSON lines on
    stdout, and a summary table per campaign on stderr.

    Exit status: 0 every event applied (duplicates and late ones included); 1 input rejected
    (some lines, each named on stderr, or all of it, or no events at all); 2 sendguard could
    not run (configuration, Redis, an unreadable file); 130 stopped by Ctrl-C (the summary
    covers what was read); 141 stdout closed (`| head`), stopped quietly.
    """
    from processor.cli.replay_run import Interrupt, ReplayInput, run_replay
    from processor.cli.replay_source import UnusableSourceError, open_source
    from processor.services.replay import records_from_lines

    name = str(getattr(source, "name", "-"))  # a stream without a name is a stdin too
    name = "stdin" if name in {"<stdin>", "-"} else name
    try:
        stream = open_source(source, name, provider=provider_name is not None)
    except UnusableSourceError as exc:
        click.echo(f"sendguard: {exc}", err=True)
        click.get_current_context().exit(EXIT_REJECTED)
    interrupt = Interrupt()
    replay_input = ReplayInput(name)
    if provider_name is None:
        records = records_from_lines(interrupt.lines(stream))
    else:
        replay_input.unit = "normalized event"
        data = interrupt.read(stream)
        provider = Provider(provider_name.lower())
        lines = _provider_events(provider, tenant_id, data, campaign_id, replay_input)
        records = records_from_lines(lines)
    if compare_path is not None:
        _compare(list(records), policy_path, compare_path)
        return
    run_replay(
        records,
        policy_path,
        redis_url,
        key_prefix,
        replay_input=replay_input,
        interrupt=interrupt,
        no_progress=no_progress,
    )


def _compare(records: list[RawRecord], first: Path | None, second: Path) -> None:
    """Replay the same records under two policies; print the first's decisions and the diff."""
    import io

    from processor.config.policy_file import PolicyHolder
    from processor.ports.detection_store import InMemoryStore
    from processor.services.replay import pause_differences, render_differences, replay

    def run(path: Path | None, out: TextIO) -> ReplayResult:
        holder = PolicyHolder(path)
        return asyncio.run(
            replay(records, store=InMemoryStore(), policy_book=holder, out=out, errors=sys.stderr)
        )

    mine, theirs = run(first, sys.stdout), run(second, io.StringIO())
    differences = pause_differences(mine, theirs)
    click.echo(render_differences(differences, str(first or "defaults"), str(second)), err=True)


def _provider_events(
    provider: Provider,
    tenant_id: str,
    data: bytes,
    campaign_id: str | None,
    replay_input: ReplayInput,
) -> Iterator[str]:
    """The events of provider payloads as JSON lines; rejections reported by line and record."""
    from processor.cli.normalize import normalize_file

    for line, result in normalize_file(provider, tenant_id, data, fallback_campaign_id=campaign_id):
        for rejection in result.rejected:
            replay_input.rejected += 1
            where = [] if line is None else [f"line {line}"]
            if rejection.index is not None:
                where.append(f"record {rejection.index + 1}")
            elif line is None:
                where.append("record 1")
            click.echo(f"rejected {', '.join(where)}: {rejection.reason}", err=True)
        yield from (event.model_dump_json() for event in result.events)


@click.command()
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
@click.option(
    "--max-events",
    type=click.IntRange(min=1),
    help="Stop after the stream's first N events (a quick look, or a smaller --events-out).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def demo(
    seed: int,
    policy_path: Path | None,
    events_out: TextIO | None,
    max_events: int | None,
    *,
    no_progress: bool,
) -> None:
    """Replay a realistic seeded stream: tenants, healthy and bad lists, a complaint wave.

    Same output as `replay`: decisions as JSON lines on stdout, the summary on stderr.
    """
    from processor.cli.replay_run import Interrupt, ReplayInput, run_replay
    from processor.ports.records import FILE_TOPIC, RawRecord
    from processor.simulation.profiles import demo_profiles, expected_event_count
    from processor.simulation.workload import merged_events, to_json_line

    profiles = demo_profiles(seed)
    total = int(sum(expected_event_count(p) for p in profiles))
    if max_events is not None:
        total = min(total, max_events)

    def records() -> Iterator[RawRecord]:
        events = islice(merged_events(profiles, seed, DEMO_START), max_events)
        for number, event in enumerate(events):
            line = to_json_line(event)
            if events_out is not None:
                events_out.write(line + "\n")
            yield RawRecord(FILE_TOPIC, 0, number, None, line.encode(), None)

    run_replay(
        records(),
        policy_path,
        None,
        None,
        replay_input=ReplayInput("the demo stream"),
        interrupt=Interrupt(),
        no_progress=no_progress,
        total=total,
    )
