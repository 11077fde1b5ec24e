"""The `sendguard` command group: one module per command group, registered here.

The command modules never import this package (no cycle); they reach the environment and the
clients through `processor.runtime.bootstrap`. A `SendguardError` from any command becomes one
line on stderr and exit status 2, here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import click

from processor.cli.contracts import schemas, topics
from processor.cli.dashboard import dashboard_command
from processor.cli.locks import lock_command, unlock_command
from processor.cli.normalize import normalize_command
from processor.cli.replay import demo, replay_command
from processor.cli.resume import import_suppressions, resume
from processor.cli.status import explain_command, status_command
from processor.cli.webhooks import webhooks
from processor.cli.worker import worker
from processor.errors import SendguardError

EXIT_ERROR = 2
"""Exit status of a command that could not do its work (configuration, Kafka, Redis, a file)."""


class SendguardGroup(click.Group):
    """A click group that reports our own errors as one line, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a SendguardError ends it with its message and EXIT_ERROR."""
        try:
            return super().invoke(ctx)
        except SendguardError as exc:
            click.echo(f"sendguard: {exc}", err=True)
            ctx.exit(EXIT_ERROR)


@click.group(cls=SendguardGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """sendguard: pause email campaigns whose bounce, complaint or unsubscribe rates spike."""


for command in (
    worker,
    replay_command,
    demo,
    lock_command,
    unlock_command,
    schemas,
    topics,
    resume,
    import_suppressions,
    webhooks,
    normalize_command,
    status_command,
    explain_command,
    dashboard_command,
):
    main.add_command(command)
