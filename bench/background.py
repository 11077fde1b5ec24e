"""The benchmarks' background traffic: an `event_lines` file produced at a steady rate.

Runs as its own process (`python -m bench.background BOOTSTRAP TOPIC FILE RATE`), like the
MTA that would produce these events on another machine, so the driver's event loop that times
crossings is not also busy producing. Records go out as per-partition batches every 10 ms
(keys partitioned as aiokafka's default partitioner does), acks=1. It prints a JSON line
`{"produced": n, "seconds": s}` each second and a last one when it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from bench.common import PartitionBatches, read_lines

TICK_S = 0.01


def _report(produced: int, started: float) -> None:
    sys.stdout.write(json.dumps({"produced": produced, "seconds": time.monotonic() - started}))
    sys.stdout.write("\n")
    sys.stdout.flush()


async def produce(bootstrap: str, topic: str, path: Path, rate: float) -> None:
    """Produce `path`'s records at `rate` events/s until SIGTERM or the file runs out."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1, compression_type=None)
    await producer.start()
    out = PartitionBatches(producer, topic, sorted(await producer.partitions_for(topic)))
    records = read_lines(path)
    produced = 0
    started = reported = time.monotonic()
    exhausted = False
    try:
        while not stop.is_set() and not exhausted:
            target = int(rate * (time.monotonic() - started))
            while produced < target:
                record = next(records, None)
                if record is None:
                    exhausted = True  # the records added so far still go out just below
                    break
                await out.add(*record)
                produced += 1
            await out.send()
            await out.settle(more_than=255)
            if time.monotonic() - reported >= 1:
                reported = time.monotonic()
                _report(produced, started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), TICK_S)
        await out.settle()
    finally:
        _report(produced, started)
        await producer.stop()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("path", type=Path)
    parser.add_argument("rate", type=float)
    args = parser.parse_args(argv)
    asyncio.run(produce(args.bootstrap, args.topic, args.path, args.rate))


if __name__ == "__main__":
    main()
