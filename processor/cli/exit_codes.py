"""The exit statuses every `sendguard` command shares (each command's --help lists its own)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
"""The command ran, but some of its input was rejected (each rejection is on stderr)."""
EXIT_ERROR: Final = 2
"""The command could not do its work: configuration, Kafka, Redis, a file, a usage error."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (SIGINT): 128 + 2, as shells report it."""
EXIT_OUTPUT_CLOSED: Final = 141
"""Whoever read stdout stopped reading (`| head`): 128 + 13 (SIGPIPE), as shells report it."""
