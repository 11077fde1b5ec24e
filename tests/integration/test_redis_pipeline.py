"""ScriptPipeline on the real Redis: scripts unknown to the server are loaded and run once."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from redis.exceptions import ResponseError

from processor.adapters.redis_pipeline import ScriptPipeline

if TYPE_CHECKING:
    from redis.asyncio import Redis
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
