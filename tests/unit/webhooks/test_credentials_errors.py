"""A broken credentials file is reported by place and problem, never by echoing its text."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from processor.errors import ConfigurationError
from processor.webhooks.credentials import load_credentials, parse_credentials

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "hunter2-correct-horse-battery"  # noqa: S105  # a made-up secret that must not leak


@pytest.mark.parametrize(
    "text",
    [
        f'tenants:\n  acme:\n    postmark: {{username: a, password: "{SECRET}\n',
        f"tenants:\n  acme:\n    postmark:\n      password: {SECRET}: x\n",
        f"tenants:\n  acme:\n    postmark:\n    username: a\n   password: {SECRET}\n",
        f"tenants:\n  acme:\n    postmark: [{SECRET}\n",
        f"tenants:\n  acme: {{postmark: {{username: a, password {SECRET}}}}}\n",
        f"tenants:\n  acme:\n    postmark: {{username: a, password: {SECRET}\x01}}\n",
    ],
)
def test_a_broken_file_never_echoes_its_content(text: str, tmp_path: Path) -> None:
    """YAML syntax errors and misplaced secrets name the line or key, never the secret."""
    path = tmp_path / "credentials.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_credentials(path, {})
    message = str(caught.value)
    assert SECRET not in message
    assert "hunter2" not in message
    assert caught.value.__cause__ is None or SECRET not in str(caught.value.__cause__)
    assert str(path) in message


def test_a_syntax_error_says_where(tmp_path: Path) -> None:
    """The line and column of a YAML syntax error are given, so it can be found."""
    text = f"tenants:\n  acme:\n    postmark:\n      password: {SECRET}: x\n"
    with pytest.raises(ConfigurationError, match="line 4, column"):
        parse_credentials(text, base_dir=tmp_path, environ={})
