"""The benchmarks' background producer on the real broker."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.conftest import REPO, read_topic

if TYPE_CHECKING:
    from tests.integration.conftest import Sandbox


async def test_background_producer_sends_its_last_partial_batch(sandbox: Sandbox) -> None:
    """When the file runs out mid-batch, every record it counted as produced is on the topic."""
    topic = sandbox.topic("background")
    admin = AIOKafkaAdminClient(bootstrap_servers=sandbox.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    sandbox.data_dir.mkdir(parents=True)
    lines = sandbox.data_dir / "events.tsv"
    count = 37  # far below one tick's worth at this rate: all in the last, partial batch
    lines.write_text(
        "".join(f"c{i % 5}\t{json.dumps({'n': i})}\n" for i in range(count)), encoding="utf-8"
    )
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bench.background", sandbox.bootstrap, topic, str(lines), "1e6"],
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0
    reported = json.loads(stdout.decode().splitlines()[-1])["produced"]
    messages = await read_topic(sandbox, topic, until=lambda got: len(got) >= count, timeout_s=20)
    assert reported == count
    assert sorted(m["n"] for m in messages) == list(range(count))
