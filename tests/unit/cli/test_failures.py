"""Commands that cannot do their work end with one clear line: no traceback, no stray warning."""

from __future__ import annotations

import gc
import logging
import warnings
from typing import TYPE_CHECKING

import pytest

from processor.cli.exit_codes import EXIT_ERROR

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.cli.conftest import Sendguard

NO_KAFKA = "127.0.0.1:1"
"""A bootstrap address where no broker listens: connecting is refused at once."""


def test_schemas_export_creates_missing_parents(sendguard: Sendguard, tmp_path: Path) -> None:
    """A directory whose parents do not exist yet is created with them."""
    target = tmp_path / "a" / "b" / "contracts"
    result = sendguard("schemas", "export", str(target))
    assert result.exit_code == 0, result.stderr
    assert (target / "asyncapi.yaml").is_file()
    assert str(target / "asyncapi.yaml") in result.stdout.splitlines()


@pytest.mark.parametrize("under", ["a-file", "a-file/sub"], ids=["is-a-file", "under-a-file"])
def test_schemas_export_where_it_cannot_write_is_a_usage_error(
    sendguard: Sendguard, tmp_path: Path, under: str
) -> None:
    """A path that is, or lies under, a file: exit 2 and the reason, not a traceback."""
    (tmp_path / "a-file").write_text("")
    result = sendguard("schemas", "export", str(tmp_path / under))
    assert result.exit_code == EXIT_ERROR
    assert "Traceback" not in result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("Error: Invalid value for")
    assert "DIRECTORY" in last
    assert "a-file" in last


def unclosed_clients(
    caplog: pytest.LogCaptureFixture, recorded: list[warnings.WarningMessage]
) -> list[str]:
    """Reports of Kafka clients dropped without being stopped, as warnings or asyncio logs."""
    gc.collect()
    reports = [str(w.message) for w in recorded if "Unclosed" in str(w.message)]
    return reports + [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]


@pytest.mark.parametrize(
    "args",
    [
        ("import-suppressions", "{csv}", "--tenant", "acme"),
        ("resume", "--tenant", "acme", "--campaign", "c1", "--by", "ops", "--timeout", "20"),
    ],
    ids=["import-suppressions", "resume"],
)
def test_kafka_down_is_one_line_and_no_unclosed_client(
    sendguard: Sendguard, tmp_path: Path, caplog: pytest.LogCaptureFixture, args: tuple[str, ...]
) -> None:
    """With no broker, the command says so (exit 2) and leaves no unclosed producer behind."""
    csv = tmp_path / "optouts.csv"
    csv.write_text("email,status\nann@example.com,unsubscribed\n")
    argv = [arg.format(csv=csv) for arg in args]
    with warnings.catch_warnings(record=True) as recorded, caplog.at_level(logging.ERROR):
        warnings.simplefilter("always")
        result = sendguard.with_env(SENDGUARD_KAFKA_BOOTSTRAP_SERVERS=NO_KAFKA)(*argv)
        status, stderr = result.exit_code, result.stderr
        del result  # its exception's traceback holds the clients: let them be collected now
        unclosed = unclosed_clients(caplog, recorded)
    assert status == EXIT_ERROR
    assert stderr.splitlines()[-1].startswith("sendguard: ")
    assert "KafkaConnectionError" in stderr
    assert unclosed == []
