"""The `sendguard` group: help for every command, and our errors as one line with exit 2."""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING

import click
import pytest
from click.testing import CliRunner

from processor.cli import EXIT_ERROR, SendguardGroup, main
from processor.errors import ConfigurationError

if TYPE_CHECKING:
    from tests.unit.cli.conftest import Sendguard


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command under `group`, subcommands of nested groups included."""
    paths = []
    for name, command in sorted(group.commands.items()):
        paths.append((*prefix, name))
        if isinstance(command, click.Group):
            paths.extend(command_paths(command, (*prefix, name)))
    return paths


EXPECTED_COMMANDS = {
    "worker",
    "replay",
    "demo",
    "lock",
    "unlock",
    "schemas",
    "topics",
    "resume",
    "import-suppressions",
    "webhooks",
    "normalize",
    "dashboard",
    "mail",
    "verp",
    "unsubscribe-link",
    "mta-logs",
    "status",
    "explain",
    "bridge",
}


def test_group_help_names_every_command(sendguard: Sendguard) -> None:
    """`sendguard --help` exits 0 and lists every command with its one-line summary."""
    result = sendguard("--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: sendguard [OPTIONS] COMMAND [ARGS]...")
    listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line}
    assert listed == EXPECTED_COMMANDS == set(main.commands)


@pytest.mark.parametrize("path", command_paths(main), ids=" ".join)
def test_each_command_has_help(sendguard: Sendguard, path: tuple[str, ...]) -> None:
    """`sendguard CMD --help` (and `-h`) exits 0 with its usage line and a description."""
    for flag in ("--help", "-h"):
        result = sendguard(*path, flag)
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith(f"Usage: sendguard {' '.join(path)} ")
        description = result.stdout.split("\n\n")[1].strip()
        assert len(description) > 10, result.stdout
        assert result.stderr == ""


def test_a_sendguard_error_is_one_line_on_stderr_with_exit_2(sendguard: Sendguard) -> None:
    """An invalid SENDGUARD_ setting ends `topics create` as `sendguard: <message>`, exit 2."""
    result = sendguard.with_env(SENDGUARD_TOPIC_PARTITIONS="none")("topics", "create")
    assert result.exit_code == EXIT_ERROR == 2
    assert result.stdout == ""
    assert result.stderr.startswith("sendguard: invalid configuration: SENDGUARD_TOPIC_PARTITIONS")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_the_configuration_error_never_quotes_the_value(sendguard: Sendguard) -> None:
    """A bad secret's value stays off the terminal: only the variable is named."""
    secret = "s3cr3t-not-a-url"  # noqa: S105  # a value the message must not repeat
    result = sendguard.with_env(SENDGUARD_REDIS_KEY_PREFIX=f"bad prefix {secret}")(
        "topics", "create"
    )
    assert result.exit_code == EXIT_ERROR
    assert "SENDGUARD_REDIS_KEY_PREFIX" in result.stderr
    assert secret not in result.stderr


def test_an_unknown_command_is_a_usage_error(sendguard: Sendguard) -> None:
    """A mistyped command exits 2 with click's usage error, not a traceback."""
    result = sendguard("replya")
    assert result.exit_code == 2
    assert "No such command 'replya'" in result.stderr


@pytest.mark.parametrize(
    ("raised", "status", "stderr"),
    [
        (KeyboardInterrupt(), 130, "sendguard: interrupted\n"),
        (BrokenPipeError(32, "Broken pipe"), 141, ""),
        (ConfigurationError("SENDGUARD_X: bad"), 2, "sendguard: SENDGUARD_X: bad\n"),
    ],
    ids=["ctrl-c", "closed-stdout", "sendguard-error"],
)
def test_the_group_ends_every_command_the_same_way(
    raised: BaseException, status: int, stderr: str
) -> None:
    """Ctrl-C, a closed stdout and our errors end any command without a traceback."""

    @click.group(cls=SendguardGroup)
    def group() -> None:
        """A group like `sendguard`."""

    @group.command()
    def fails() -> None:
        """Raise."""
        raise raised

    result = CliRunner().invoke(group, ["fails"])
    assert (result.exit_code, result.stderr, result.stdout) == (status, stderr, "")


def test_version_names_the_installed_release(sendguard: Sendguard) -> None:
    """`sendguard --version` prints the installed package's version, exit 0."""
    result = sendguard("--version")
    assert result.exit_code == 0
    assert result.stdout == f"sendguard, version {version('sendguard')}\n"
