"""Peak memory and time of one resume over a large audience in Redis (default: 1M recipients).

Usage: `source .stack/env && .venv/bin/python bench/resume_memory.py [--recipients N]
[--profile FILE]`. Loads the audience and contact state under a throwaway key prefix, then runs
the resume in a fresh process (so set-up allocations do not count) and prints its wall time, its
CPU time (this process, and Redis's, since the machine may be busy with other work) and its
peak RSS; cleans up after. `--profile` runs the resume under pyinstrument (not a dependency:
`pip install pyinstrument`) and writes its text tree to FILE; the times are then inflated.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from processor.adapters.keys import Keys
from processor.adapters.redis_contacts import RedisContactStore
from processor.domain.campaign_state import CampaignState
from processor.domain.codec import encode_state
from processor.domain.policy import PolicyBook
from processor.ports.detection_store import CampaignRef, InMemoryStore
from processor.services.resume import ResumeService
from schemas.audience import AudienceChunk
from schemas.events import DeliveryEvent, EventType, Recipient
from schemas.health import CampaignStatus
from schemas.resume import ResumeRequest

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.ports.detection_store import OutboxMessage

NOW = datetime(2025, 6, 1, tzinfo=UTC)
INPUT_CHUNK = 50_000


class CountingPublisher:
    """Discards messages after counting them and their bytes."""

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Count."""
        self.messages += len(messages)
        self.bytes += sum(len(m.value) for m in messages)


def memory_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MB, from /proc (Linux).

    Not `ru_maxrss`: that survives exec, so it would report the loading parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


def store_for(client: Redis, prefix: str) -> RedisContactStore:
    """The contact store under the bench's prefix."""
    return RedisContactStore(client, Keys(prefix), campaign_ttl_ms=3_600_000)


async def load(prefix: str, recipients: int) -> None:
    """Plan the audience; give a tenth of it history and mark a third attempted."""
    client = Redis.from_url(os.environ["SENDGUARD_REDIS_URL"])
    store = store_for(client, prefix)
    rng = random.Random(7)
    kinds = [EventType.SENT, EventType.OPEN, EventType.UNSUBSCRIBE, EventType.COMPLAINT]
    for index, start in enumerate(range(0, recipients, INPUT_CHUNK)):
        ids = [f"contact-{n:08d}" for n in range(start, min(start + INPUT_CHUNK, recipients))]
        planned = [Recipient.model_construct(contact_id=c, address=f"{c}@example.com") for c in ids]
        chunk = AudienceChunk.model_construct(
            tenant_id="bench", campaign_id="c1", chunk_index=index, recipients=planned
        )
        await store.store_audience_chunk(chunk)
        await store.mark_attempted("bench", "c1", ids[: len(ids) // 3])
        events = [
            DeliveryEvent(
                event_id=f"e{c}",
                tenant_id="bench",
                campaign_id="c-old",
                recipient=r,
                type=rng.choice(kinds),
                occurred_at=NOW - timedelta(days=rng.randrange(300)),
            )
            for c, r in zip(ids[::10], planned[::10], strict=True)
        ]
        await store.apply_events(events)
    await client.aclose()


async def redis_cpu_s(client: Redis) -> float:
    """CPU seconds the Redis server has used so far (user + system)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def resume(prefix: str, *, profile: bool = False) -> str | None:
    """Run the resume and print its peak RSS, wall and CPU time and output size.

    Returns the pyinstrument text tree when profiling.
    """
    client = Redis.from_url(os.environ["SENDGUARD_REDIS_URL"])
    book = PolicyBook()
    state = CampaignState.fresh(book.windows)
    state.status, state.episode = CampaignStatus.PAUSED, 1
    detection = InMemoryStore()
    detection.campaigns[CampaignRef("bench", "c1")] = (1, encode_state(state))
    publisher = CountingPublisher()
    service = ResumeService(detection, store_for(client, prefix), publisher, lambda: book)
    request = ResumeRequest(
        request_id="bench", tenant_id="bench", campaign_id="c1", requested_by="bench",
        requested_at=NOW,
    )  # fmt: skip
    profiler = None
    if profile:
        from pyinstrument import Profiler  # optional, only for --profile

        profiler = Profiler(async_mode="enabled")
    redis_before = await redis_cpu_s(client)
    before_mb = memory_mb("VmRSS")
    reset_peak()
    started, cpu_started = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.start()
    outcome = await service.handle(request)
    if profiler is not None:
        profiler.stop()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mb = memory_mb("VmHWM")
    redis_cpu = await redis_cpu_s(client) - redis_before
    await client.aclose()
    print(
        f"resume: {elapsed:.1f} s wall, {cpu:.1f} s CPU (Redis {redis_cpu:.1f} s CPU); "
        f"peak RSS {peak_mb:.0f} MB ({before_mb:.0f} MB before); "
        f"{outcome.total_recipients} kept, {outcome.already_attempted} attempted, "
        f"excluded {sum(outcome.excluded.values())}; {publisher.messages} messages, "
        f"{publisher.bytes / 1e6:.0f} MB published"
    )
    return None if profiler is None else profiler.output_text(unicode=False, show_all=False)


async def clean(prefix: str) -> None:
    """Delete the bench's keys."""
    client = Redis.from_url(os.environ["SENDGUARD_REDIS_URL"])
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        await client.delete(key)
    await client.aclose()


def main() -> None:
    """Load, measure in a fresh process, clean up."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--profile", metavar="FILE", help="pyinstrument text tree to FILE")
    parser.add_argument("--resume-only", metavar="PREFIX", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.resume_only:
        tree = asyncio.run(resume(args.resume_only, profile=args.profile is not None))
        if tree is not None:
            Path(args.profile).write_text(tree)
        return
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    asyncio.run(load(prefix, args.recipients))
    print(f"loaded {args.recipients} recipients in {time.perf_counter() - started:.0f} s")
    try:
        profile = ["--profile", args.profile] if args.profile else []
        subprocess.run(  # noqa: S603  # this very script, with our own interpreter
            [sys.executable, __file__, "--resume-only", prefix, *profile], check=True
        )
    finally:
        asyncio.run(clean(prefix))


if __name__ == "__main__":
    main()
