"""`sendguard normalize`: provider payloads in, normalized events out, rejections explained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from schemas.events import DeliveryEvent, EventType

if TYPE_CHECKING:
    from tests.unit.cli.conftest import Sendguard

FIXTURES = Path(__file__).resolve().parents[1] / "adapters" / "providers" / "fixtures"


def test_a_provider_batch_becomes_events_on_stdout(sendguard: Sendguard) -> None:
    """SparkPost's sample batch: one valid event per line on stdout, ignored records on stderr."""
    path = FIXTURES / "sparkpost" / "event_samples_batch.json"
    result = sendguard("normalize", "--provider", "sparkpost", "--tenant", "acme", str(path))
    assert result.exit_code == 0, result.stderr
    events = [DeliveryEvent.model_validate_json(line) for line in result.stdout.splitlines()]
    assert len(events) == 11
    assert {e.tenant_id for e in events} == {"acme"}
    assert {EventType.BOUNCE, EventType.DELIVERED, EventType.COMPLAINT} <= {e.type for e in events}
    ignored = result.stderr.splitlines()
    assert len(ignored) == 4
    assert all(line.startswith(f"{path}: ignored sparkpost[") for line in ignored)


def test_a_rejected_record_exits_1_with_its_reason_on_stderr(sendguard: Sendguard) -> None:
    """A Mailgun event naming no campaign is rejected: no event out, the field named, exit 1."""
    path = FIXTURES / "mailgun" / "webhook_delivered.json"
    result = sendguard("normalize", "--provider", "mailgun", str(path))
    assert result.exit_code == 1
    assert result.stdout == ""
    field = "mailgun.event-data.user-variables.campaign_id"
    assert result.stderr.startswith(f"{path}: rejected {field}: missing")
    assert "names no campaign" in result.stderr


def test_a_fallback_campaign_lets_the_record_through(sendguard: Sendguard) -> None:
    """The same Mailgun event with --campaign becomes one delivered event of that campaign."""
    path = FIXTURES / "mailgun" / "webhook_delivered.json"
    result = sendguard("normalize", "--provider", "mailgun", "--campaign", "c1", str(path))
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    event = json.loads(line)
    assert (event["campaign_id"], event["type"]) == ("c1", "delivered")


def test_normalize_output_is_replay_input(sendguard: Sendguard, tmp_path: Path) -> None:
    """What `normalize` prints, `replay` accepts without rejecting a line."""
    path = FIXTURES / "sparkpost" / "event_samples_batch.json"
    events = tmp_path / "events.jsonl"
    events.write_text(sendguard("normalize", "--provider", "sparkpost", str(path)).stdout)
    result = sendguard("replay", "--no-progress", str(events))
    assert result.exit_code == 0, result.stderr
    assert "11 events: 11 applied, 0 duplicates, 0 late, 0 rejected" in result.stderr


def test_a_missing_file_is_a_usage_error(sendguard: Sendguard, tmp_path: Path) -> None:
    """A file that does not exist is refused by name before anything runs, exit 2."""
    result = sendguard("normalize", "--provider", "ses", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "nope.json" in result.stderr
    assert "does not exist" in result.stderr
