"""`sendguard import-suppressions`: the columns it accepts are documented, rows checked offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from processor.cli.exit_codes import EXIT_ERROR, EXIT_OK, EXIT_REJECTED
from processor.domain.suppressions import (
    CONTACT_ID_COLUMNS,
    EMAIL_COLUMNS,
    STATUS_COLUMNS,
    TIME_COLUMNS,
)

if TYPE_CHECKING:
    from tests.unit.cli.conftest import Sendguard

README = Path(__file__).resolve().parents[3] / "README.md"
NO_KAFKA = "127.0.0.1:1"
ROWS = [
    "Email Address,Status,Timestamp",
    "ann@example.com,unsubscribed,2025-01-01",
    "not-an-email,unsubscribed,",
    "bob@example.com,bounced,",
    "cid@example.com,subscribed,",
]


@pytest.fixture
def csv(tmp_path: Path) -> Path:
    """An export with two good rows and two bad ones (lines 3 and 5)."""
    path = tmp_path / "optouts.csv"
    path.write_text("\n".join(ROWS) + "\n")
    return path


ACCEPTED = [*EMAIL_COLUMNS, *CONTACT_ID_COLUMNS, *STATUS_COLUMNS, *TIME_COLUMNS]


def test_help_names_every_accepted_column(sendguard: Sendguard) -> None:
    """--help lists each column name the parser accepts, and --dry-run."""
    result = sendguard("import-suppressions", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    missing = [name for name in ACCEPTED if name not in text]
    assert missing == []
    assert "--dry-run" in text


def test_the_readme_names_every_accepted_column() -> None:
    """The README's import paragraph lists the same columns."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("`sendguard import-suppressions` reads") :][:1500]
    assert [name for name in ACCEPTED if f"`{name}`" not in section] == []


def test_dry_run_checks_every_row_without_kafka(sendguard: Sendguard, csv: Path) -> None:
    """--dry-run reports bad rows and what would be imported; no broker needed; exit 1."""
    result = sendguard.with_env(SENDGUARD_KAFKA_BOOTSTRAP_SERVERS=NO_KAFKA)(
        "import-suppressions", "--dry-run", str(csv), "--tenant", "acme"
    )
    assert result.exit_code == EXIT_REJECTED
    assert [line.split(":")[1].strip() for line in result.stderr.splitlines()] == [
        "line 3",
        "line 5",
    ]
    assert result.stdout == (
        "checked: 2 opt-outs of tenant acme (bounced 1, unsubscribed 1) to import; "
        "2 rows rejected; nothing published\n"
    )


def test_dry_run_of_a_clean_file_exits_0(sendguard: Sendguard, tmp_path: Path) -> None:
    """Only good rows: exit 0, nothing on stderr."""
    path = tmp_path / "clean.csv"
    path.write_text("email\nann@example.com\n")
    result = sendguard("import-suppressions", "--dry-run", str(path), "--tenant", "acme")
    assert (result.exit_code, result.stderr) == (EXIT_OK, "")
    assert result.stdout.startswith("checked: 1 opt-outs of tenant acme (unsubscribed 1)")


def test_rows_are_checked_before_kafka_is_contacted(sendguard: Sendguard, csv: Path) -> None:
    """Every bad row is reported before the broker is tried; then Kafka down is exit 2."""
    result = sendguard.with_env(SENDGUARD_KAFKA_BOOTSTRAP_SERVERS=NO_KAFKA)(
        "import-suppressions", str(csv), "--tenant", "acme"
    )
    assert result.exit_code == EXIT_ERROR
    ours = [line for line in result.stderr.splitlines() if line.startswith("sendguard: ")]
    assert [line.split(":")[1].strip() for line in ours[:2]] == ["line 3", "line 5"]
    assert ours[2].startswith("sendguard: publishing to sendguard.contact-updates on 127.0.0.1:1")
    assert len(ours) == 3


def test_a_file_without_an_email_column_fails_before_kafka(
    sendguard: Sendguard, tmp_path: Path
) -> None:
    """No email column: the file is refused at once (exit 2), Kafka never tried."""
    path = tmp_path / "names.csv"
    path.write_text("name,status\nbob,unsubscribed\n")
    result = sendguard.with_env(SENDGUARD_KAFKA_BOOTSTRAP_SERVERS=NO_KAFKA)(
        "import-suppressions", str(path), "--tenant", "acme"
    )
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.startswith(f"sendguard: {path}: no email column")
    assert "Kafka" not in result.stderr
    assert "publishing" not in result.stderr
