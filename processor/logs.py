"""Structured logging: one JSON object per line, with the `extra` fields of each call.

Recipient addresses never appear in logs; callers log `address_hash(...)` instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime

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


def configure_logging(level: str) -> None:
    """Send JSON lines to stderr at `level` (call once, from the CLI)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
