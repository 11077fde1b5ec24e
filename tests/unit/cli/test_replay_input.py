"""What `sendguard replay` reads and how it ends: gzip, a BOM, bad input, provider payloads."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from processor.adapters.providers import Provider
from processor.cli.exit_codes import EXIT_ERROR, EXIT_OK, EXIT_REJECTED
from tests.unit.cli.streams import event, two_campaigns

if TYPE_CHECKING:
    from tests.unit.cli.conftest import Sendguard

SHARED_SENDGRID = Path(__file__).resolve().parents[4] / "shared" / "provider-samples" / "sendgrid"
"""The team's real SendGrid samples (pretty-printed JSON), read in place."""
PROVIDER_HINT = "add --provider " + "|".join(p.value for p in Provider)


@pytest.fixture
def events_text() -> str:
    """A small stream with one pause, as JSON lines."""
    return "".join(line + "\n" for line in two_campaigns())


@pytest.fixture
def plain(sendguard: Sendguard, tmp_path: Path, events_text: str) -> tuple[str, str]:
    """The plain stream's replay: its stdout and stderr."""
    path = tmp_path / "plain.jsonl"
    path.write_text(events_text)
    result = sendguard("replay", "--no-progress", str(path))
    assert result.exit_code == EXIT_OK, result.stderr
    return result.stdout, result.stderr


def test_a_gzip_file_replays_like_the_plain_one(
    sendguard: Sendguard, tmp_path: Path, events_text: str, plain: tuple[str, str]
) -> None:
    """A .gz file, and gzip data on stdin whatever its name, are read decompressed."""
    packed = gzip.compress(events_text.encode())
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(packed)
    from_file = sendguard("replay", "--no-progress", str(path))
    from_stdin = sendguard("replay", "--no-progress", "-", stdin=packed)
    assert (from_file.exit_code, from_file.stdout, from_file.stderr) == (EXIT_OK, *plain)
    assert (from_stdin.exit_code, from_stdin.stdout, from_stdin.stderr) == (EXIT_OK, *plain)


def test_a_utf8_bom_is_accepted(
    sendguard: Sendguard, events_text: str, plain: tuple[str, str]
) -> None:
    """A file saved with a UTF-8 byte-order mark replays as without it (its first line too)."""
    result = sendguard("replay", "--no-progress", "-", stdin=b"\xef\xbb\xbf" + events_text.encode())
    assert (result.exit_code, result.stdout, result.stderr) == (EXIT_OK, *plain)


def test_a_rejected_line_makes_the_exit_status_1(sendguard: Sendguard) -> None:
    """One malformed line among events: reported by number, the rest applied, exit 1."""
    lines = [event(0, "good", "sent", 0), '{"schema_version": 1}', event(1, "good", "sent", 1)]
    result = sendguard("replay", "--no-progress", "-", stdin="\n".join(lines))
    assert result.exit_code == EXIT_REJECTED
    assert result.stderr.startswith("rejected line 2: ")
    assert "3 events: 2 applied, 0 duplicates, 0 late, 1 rejected" in result.stderr


@pytest.mark.parametrize("data", [b"", b"\n\n  \n"], ids=["empty", "blank-lines"])
def test_an_input_without_events_exits_1(sendguard: Sendguard, data: bytes) -> None:
    """No events at all is no successful replay: it says so, exit 1."""
    result = sendguard("replay", "--no-progress", "-", stdin=data)
    assert result.exit_code == EXIT_REJECTED
    assert result.stderr.rstrip().endswith("sendguard: no events in stdin")


def test_random_bytes_are_refused_at_once(sendguard: Sendguard, tmp_path: Path) -> None:
    """Binary data is refused before the replay starts, in one line, not a line per newline."""
    path = tmp_path / "noise.bin"
    path.write_bytes(random.Random(7).randbytes(2_000_000))  # noqa: S311  # noise, not secrets
    result = sendguard("replay", "--no-progress", str(path))
    assert result.exit_code == EXIT_REJECTED
    assert result.stdout == ""
    assert result.stderr == (
        f"sendguard: {path} is not text: replay reads UTF-8 JSON lines of delivery events "
        "(or their gzip), one event per line\n"
    )


def test_a_corrupt_gzip_file_is_an_error_naming_it(
    sendguard: Sendguard, tmp_path: Path, events_text: str
) -> None:
    """A gzip file cut short stops the replay with one line naming the file, exit 2."""
    packed = gzip.compress(events_text.encode())
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    result = sendguard("replay", "--no-progress", str(path))
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.splitlines()[-1].startswith(f"sendguard: {path}: corrupt gzip data: ")
    assert "Traceback" not in result.stderr


def test_pretty_printed_provider_json_without_provider_gets_a_hint(sendguard: Sendguard) -> None:
    """SendGrid's pretty-printed batch without --provider: refused with the --provider hint."""
    path = SHARED_SENDGRID / "batch_all_event_types.json"
    result = sendguard("replay", "--no-progress", str(path))
    assert result.exit_code == EXIT_REJECTED
    assert result.stdout == ""
    assert "holds one JSON document over several lines, not JSON lines" in result.stderr
    assert PROVIDER_HINT in result.stderr
    assert "rejected line" not in result.stderr


def test_provider_payloads_as_lines_without_provider_get_the_hint(
    sendguard: Sendguard, tmp_path: Path
) -> None:
    """JSON lines of provider payloads without --provider: every line rejected, and the hint."""
    batch = json.loads((SHARED_SENDGRID / "batch_all_event_types.json").read_text())
    path = tmp_path / "sendgrid.jsonl"
    path.write_text(json.dumps(batch) + "\n" + json.dumps(batch[:2]) + "\n")
    result = sendguard("replay", "--no-progress", str(path))
    assert result.exit_code == EXIT_REJECTED
    assert result.stderr.count("rejected line ") == 2
    assert result.stderr.rstrip().endswith(
        f"sendguard: no line of {path} was a delivery event; if it holds a provider's webhook "
        f"payloads, {PROVIDER_HINT}"
    )


def test_provider_rejections_are_numbered_by_record(sendguard: Sendguard, tmp_path: Path) -> None:
    """With --provider, a rejection names its record (and its line in JSON lines), exit 1."""
    batch = json.loads((SHARED_SENDGRID / "batch_all_event_types.json").read_text())
    batch[1] = {**batch[1], "email": ""}
    for record in batch:
        record["marketing_campaign_id"] = "spring"
    one_document = tmp_path / "batch.json"
    one_document.write_text(json.dumps(batch, indent=2))
    lines = tmp_path / "batches.jsonl"
    lines.write_text(json.dumps(batch[:1]) + "\n\n" + json.dumps(batch[:2]) + "\n")

    whole = sendguard("replay", "--no-progress", "--provider", "sendgrid", str(one_document))
    by_line = sendguard("replay", "--no-progress", "--provider", "sendgrid", str(lines))

    assert whole.exit_code == by_line.exit_code == EXIT_REJECTED
    assert whole.stderr.startswith("rejected record 2: sendgrid[1].email: ")
    assert by_line.stderr.startswith("rejected line 3, record 2: sendgrid[1].email: ")
    assert "9 events: 9 applied" in whole.stderr
    assert "1 provider records rejected" in whole.stderr


def test_provider_input_that_is_all_good_exits_0(sendguard: Sendguard) -> None:
    """The same batch with a campaign for every record replays with exit 0."""
    path = SHARED_SENDGRID / "batch_all_event_types.json"
    result = sendguard(
        "replay", "--no-progress", "--provider", "sendgrid", "--campaign", "c1", str(path)
    )
    assert result.exit_code == EXIT_OK, result.stderr
    assert "10 events: 10 applied, 0 duplicates, 0 late, 0 rejected" in result.stderr
