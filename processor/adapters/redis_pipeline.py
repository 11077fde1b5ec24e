"""Hot-path pipelines of Lua scripts, without redis-py's SCRIPT EXISTS round trip per pipeline.

redis-py asks Redis whether every script a pipeline uses is loaded before it sends the
pipeline: one more round trip per batch and store. Here scripts go out as plain EVALSHA, and
only the commands Redis refused with NOSCRIPT (after a restart or SCRIPT FLUSH) are sent again,
once their scripts are loaded. Redis errors are left to the stores, which translate them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis
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
        """Queue a plain command, e.g. `command("PEXPIRE", key, ms)`."""
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
    async with client.pipeline(transaction=False) as pipe:
        for command in commands:
            pipe.execute_command(*command)
        return await pipe.execute(raise_on_error=False)
