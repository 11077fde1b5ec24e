"""The one place redis-py's errors become StoreUnavailableError, as httpx maps its transport errors.

Every Redis call of the adapters runs inside `translate_redis_errors("what it does")`, which
also times it for an optional `RedisCalls` recorder (the metrics), "what" being its operation.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, Protocol

from redis.exceptions import RedisError

from processor.errors import StoreUnavailableError

if TYPE_CHECKING:
    from types import TracebackType

TRANSLATED: Final = (RedisError,)
"""What is translated. redis-py wraps socket errors and timeouts in its own ConnectionError and
TimeoutError (both RedisErrors); `redis_pipeline` does the same for its own deadline. Anything
else escaping a block is a bug of ours and must not pass for an unavailable store."""


class RedisCalls(Protocol):
    """Where timed Redis calls are reported (the Prometheus metrics; none in tools and tests)."""

    def record(self, operation: str, seconds: float, *, failed: bool) -> None:
        """One call of `operation` took `seconds`; `failed` if Redis answered with an error."""


class RedisErrorTranslation:
    """A `with` block whose redis-py errors leave it as StoreUnavailableError, the cause kept."""

    __slots__ = ("_calls", "_started", "_what")

    def __init__(self, what: str, calls: RedisCalls | None) -> None:
        self._what = what
        self._calls = calls
        self._started = 0.0

    def __enter__(self) -> None:
        """Start the clock if the call is recorded."""
        if self._calls is not None:
            self._started = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Raise StoreUnavailableError("<what> failed: <redis error>") from a redis-py error."""
        failed = isinstance(exc, TRANSLATED)
        if self._calls is not None:
            self._calls.record(self._what, time.perf_counter() - self._started, failed=failed)
        if failed:
            raise StoreUnavailableError(f"{self._what} failed: {exc}") from exc


def translate_redis_errors(what: str, calls: RedisCalls | None = None) -> RedisErrorTranslation:
    """Translate the block's redis-py errors; `what` names the operation ("reading X").

    `what` is the operation label of the recorded call: a fixed string, never a key or an id.
    """
    return RedisErrorTranslation(what, calls)
