"""`sendguard lock` / `unlock` against a worker: the operator lock a resume request meets.

Both are signed requests (the sandbox's operator key) that the worker verifies and applies.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from processor.adapters.keys import Keys
from tests.integration.conftest import produce, run_cli
from tests.integration.resume_support import until
from tests.unit.cli.streams import campaign_lines

if TYPE_CHECKING:
    from aiokafka import AIOKafkaProducer
    from redis.asyncio import Redis

    from tests.integration.conftest import Sandbox, WorkerProcess


async def seed_campaign(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, redis: Redis, campaign: str
) -> None:
    """Start the worker and give `acme:<campaign>` a detection state through its events."""
    await worker.start()
    events = [json.loads(line) for line in campaign_lines(campaign, 5)]
    await produce(producer, sandbox.topic("delivery-events"), events)
    state = Keys(sandbox.name).campaign_state("acme", campaign)

    async def stored() -> bool:
        return bool(await redis.exists(state))

    await until(stored, f"the state of acme:{campaign}")


async def test_lock_and_unlock_set_and_lift_the_campaigns_operator_lock(
    sandbox: Sandbox, redis: Redis, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """`lock` stores who locked the pause and why; `unlock` removes it."""
    await seed_campaign(sandbox, worker, producer, redis, "spring")
    key = f"{sandbox.name}:{{c:acme:spring}}:lock"
    locked = run_cli(sandbox, "lock", "--tenant", "acme", "--campaign", "spring", "--by", "jane",
                     "--reason", "legal hold")  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    assert locked.stdout == "locked acme:spring (by jane)\n"
    stored = await redis.get(key)
    assert stored is not None
    assert json.loads(stored)["by"] == "jane"
    assert json.loads(stored)["reason"] == "legal hold"
    assert await redis.pttl(key) > 0
    unlocked = run_cli(sandbox, "unlock", "--tenant", "acme", "--campaign", "spring", "--by", "jo")
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout == "unlocked acme:spring\n"
    assert await redis.get(key) is None
    again = run_cli(sandbox, "unlock", "--tenant", "acme", "--campaign", "spring", "--by", "jo")
    assert (again.returncode, again.stdout) == (0, "acme:spring had no lock: nothing to do\n")


async def test_locking_a_campaign_sendguard_never_saw_is_refused(
    sandbox: Sandbox, redis: Redis, worker: WorkerProcess, producer: AIOKafkaProducer
) -> None:
    """A typo in the campaign is not silently 'locked': exit 1, the reason, no key written."""
    await seed_campaign(sandbox, worker, producer, redis, "spring")
    result = run_cli(sandbox, "lock", "--tenant", "acme", "--campaign", "sprnig", "--by", "jane",
                     "--request-id", "typo")  # fmt: skip
    assert result.returncode == 1
    assert result.stdout == (
        "rejected (unknown_campaign): no campaign acme:sprnig: never seen, or its state "
        "expired; nothing locked [request typo]\n"
    )
    assert await redis.get(f"{sandbox.name}:{{c:acme:sprnig}}:lock") is None
