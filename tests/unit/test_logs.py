"""Logging configuration: our loggers follow SENDGUARD_LOG_LEVEL, libraries never go below INFO."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from processor.logs import configure_logging, library_level

if TYPE_CHECKING:
    from collections.abc import Iterator

LIBRARIES = ("aiokafka.producer", "aiokafka.conn", "faust", "mode", "aiohttp.access", "redis")


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put the root and our package loggers back as they were (pytest's capture included)."""
    root = logging.getLogger()
    ours = logging.getLogger("processor")
    saved = (root.level, root.handlers[:], ours.level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    ours.setLevel(saved[2])


@pytest.mark.usefixtures("restored_logging")
def test_debug_is_ours_only() -> None:
    """At DEBUG, our loggers log DEBUG; aiokafka (which logs each record it sends) stays at INFO."""
    configure_logging("DEBUG")
    assert logging.getLogger("processor.webhooks.server").isEnabledFor(logging.DEBUG)
    for name in LIBRARIES:
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name


@pytest.mark.usefixtures("restored_logging")
def test_the_library_level_is_a_separate_choice() -> None:
    """SENDGUARD_LIBRARY_LOG_LEVEL sets the libraries' level either way, ours stays."""
    configure_logging("INFO", "DEBUG")
    assert logging.getLogger("aiokafka.producer").isEnabledFor(logging.DEBUG)
    assert not logging.getLogger("processor").isEnabledFor(logging.DEBUG)
    configure_logging("DEBUG", "WARNING")
    assert not logging.getLogger("aiohttp.access").isEnabledFor(logging.INFO)


@pytest.mark.parametrize(
    ("level", "requested", "expected"),
    [
        ("DEBUG", None, "INFO"),
        ("INFO", None, "INFO"),
        ("WARNING", None, "WARNING"),
        ("ERROR", None, "ERROR"),
        ("DEBUG", "DEBUG", "DEBUG"),
        ("DEBUG", "WARNING", "WARNING"),
    ],
)
def test_library_level(level: str, requested: str | None, expected: str) -> None:
    """Unset, the libraries follow our level but never below INFO."""
    assert library_level(level, requested) == expected


@pytest.mark.usefixtures("restored_logging")
def test_lines_are_json_with_the_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """One JSON object per line on stderr, with the call's extra fields."""
    configure_logging("INFO")
    logging.getLogger("processor.test").warning("hello %s", "there", extra={"request_id": "r1"})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (line["message"], line["request_id"], line["level"]) == ("hello there", "r1", "warning")
