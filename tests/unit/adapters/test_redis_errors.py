"""The one Redis error seam: redis-py errors leave the adapters as StoreUnavailableError."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from processor.adapters.redis_errors import translate_redis_errors
from processor.errors import StoreUnavailableError


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("Error 111 connecting to localhost:1. Connection refused."),
        RedisTimeoutError("no reply within 10 s"),
        ResponseError("NOSCRIPT No matching script"),
        RedisError("anything else redis-py raises"),
    ],
    ids=["connection", "timeout", "error-reply", "base"],
)
def test_a_redis_error_becomes_store_unavailable_naming_the_operation(error: RedisError) -> None:
    """Every redis-py error becomes "<what> failed: <error>", with the redis-py error as cause."""
    with pytest.raises(StoreUnavailableError) as raised, translate_redis_errors("reading X"):
        raise error
    assert str(raised.value) == f"reading X failed: {error}"
    assert raised.value.__cause__ is error


@pytest.mark.parametrize("error", [ValueError("a bug of ours"), KeyError("k"), OSError("raw")])
def test_other_errors_pass_through_untranslated(error: Exception) -> None:
    """A non-Redis error is not passed off as an unavailable store: it leaves the block as is."""
    with pytest.raises(type(error)) as raised, translate_redis_errors("reading X"):
        raise error
    assert raised.value is error


async def test_a_block_without_error_returns_its_value_and_awaits_inside() -> None:
    """The seam is transparent to a block that succeeds, awaits included."""

    async def answer() -> int:
        return 42

    def read() -> int:
        with translate_redis_errors("reading X"):
            return 7

    with translate_redis_errors("reading X"):
        value = await answer()
    assert (value, read()) == (42, 7)
