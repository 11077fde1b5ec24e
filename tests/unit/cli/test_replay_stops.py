"""Stopping a replay: a closed stdout ends it quietly, Ctrl-C ends it with the summary so far."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from processor.cli.exit_codes import EXIT_INTERRUPTED, EXIT_OUTPUT_CLOSED
from processor.cli.replay_run import Interrupt
from processor.domain.policy import PolicyBook
from processor.ports.detection_store import InMemoryStore
from processor.services.replay import OutputClosedError, records_from_lines, replay
from tests.unit.cli.streams import campaign_lines, two_campaigns

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.cli.conftest import Sendguard


def many_bad_lists(campaigns: int) -> str:
    """`campaigns` bad lists, each paused: a pause and a status line apiece on stdout.

    Each of its own tenant: no tenant reaches the campaign pauses that pause it whole.
    """
    return "".join(
        line + "\n"
        for c in range(campaigns)
        for line in campaign_lines(f"bad-{c}", 250, bad=True, tenant=f"t{c}")
    )


class ClosedPipe(io.StringIO):
    """A stdout whose reader went away after the first line."""

    def write(self, text: str) -> int:
        """The first write lands; the next ones meet the closed pipe."""
        if self.getvalue():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)


async def test_a_closed_output_stops_the_replay_without_rejecting_a_line() -> None:
    """A decision that cannot be printed is no bad record: OutputClosedError, nothing rejected."""
    book = PolicyBook()
    errors = io.StringIO()
    lines = many_bad_lists(3).splitlines()
    with pytest.raises(OutputClosedError):
        await replay(
            records_from_lines(lines),
            store=InMemoryStore(),
            policy_book=lambda: book,
            out=ClosedPipe(),
            errors=errors,
        )
    assert errors.getvalue() == ""


def test_replay_into_a_closed_pipe_exits_quietly_with_141(tmp_path: Path) -> None:
    """`sendguard replay FILE | head -1`: the first line comes, then exit 141, stderr empty."""
    source = tmp_path / "events.jsonl"
    source.write_text(many_bad_lists(80))  # ~160 KB of decisions: more than a pipe buffer
    process = subprocess.Popen(  # noqa: S603  # this interpreter, fixed arguments
        [sys.executable, "-m", "processor", "replay", "--no-progress", str(source)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # what `head -1` does once it has its line
    try:
        status = process.wait(timeout=60)
    finally:
        process.kill()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert first.startswith(b'{"schema_version":1,')
    assert (status, stderr) == (EXIT_OUTPUT_CLOSED, "")


class InterruptedInput(io.RawIOBase):
    """Stdin that delivers `data`, then is interrupted by Ctrl-C while more is awaited."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def readable(self) -> bool:
        """It is."""
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]  # RawIOBase's
        """Hand out `data`; once it is gone, the user presses Ctrl-C instead of typing more."""
        if not self._data:
            signal.raise_signal(signal.SIGINT)
            return 0
        size = min(len(buffer), len(self._data))
        buffer[:size], self._data = self._data[:size], self._data[size:]
        return size


def test_ctrl_c_while_waiting_for_input_prints_the_summary_so_far(sendguard: Sendguard) -> None:
    """Ctrl-C at a waiting stdin: what was read is replayed and summed up, exit 130."""
    data = "".join(line + "\n" for line in two_campaigns()).encode()
    stdin = io.BufferedReader(InterruptedInput(data))
    result = sendguard("replay", "--no-progress", "-", stdin=stdin)  # type: ignore[arg-type]
    assert result.exit_code == EXIT_INTERRUPTED
    assert '"command":"pause"' in result.stdout
    assert "1600 events: 1600 applied" in result.stderr
    assert result.stderr.rstrip().endswith(
        "interrupted: the summary covers the events read until Ctrl-C"
    )
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def press_ctrl_c_during_the_replay(after_s: float) -> threading.Thread:
    """A thread that sends SIGINT once a replay's handler is in place and `after_s` passed."""

    def press() -> None:
        deadline = time.monotonic() + 30
        while not isinstance(signal.getsignal(signal.SIGINT), Interrupt):
            if time.monotonic() > deadline:
                return  # never started: sending SIGINT now would stop the test run
            time.sleep(0.01)
        time.sleep(after_s)
        if isinstance(signal.getsignal(signal.SIGINT), Interrupt):
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    thread = threading.Thread(target=press, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_stops_the_demo_at_once_with_the_summary_so_far(sendguard: Sendguard) -> None:
    """The full demo takes a minute: Ctrl-C after half a second stops it within seconds."""
    started = time.monotonic()
    thread = press_ctrl_c_during_the_replay(after_s=0.5)
    result = sendguard("demo", "--no-progress")
    elapsed = time.monotonic() - started
    thread.join()
    assert result.exit_code == EXIT_INTERRUPTED, result.stderr
    assert elapsed < 15
    footer = next(line for line in result.stderr.splitlines() if " events: " in line)
    assert 0 < int(footer.split()[0]) < 200_000
    assert "interrupted: the summary covers the events read until Ctrl-C" in result.stderr


def test_a_second_ctrl_c_stops_at_once() -> None:
    """The first Ctrl-C asks the input to end; the second raises KeyboardInterrupt."""
    interrupt = Interrupt()
    interrupt(signal.SIGINT, None)
    assert interrupt.requested
    with pytest.raises(KeyboardInterrupt):
        interrupt(signal.SIGINT, None)


def test_ctrl_c_ends_the_input_between_records() -> None:
    """After the first Ctrl-C no further record is taken from the input."""
    interrupt = Interrupt()
    records = interrupt.records(records_from_lines(["a", "b", "c"]))
    assert next(records).value == b"a"
    interrupt(signal.SIGINT, None)
    assert list(records) == []
