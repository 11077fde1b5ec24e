"""The one Redis error seam: redis-py errors leave the adapters as StoreUnavailableError.

It also times each call for the metrics, counting the failed ones by operation.
"""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from processor.adapters.metrics import Metrics, PrometheusRedisCalls
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


def _sample(metrics: Metrics, name: str, operation: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"operation": operation})


async def test_a_recorded_call_is_timed_by_its_operation_and_not_an_error() -> None:
    """A block that succeeds is one observation of its operation's histogram, no error."""
    metrics = Metrics("test")
    calls = PrometheusRedisCalls(metrics)
    for _ in range(3):
        with translate_redis_errors("reading X", calls):
            await asyncio.sleep(0)
    assert _sample(metrics, "sendguard_redis_call_seconds_count", "reading X") == 3
    assert (_sample(metrics, "sendguard_redis_call_seconds_sum", "reading X") or 0) >= 0
    assert _sample(metrics, "sendguard_redis_errors_total", "reading X") == 0


def test_a_redis_error_is_counted_timed_and_still_translated() -> None:
    """A failed call counts an error of its operation, is timed too, and leaves translated."""
    metrics = Metrics("test")
    calls = PrometheusRedisCalls(metrics)
    with pytest.raises(StoreUnavailableError), translate_redis_errors("writing Y", calls):
        raise RedisTimeoutError("no reply within 10 s")
    assert _sample(metrics, "sendguard_redis_errors_total", "writing Y") == 1
    assert _sample(metrics, "sendguard_redis_call_seconds_count", "writing Y") == 1


def test_a_bug_of_ours_in_a_recorded_block_is_no_redis_error() -> None:
    """Only redis-py errors count as Redis errors: a bug passes through, timed, not counted."""
    metrics = Metrics("test")
    calls = PrometheusRedisCalls(metrics)
    with pytest.raises(KeyError), translate_redis_errors("reading Z", calls):
        raise KeyError("k")
    assert _sample(metrics, "sendguard_redis_errors_total", "reading Z") == 0
    assert _sample(metrics, "sendguard_redis_call_seconds_count", "reading Z") == 1
