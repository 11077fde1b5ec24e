"""`sendguard replay --redis` on the real Redis: a fresh key prefix per run, cleaned up."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from redis import Redis as SyncRedis

from processor.cli import main
from tests.unit.cli.streams import two_campaigns

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from click.testing import Result

    from tests.integration.conftest import Sandbox


@pytest.fixture
def events(tmp_path: Path) -> Path:
    """The small stream with one pause."""
    path = tmp_path / "events.jsonl"
    path.write_text("".join(line + "\n" for line in two_campaigns()))
    return path


@pytest.fixture
def sync_redis(sandbox: Sandbox) -> Iterator[SyncRedis]:
    """A plain Redis client; the sandbox's keys are deleted afterwards."""
    client = SyncRedis.from_url(sandbox.stack["SENDGUARD_REDIS_URL"])
    yield client
    for key in client.scan_iter(match=f"{sandbox.name}:*", count=1000):
        client.unlink(key)
    client.close()


def replay(sandbox: Sandbox, *args: str) -> Result:
    """`sendguard replay --no-progress --redis <the stack's> ARGS`, in-process."""
    url = sandbox.stack["SENDGUARD_REDIS_URL"]
    env = {"SENDGUARD_REDIS_URL": url}
    return CliRunner().invoke(main, ["replay", "--no-progress", "--redis", url, *args], env=env)


def test_each_run_gets_a_fresh_prefix_and_deletes_its_keys(
    sandbox: Sandbox, sync_redis: SyncRedis, events: Path
) -> None:
    """Two runs over the same file decide the same, and leave no key behind."""
    prefixes = []
    for _ in range(2):
        result = replay(sandbox, str(events))
        assert result.exit_code == 0, result.stderr
        assert "1600 events: 1600 applied, 0 duplicates" in result.stderr
        assert "2 campaigns, 1 pause commands" in result.stderr
        match = re.search(r"Redis: ran under key prefix (\S+), (\d+) keys deleted", result.stderr)
        assert match is not None, result.stderr
        prefix, deleted = match.group(1), int(match.group(2))
        assert deleted > 0
        assert list(sync_redis.scan_iter(match=f"{prefix}:*")) == []
        prefixes.append(prefix)
    assert prefixes[0] != prefixes[1]


def test_a_given_prefix_keeps_the_state_for_the_next_run(
    sandbox: Sandbox, sync_redis: SyncRedis, events: Path
) -> None:
    """--key-prefix keeps the state: the second run finds every event a duplicate."""
    first = replay(sandbox, "--key-prefix", sandbox.name, str(events))
    second = replay(sandbox, "--key-prefix", sandbox.name, str(events))
    assert first.exit_code == second.exit_code == 0, first.stderr + second.stderr
    assert "1600 applied, 0 duplicates" in first.stderr
    assert "0 applied, 1600 duplicates" in second.stderr
    assert f"Redis: the replay's state is kept under key prefix {sandbox.name}" in second.stderr
    assert list(sync_redis.scan_iter(match=f"{sandbox.name}:*"))
