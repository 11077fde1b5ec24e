"""`sendguard lock` / `unlock` on the real Redis: the operator lock a resume request meets."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from tests.integration.conftest import run_cli

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox


async def test_lock_and_unlock_set_and_lift_the_campaigns_operator_lock(
    sandbox: Sandbox, redis: Redis
) -> None:
    """`lock` stores who locked the pause and why; `unlock` removes it."""
    key = f"{sandbox.name}:{{c:acme:spring}}:lock"
    locked = run_cli(sandbox, "lock", "--tenant", "acme", "--campaign", "spring", "--by", "jane",
                     "--reason", "legal hold")  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    stored = await redis.get(key)
    assert stored is not None
    assert json.loads(stored)["by"] == "jane"
    assert json.loads(stored)["reason"] == "legal hold"
    assert await redis.pttl(key) > 0
    unlocked = run_cli(sandbox, "unlock", "--tenant", "acme", "--campaign", "spring")
    assert unlocked.returncode == 0, unlocked.stderr
    assert await redis.get(key) is None
