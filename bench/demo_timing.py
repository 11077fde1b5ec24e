"""Demo timing: how long `sendguard demo` takes end to end, and until its first output line.

Usage: `.venv/bin/python -m bench.demo_timing [--runs N] [--quick]`.

N times (default 3): `.venv/bin/sendguard demo --no-progress` with stdout and stderr on
pipes that this process drains (stdout is read and dropped, as `> /dev/null` would); the
times from spawn to the first line on stdout (the first pause command or status change, JSON),
to the first line on stderr (the summary table) and to exit (end to end). With `--devnull`
the end to end time is taken with stdout on /dev/null instead (`--both`: plus a piped run
for the first lines, doubling the time).

No Kafka or Redis is involved (the demo replays on an embedded store). The README's first
command, `./scripts/demo.sh`, runs the same after creating the venv and installing sendguard on
a fresh machine; that part needs the network and isn't timed here.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from typing import Any

from bench.common import REPO, load_average, machine_info, median, write_result

BAR_S = 60.0
COMMAND = [str(REPO / ".venv" / "bin" / "sendguard"), "demo", "--no-progress"]


def end_to_end() -> float:
    """Seconds for the whole demo with stdout to /dev/null."""
    started = time.monotonic()
    subprocess.run(  # noqa: S603  # fixed argv: the venv's sendguard
        COMMAND, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, cwd=REPO
    )
    return time.monotonic() - started


async def first_lines() -> dict[str, float | None]:
    """Seconds to the first stdout line, the first stderr line, and the exit."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        *COMMAND, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO
    )
    firsts: dict[str, float | None] = {"stdout": None, "stderr": None}

    async def read(name: str, stream: asyncio.StreamReader | None) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            if firsts[name] is None and line.strip():
                firsts[name] = round(time.monotonic() - started, 2)

    await asyncio.gather(read("stdout", process.stdout), read("stderr", process.stderr))
    await process.wait()
    return {**firsts, "exit": round(time.monotonic() - started, 2)}


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print/write its results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run")
    parser.add_argument(
        "--devnull", action="store_true", help="time end to end with stdout on /dev/null"
    )
    parser.add_argument("--both", action="store_true", help="with --devnull: also a piped run")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs = 1
    info = machine_info()
    runs: list[dict[str, Any]] = []
    for i in range(args.runs):
        load = load_average()
        if args.devnull:
            total = end_to_end()
            first = await first_lines() if args.both else {"stdout": None, "stderr": None}
        else:
            first = await first_lines()
            total = float(first["exit"] or 0.0)
        runs.append({"load_avg": load, "end_to_end_s": round(total, 2), "piped": first})
        print(
            f"run {i + 1}: end to end {total:.1f} s; first stdout line {first['stdout']} s, "
            f"first stderr line {first['stderr']} s"
        )
    total_median = median(r["end_to_end_s"] for r in runs)
    first_out = [r["piped"]["stdout"] for r in runs if r["piped"]["stdout"] is not None]
    first_median = median(first_out) if first_out else None
    met = first_median is not None and first_median < BAR_S
    result = {
        "benchmark": "demo_timing",
        "command": "python -m bench.demo_timing " + " ".join(argv or sys.argv[1:]),
        "timed_command": " ".join(COMMAND) + " > /dev/null",
        "machine": info,
        "runs": runs,
        "median_end_to_end_s": total_median,
        "median_first_stdout_line_s": first_median,
        "bar": f"real output in under {BAR_S:.0f} s",
        "bar_met": met,
        "end_to_end_under_bar": total_median < BAR_S,
    }
    written = write_result("demo_timing", result)
    print(
        f"\ndemo: median end to end {total_median:.1f} s, first output line {first_median} s "
        f"(bar < {BAR_S:.0f} s: {'met' if met else 'NOT met'}); N={len(runs)} -> {written}"
    )
    return result


if __name__ == "__main__":
    asyncio.run(main())
