"""Every setting is documented: README's Configuration table lists each SENDGUARD_ variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from processor.config.settings import Settings

README = Path(__file__).resolve().parents[3] / "README.md"
VARIABLES = {f"SENDGUARD_{name.upper()}": field for name, field in Settings.model_fields.items()}


def configuration_table() -> dict[str, tuple[str, str]]:
    """The Configuration section's rows: variable -> (default cell, meaning cell)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(SENDGUARD_[A-Z0-9_]+)`", cells[0]) if len(cells) == 3 else None
        if match:
            rows[match.group(1)] = (cells[1], cells[2])
    return rows


def test_every_setting_has_a_row_and_every_row_a_setting() -> None:
    """No setting missing from the table, and no row for a setting that does not exist."""
    documented = set(configuration_table())
    assert sorted(set(VARIABLES) - documented) == []
    assert sorted(documented - set(VARIABLES)) == []


@pytest.mark.parametrize(
    "variable",
    sorted(
        name
        for name, field in VARIABLES.items()
        if isinstance(field.default, int | float | str) and not isinstance(field.default, bool)
    ),
)
def test_a_documented_default_is_the_real_one(variable: str) -> None:
    """A number or text default in the table is the one Settings has (1 MiB spelled as such)."""
    default = VARIABLES[variable].default
    assert not isinstance(default, SecretStr)
    cell = configuration_table()[variable][0]
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    assert shown in cell or (default == 1024 * 1024 and cell == "1 MiB"), (variable, cell)


def test_every_row_says_what_it_means() -> None:
    """No row with an empty meaning."""
    assert [name for name, (_, meaning) in configuration_table().items() if not meaning] == []
