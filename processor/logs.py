"""Structured logging: one JSON object per line, with the `extra` fields of each call.

Recipient addresses never appear in logs: ours log `address_hash(...)` instead, and libraries
(aiokafka logs every record it sends at DEBUG) stay at INFO or above unless asked separately.
"""

from __future__ import annotations

import hashlib
import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any, Final

OWN_LOGGERS: Final = ("processor",)
"""Loggers that follow SENDGUARD_LOG_LEVEL; every other one follows the library level."""

_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


def address_hash(address: str) -> str:
    """A short, stable pseudonym of an email address, for logs."""
    return hashlib.sha256(address.strip().lower().encode()).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    """Formats records as JSON lines: time, level, logger, message and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record."""
        entry: dict[str, object] = {
            "at": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def library_level(level: str, requested: str | None = None) -> str:
    """The level of third-party loggers: `requested`, else `level` but never below INFO.

    Below INFO, aiokafka logs each record it sends and Faust each event: recipient addresses.
    """
    if requested is not None:
        return requested
    return level if logging.getLevelName(level) >= logging.INFO else "INFO"


def logging_config(level: str, library: str | None = None) -> dict[str, Any]:
    """`logging.config.dictConfig` input: JSON lines on stderr, ours at `level`.

    Libraries log at `library_level(level, library)`. Faust's worker is given the same
    configuration, so its lines are JSON too.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"level": library_level(level, library), "handlers": ["stderr"]},
        "loggers": {name: {"level": level} for name in OWN_LOGGERS},
    }


def configure_logging(level: str, library: str | None = None) -> None:
    """Send JSON lines to stderr: ours at `level`, libraries' at `library_level` (call once)."""
    logging.config.dictConfig(logging_config(level, library))
