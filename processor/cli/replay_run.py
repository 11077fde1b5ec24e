"""Running a replay for `replay` and `demo`: the store, Ctrl-C, a closed stdout, the exit status.

Ctrl-C stops reading: the batch in hand is finished, the summary so far printed, and the exit
status is 130; a second Ctrl-C stops at once. A closed stdout stops the replay quietly.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import click
from pydantic import SecretStr

from processor.cli.exit_codes import EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED
from processor.errors import ConfigurationError, StoreUnavailableError
from schemas.base import campaign_key

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path
    from types import FrameType

    from redis.asyncio import Redis

    from processor.domain.policy import PolicyBook
    from processor.ports.detection_store import DetectionStore
    from processor.ports.records import RawRecord
    from processor.services.replay import ReplayResult


class Interrupt:
    """The SIGINT handler of a replay: the first Ctrl-C ends the input, a second one stops.

    While the replay waits for input (a terminal, a slow pipe) the first one stops at once too:
    nothing is half-applied then. Anywhere else it is only noted, and the input ends before the
    next record: a KeyboardInterrupt in the middle of a batch could leave it half-applied.
    """

    def __init__(self) -> None:
        self.requested = False
        self.reading = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        """Note the request; raise KeyboardInterrupt if waiting for input or asked twice."""
        again = self.requested
        self.requested = True
        if again or self.reading:
            raise KeyboardInterrupt

    def lines(self, stream: BinaryIO) -> Iterator[bytes]:
        """The lines of `stream`; Ctrl-C while one is awaited ends them."""
        try:
            while True:
                self.reading = True
                try:
                    line = stream.readline()
                finally:
                    self.reading = False
                if not line:
                    return
                yield line
        except KeyboardInterrupt:
            self.requested = True

    def read(self, stream: BinaryIO) -> bytes:
        """All of `stream`; what came until Ctrl-C if it was pressed meanwhile."""
        return b"".join(self.lines(stream))

    def records(self, records: Iterable[RawRecord]) -> Iterator[RawRecord]:
        """`records` until Ctrl-C."""
        for record in records:
            if self.requested:
                return
            yield record

    @contextmanager
    def installed(self) -> Iterator[None]:
        """This handler for SIGINT within the block (and asyncio's own then stays out)."""
        previous = signal.signal(signal.SIGINT, self)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass(slots=True)
class ReplayInput:
    """What the command knows of its input beyond the replay's own counts."""

    name: str
    """SOURCE as named in messages ("stdin", a path, "the demo stream")."""
    unit: str = "line"
    """What a rejected record is called: a line of SOURCE, or a normalized event."""
    rejected: int = 0
    """Records rejected before the replay: provider records that could not be normalized."""


def run_replay(
    records: Iterable[RawRecord],
    policy_path: Path | None,
    redis_url: str | None,
    key_prefix: str | None,
    *,
    replay_input: ReplayInput,
    interrupt: Interrupt,
    no_progress: bool,
    total: int | None = None,
) -> None:
    """Replay `records`, print the summary on stderr and exit with the replay's status.

    `interrupt` is installed as the SIGINT handler meanwhile; the input read through it.
    """
    from tqdm import tqdm

    from processor.adapters.keys import Keys
    from processor.adapters.redis_namespace import delete_namespace
    from processor.adapters.redis_store import RedisStore
    from processor.config.policy_file import PolicyHolder
    from processor.config.settings import Settings
    from processor.services.replay import (
        OutputClosedError,
        embedded_store,
        render_summary,
        replay,
        replay_ttl_ms,
    )

    holder = PolicyHolder(policy_path)
    bar = tqdm(total=total, unit=" events", disable=no_progress, file=sys.stderr)
    # The worker's future-skew rule, as configured (SENDGUARD_MAX_FUTURE_SKEW_S).
    skew_ms = round(Settings().max_future_skew_s * 1000)

    notes: list[str] = []

    async def run() -> ReplayResult:
        if redis_url is None:
            return await replay_on(embedded_store(holder()))
        client = _redis_client(redis_url)
        prefix = key_prefix or f"sendguard-replay-{uuid.uuid4().hex[:12]}"
        ttl_ms = replay_ttl_ms(holder())
        keys = Keys(prefix)
        store = RedisStore(
            client, keys, state_ttl_ms=ttl_ms, paused_state_ttl_ms=ttl_ms, seen_ttl_ms=ttl_ms
        )
        try:
            return await replay_on(store)
        finally:
            try:
                if key_prefix is None:
                    deleted = await delete_namespace(client, keys)
                    notes.append(f"Redis: ran under key prefix {prefix}, {deleted} keys deleted")
                else:
                    notes.append(f"Redis: the replay's state is kept under key prefix {prefix}")
            except StoreUnavailableError as exc:
                notes.append(f"sendguard: the keys under prefix {prefix} are left: {exc}")
            finally:
                await client.aclose()

    async def replay_on(store: DetectionStore) -> ReplayResult:
        return await replay(
            interrupt.records(records),
            store=store,
            policy_book=holder,
            out=sys.stdout,
            errors=sys.stderr,
            progress=bar.update,
            max_future_skew_ms=skew_ms,
            unit=replay_input.unit,
        )

    try:
        with interrupt.installed():
            result = asyncio.run(run())
    except OutputClosedError as exc:
        raise BrokenPipeError from exc  # the command group ends it quietly
    finally:
        bar.close()
    click.echo(render_summary(result), err=True)
    for note in notes:
        click.echo(note, err=True)
    if not interrupt.requested:
        _warn_unmatched_overrides(holder(), result, replay_input.name)
    status = _conclude(result, replay_input, interrupted=interrupt.requested)
    click.get_current_context().exit(status)


def _redis_client(url: str) -> Redis:
    """A client of the Redis at `url` (--redis), with the other SENDGUARD_REDIS_* settings."""
    from processor.runtime.bootstrap import build_redis, load_settings

    settings = load_settings().model_copy(update={"redis_url": SecretStr(url)})
    try:
        return build_redis(settings)
    except ValueError as exc:  # redis-py: not a redis://, rediss:// or unix:// URL
        raise ConfigurationError(f"--redis: {exc}") from None


def _warn_unmatched_overrides(book: PolicyBook, result: ReplayResult, name: str) -> None:
    """Name the policy's tenant and campaign overrides no event used: likely a typo."""
    tenants = {c.tenant_id for c in result.summary.campaigns}
    campaigns = {(c.tenant_id, c.campaign_id) for c in result.summary.campaigns}
    unmatched = [f"tenant {tenant!r}" for tenant in sorted(set(book.tenants) - tenants)]
    unmatched += [
        f"campaign {campaign_key(*ref)!r}" for ref in sorted(set(book.campaigns) - campaigns)
    ]
    for override in unmatched:
        click.echo(
            f"sendguard: warning: the policy's override for {override} matched no event of "
            f"{name}: a typo?",
            err=True,
        )


def _conclude(result: ReplayResult, replay_input: ReplayInput, *, interrupted: bool) -> int:
    """Say what went wrong with the input, if anything; the exit status."""
    from processor.cli.replay_source import PROVIDER_HINT

    if replay_input.rejected:
        click.echo(f"{replay_input.rejected} provider records rejected", err=True)
    if interrupted:
        click.echo("interrupted: the summary covers the events read until Ctrl-C", err=True)
        return EXIT_INTERRUPTED
    if result.events == 0 and not replay_input.rejected:
        click.echo(f"sendguard: no events in {replay_input.name}", err=True)
        return EXIT_REJECTED
    if result.events and result.rejected == result.events and replay_input.unit == "line":
        click.echo(
            f"sendguard: no line of {replay_input.name} was a delivery event; {PROVIDER_HINT}",
            err=True,
        )
    return EXIT_REJECTED if result.rejected or replay_input.rejected else EXIT_OK
