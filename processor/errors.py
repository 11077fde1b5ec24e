"""sendguard's own exceptions: library errors are translated into these once, at the edges."""

from __future__ import annotations

WRITE_ATTEMPTS = 5
"""Compare-and-set tries of one state write before it gives up with WriteConflictError."""


class SendguardError(Exception):
    """Base of every error sendguard raises on purpose."""


class InvalidInputError(SendguardError):
    """An input message cannot be used; it goes to the dead-letter topic with this reason."""

    def __init__(self, error_type: str, reason: str) -> None:
        super().__init__(reason)
        self.error_type = error_type
        self.reason = reason


class StoreUnavailableError(SendguardError):
    """Redis did not answer, or answered with an error, after bounded retries."""


class WriteConflictError(StoreUnavailableError):
    """A compare-and-set write lost to another writer `WRITE_ATTEMPTS` times in a row.

    The store did not take the write, as when it is unavailable, so it is handled alike: the
    batch stops with its offsets uncommitted and is read again; its records are valid and are
    never dead-lettered for it.
    """


class PublishError(SendguardError):
    """Kafka did not acknowledge a message we must publish."""


class ConfigurationError(SendguardError):
    """A setting or the policy file is invalid; the message names it."""


class ReadError(SendguardError):
    """Kafka could not be read (a topic missing, the broker unreachable)."""


class StateLostError(StoreUnavailableError):
    """Redis no longer holds the detection state this worker wrote (emptied, failed over).

    A StoreUnavailableError, so the batch is not committed and the worker stops; at its
    restart the state guard (services/state_guard.py) rebuilds the state from Kafka.
    """


class TargetUnavailableError(SendguardError):
    """A bridge's target (an MTA, a webhook endpoint) did not answer or failed (5xx, 429).

    Worth retrying: it may answer the next attempt.
    """


class TargetRefusedError(SendguardError):
    """A bridge's target refused a request (4xx other than 408/425/429): retrying cannot help."""
