"""The one place redis-py's errors become StoreUnavailableError, as httpx maps its transport errors.

Every Redis call of the adapters runs inside `translate_redis_errors("what it does")`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from redis.exceptions import RedisError

from processor.errors import StoreUnavailableError

if TYPE_CHECKING:
    from types import TracebackType

TRANSLATED: Final = (RedisError,)
"""What is translated. redis-py wraps socket errors and timeouts in its own ConnectionError and
TimeoutError (both RedisErrors); `redis_pipeline` does the same for its own deadline. Anything
else escaping a block is a bug of ours and must not pass for an unavailable store."""


class RedisErrorTranslation:
    """A `with` block whose redis-py errors leave it as StoreUnavailableError, the cause kept."""

    __slots__ = ("_what",)

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        """Nothing to set up."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Raise StoreUnavailableError("<what> failed: <redis error>") from a redis-py error."""
        if isinstance(exc, TRANSLATED):
            raise StoreUnavailableError(f"{self._what} failed: {exc}") from exc


def translate_redis_errors(what: str) -> RedisErrorTranslation:
    """Translate the block's redis-py errors; `what` names the operation ("reading X")."""
    return RedisErrorTranslation(what)
