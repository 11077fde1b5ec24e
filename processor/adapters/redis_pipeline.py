"""Hot-path pipelines of Lua scripts, without redis-py's SCRIPT EXISTS round trip per pipeline.

redis-py asks Redis whether every script a pipeline uses is loaded before it sends the
pipeline: one more round trip per batch and store. Here scripts go out as plain EVALSHA, and
only the commands Redis refused with NOSCRIPT (after a restart or SCRIPT FLUSH) are sent again,
once their scripts are loaded. Commands are packed by hiredis and their replies read under one
deadline for the whole pipeline. Redis errors are left to the stores, which translate them.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any

import hiredis
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection
    from redis.commands.core import AsyncScript


class ScriptPipeline:
    """Commands and script calls queued for one non-transactional pipeline."""

    def __init__(self) -> None:
        self._commands: list[tuple[Any, ...]] = []
        self._scripts: dict[str, AsyncScript] = {}

    def __len__(self) -> int:
        return len(self._commands)

    def script(self, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Queue a call of `script` (registered with `Redis.register_script`)."""
        self._scripts[script.sha] = script
        self._commands.append(("EVALSHA", script.sha, len(keys), *keys, *args))

    def command(self, *args: Any) -> None:
        """Queue a plain command, e.g. `command("PEXPIRE", key, ms)` (a one-word name)."""
        self._commands.append(args)

    async def execute(self, client: Redis) -> list[Any]:
        """Send everything in one round trip; replies in order. Raises the first error reply.

        A call refused with NOSCRIPT did not run, so sending it again after loading its script
        runs it once; the others are not repeated.
        """
        replies = await _send(client, self._commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            for sha in {self._commands[i][1] for i in missing}:
                await client.script_load(self._scripts[sha].script)
            again = await _send(client, [self._commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


async def _send(client: Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """One round trip on a pooled connection, retried on connection errors like redis-py's own.

    Not a redis-py pipeline: its asyncio connection packs commands in Python (8 times slower
    than hiredis, which redis-py's own sync client uses) and reads each reply under a timer of
    its own and through the client's reply callbacks; together about a sixth of the worker's
    CPU with small batches. Replies come raw: bytes, ints, lists, error instances.
    A retry sends every command again; the stores' scripts are idempotent or compare-and-set.
    """
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]  # untyped in redis-py
    try:
        replies: list[Any] = await connection.retry.call_with_retry(
            lambda: _exchange(connection, commands), lambda _error: connection.disconnect()
        )
    except BaseException:
        # A reply may still be on its way: the socket must not serve another request.
        await connection.disconnect()
        raise
    finally:
        await pool.release(connection)
    return replies


async def _exchange(
    connection: AbstractConnection, commands: Sequence[tuple[Any, ...]]
) -> list[Any]:
    await connection.send_packed_command(b"".join(map(hiredis.pack_command, commands)))
    replies: list[Any] = []
    try:
        async with asyncio.timeout(connection.socket_timeout):
            for _ in commands:
                try:
                    # No timer per reply (math.inf): the deadline above covers them all.
                    replies.append(await connection.read_response(timeout=math.inf))
                except ResponseError as exc:
                    replies.append(exc)
    except TimeoutError as exc:
        raise RedisTimeoutError(f"no reply within {connection.socket_timeout} s") from exc
    return replies
