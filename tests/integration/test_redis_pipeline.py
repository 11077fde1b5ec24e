"""ScriptPipeline on the real Redis: scripts unknown to the server are loaded and run once."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from processor.adapters.redis_pipeline import ScriptPipeline

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from tests.integration.conftest import Sandbox


def _fresh_script(redis: Redis, body: str) -> AsyncScript:
    # A unique comment gives the script a SHA this server has never seen, like after a restart
    # or SCRIPT FLUSH, without flushing the scripts other tests rely on.
    return redis.register_script(f"-- {uuid.uuid4().hex}\n{body}")


async def test_unknown_script_is_loaded_and_only_refused_calls_are_sent_again(
    redis: Redis, sandbox: Sandbox
) -> None:
    """A NOSCRIPT call is sent again after loading; nothing else in the pipeline runs twice."""
    script = _fresh_script(redis, "redis.call('INCR', KEYS[1]); return ARGV[1]")
    counter, calls = f"{sandbox.name}:counter", f"{sandbox.name}:calls"
    pipe = ScriptPipeline()
    pipe.command("INCR", counter)
    pipe.script(script, [calls], ["first"])
    pipe.script(script, [calls], ["second"])
    pipe.command("INCR", counter)

    replies = await pipe.execute(redis)

    assert replies == [1, b"first", b"second", 2]
    assert await redis.get(counter) == b"2", "plain commands ran once"
    assert await redis.get(calls) == b"2", "each script call ran once"
    assert (await redis.script_exists(script.sha)) == [True]


async def test_known_script_runs_in_one_round_trip(redis: Redis, sandbox: Sandbox) -> None:
    """A script the server has is called by its SHA straight away."""
    script = _fresh_script(redis, "return redis.call('INCR', KEYS[1])")
    key = f"{sandbox.name}:n"
    await script(keys=[key])  # loaded the usual way
    pipe = ScriptPipeline()
    pipe.script(script, [key], [])

    assert await pipe.execute(redis) == [2]


async def test_error_reply_is_raised_after_the_pipeline_ran(redis: Redis, sandbox: Sandbox) -> None:
    """Like redis-py's own pipelines: every command runs, then the first error is raised."""
    text, counter = f"{sandbox.name}:text", f"{sandbox.name}:counter"
    await redis.set(text, "not a number")
    pipe = ScriptPipeline()
    pipe.command("INCR", text)
    pipe.command("INCR", counter)

    with pytest.raises(ResponseError, match="not an integer"):
        await pipe.execute(redis)
    assert await redis.get(counter) == b"1"


async def test_late_replies_time_out_and_leave_no_stale_reply_behind(
    redis: Redis, sandbox: Sandbox
) -> None:
    """A pipeline slower than the socket timeout fails; the next one reads its own replies."""
    # Busy for 0.5 s inside Redis (a script cannot sleep), longer than the 0.2 s timeout.
    slow = _fresh_script(
        redis,
        "local t = redis.call('TIME'); local until_us = (t[1] * 1e6 + t[2]) + 500000\n"
        "repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] >= until_us\n"
        "return 'late'",
    )
    await slow(keys=[], args=[])  # loaded now, so the timed call goes out once
    key = f"{sandbox.name}:after"
    client = Redis.from_url(sandbox.stack["SENDGUARD_REDIS_URL"], socket_timeout=0.2)
    try:
        late = ScriptPipeline()
        late.script(slow, [], [])
        with pytest.raises(RedisTimeoutError):
            await late.execute(client)
        await asyncio.sleep(0.5)  # the late reply is sent meanwhile; Redis is free again
        following = ScriptPipeline()
        following.command("INCR", key)

        assert await following.execute(client) == [1], "not the late reply of the one before"
    finally:
        await client.aclose()


async def test_a_dropped_connection_is_reconnected_and_the_pipeline_sent_again(
    redis: Redis, sandbox: Sandbox
) -> None:
    """Like redis-py's pipelines: a connection the server closed is retried on a new one."""
    key = f"{sandbox.name}:retried"
    # The worker's client retries connection errors too (processor.cli.build_redis).
    client = Redis.from_url(sandbox.stack["SENDGUARD_REDIS_URL"], retry=Retry(NoBackoff(), 1))
    try:
        first = ScriptPipeline()
        first.command("CLIENT", "ID")
        (connection_id,) = await first.execute(client)
        assert await redis.client_kill_filter(_id=connection_id) == 1
        after_kill = ScriptPipeline()
        after_kill.command("INCR", key)

        assert await after_kill.execute(client) == [1]
        assert await redis.get(key) == b"1"
    finally:
        await client.aclose()
