"""The `sendguard` command group: one module per command group, registered here.

The command modules never import this package (no cycle); they reach the environment and the
clients through `processor.runtime.bootstrap`. A `SendguardError` from any command becomes one
line on stderr and exit status 2, here and nowhere else; so do a closed stdout and Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from processor.cli.bridge import bridge
from processor.cli.contracts import schemas, topics
from processor.cli.dashboard import dashboard_command
from processor.cli.exit_codes import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED
from processor.cli.explain import explain_command
from processor.cli.locks import lock_command, unlock_command
from processor.cli.mail import mail_command, unsubscribe_link_command, verp_command
from processor.cli.mta_logs import mta_logs_command
from processor.cli.normalize import normalize_command
from processor.cli.replay import demo, replay_command
from processor.cli.resume import import_suppressions, resume
from processor.cli.status import status_command
from processor.cli.webhooks import webhooks
from processor.cli.worker import worker
from processor.errors import SendguardError

__all__ = ["EXIT_ERROR", "SendguardGroup", "main"]


class SendguardGroup(click.Group):
    """A click group that reports our own errors as one line, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a SendguardError ends it with its message and EXIT_ERROR.

        A closed stdout (`sendguard replay FILE | head -1`) ends it quietly with
        EXIT_OUTPUT_CLOSED, and Ctrl-C with one line and EXIT_INTERRUPTED: neither is a bug.
        """
        try:
            return super().invoke(ctx)
        except SendguardError as exc:
            click.echo(f"sendguard: {exc}", err=True)
            ctx.exit(EXIT_ERROR)
        except BrokenPipeError:
            _discard_stdout()
            ctx.exit(EXIT_OUTPUT_CLOSED)
        except KeyboardInterrupt:
            click.echo("sendguard: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


def _discard_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's last flush must not fail on the closed pipe.

    As the Python documentation advises for SIGPIPE; a stdout without a file (a test's) is
    left alone.
    """
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@click.group(cls=SendguardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sendguard", prog_name="sendguard")
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
    mail_command,
    verp_command,
    unsubscribe_link_command,
    mta_logs_command,
    bridge,
):
    main.add_command(command)
