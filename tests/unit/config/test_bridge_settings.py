"""Bridge settings: the expiry's default and form, exclusive MTA credentials, bounded retries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr, ValidationError

from processor.config.settings import Settings


def test_suspensions_last_a_week_by_default() -> None:
    """A pause must not lapse silently: the default expiry is generous."""
    assert Settings().bridge_suspension_expiry == timedelta(days=7)


def test_expiry_reads_iso_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    """SENDGUARD_BRIDGE_SUSPENSION_EXPIRY is an ISO 8601 duration (P3D, PT36H)."""
    monkeypatch.setenv("SENDGUARD_BRIDGE_SUSPENSION_EXPIRY", "P3D")
    assert Settings().bridge_suspension_expiry == timedelta(days=3)
    monkeypatch.setenv("SENDGUARD_BRIDGE_SUSPENSION_EXPIRY", "PT36H")
    assert Settings().bridge_suspension_expiry == timedelta(hours=36)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"bridge_kumomta_token": SecretStr("t"), "bridge_kumomta_username": "u"},
            "not both",
        ),
        ({"bridge_max_attempts": 20, "bridge_request_timeout_s": 30}, "keep it under 240 s"),
        ({"bridge_kumomta_url": "ftp://mta"}, "http://"),
        ({"bridge_suspension_expiry": timedelta(seconds=5)}, "at least one minute"),
    ],
)
def test_bad_bridge_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    """Settings a bridge cannot work with stop it at start, saying why."""
    with pytest.raises(ValidationError, match=message):
        Settings(**overrides)  # type: ignore[arg-type]
