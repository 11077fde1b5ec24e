"""Bad settings stop the CLI with one line naming the variable: no traceback, no secret."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from processor.errors import ConfigurationError
from processor.runtime.bootstrap import load_settings

if TYPE_CHECKING:
    from pathlib import Path

SECRET = "hunter2-do-not-print"  # noqa: S105  # a made-up secret that must not leak


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SENDGUARD_ variable and no .env file but the test's own."""
    for name in list(os.environ):
        if name.startswith("SENDGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize(
    ("environment", "names"),
    [
        (  # a check across settings has an empty location
            {
                "SENDGUARD_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "SENDGUARD_KAFKA_SASL_PASSWORD": SECRET,
            },
            "SENDGUARD_KAFKA_SASL_MECHANISM",
        ),
        ({"SENDGUARD_TOPIC_NAMES": "{" + SECRET}, "topic_names"),  # not JSON
        ({"SENDGUARD_RESUME_RULES": f'["{SECRET}"'}, "resume_rules"),
        ({"SENDGUARD_REDIS_URL": f"http://user:{SECRET}@host"}, "SENDGUARD_REDIS_URL"),
        ({"SENDGUARD_LIBRARY_LOG_LEVEL": "TRACE"}, "SENDGUARD_LIBRARY_LOG_LEVEL"),
        ({"SENDGUARD_WEBHOOK_BODY_TIMEOUT_S": "0"}, "SENDGUARD_WEBHOOK_BODY_TIMEOUT_S"),
    ],
)
def test_a_bad_setting_is_one_line_without_the_value(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], names: str
) -> None:
    """The error names the variable (or field) and never quotes the value."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert names in message
    assert SECRET not in message
    assert "\n" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
