"""`sendguard replay` and `sendguard demo`: detection over a file or a seeded stream, in-process."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from schemas.control import PauseCommand
from tests.unit.cli.streams import event, two_campaigns

if TYPE_CHECKING:
    from pathlib import Path

    from tests.unit.cli.conftest import Sendguard


def test_replay_prints_the_pause_of_a_bad_list_and_a_summary(
    sendguard: Sendguard, tmp_path: Path
) -> None:
    """The bad list gets one pause command on stdout; the summary table goes to stderr."""
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(two_campaigns()) + "\n")
    result = sendguard("replay", "--no-progress", str(source))
    assert result.exit_code == 0, result.stderr
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    pauses = [PauseCommand.model_validate(m) for m in messages if m.get("command") == "pause"]
    assert [(p.scope.value, p.tenant_id, p.campaign_id) for p in pauses] == [
        ("campaign", "acme", "bad")
    ]
    statuses = {(m["campaign_id"], m["status"]) for m in messages if "status" in m}
    assert ("bad", "paused") in statuses
    assert "good" not in {campaign for campaign, _ in statuses}
    rows = {line.split()[1]: line.split() for line in result.stderr.splitlines()[5:7]}
    assert rows["bad"][2:6] == ["paused", "400", "320", "20.00%"]
    assert rows["good"][2:6] == ["healthy", "400", "400", "0.00%"]
    assert "1600 events: 1600 applied, 0 duplicates, 0 late, 0 rejected" in result.stderr
    assert "2 campaigns, 1 pause commands (1 campaign, 0 tenant)" in result.stderr


def test_replay_reads_stdin_and_reports_a_malformed_line_by_number(sendguard: Sendguard) -> None:
    """'-' reads stdin; a line that is not an event is reported with its line number."""
    lines = [event(0, "good", "sent", 0), "{not json", "", event(1, "good", "sent", 1)]
    result = sendguard("replay", "--no-progress", "-", stdin="\n".join(lines) + "\n")
    assert result.stdout == ""
    assert result.stderr.startswith("rejected line 2: ")
    assert "3 events: 2 applied, 0 duplicates, 0 late, 1 rejected" in result.stderr


def test_replay_counts_a_repeated_event_once(sendguard: Sendguard, tmp_path: Path) -> None:
    """The same event id twice is applied once and counted as a duplicate."""
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join([event(0, "good", "sent", 0)] * 2) + "\n")
    result = sendguard("replay", "--no-progress", str(source))
    assert result.exit_code == 0, result.stderr
    assert "2 events: 1 applied, 1 duplicates" in result.stderr


def test_a_small_demo_replays_identically_from_its_events_file(
    sendguard: Sendguard, tmp_path: Path
) -> None:
    """`demo --max-events N --events-out F` writes N events; `replay F` prints the same."""
    events = tmp_path / "demo.jsonl"
    demo = sendguard("demo", "--no-progress", "--max-events", "3000", "--events-out", str(events))
    assert demo.exit_code == 0, demo.stderr
    lines = events.read_text().splitlines()
    assert len(lines) == 3000
    assert all(json.loads(line)["schema_version"] == 1 for line in lines)
    assert "3000 events: 3000 applied, 0 duplicates, 0 late, 0 rejected" in demo.stderr
    replayed = sendguard("replay", "--no-progress", str(events))
    assert (replayed.stdout, replayed.stderr) == (demo.stdout, demo.stderr)


def test_the_demo_is_the_same_on_every_run_of_a_seed(sendguard: Sendguard) -> None:
    """A seed fixes the stream: two runs print the same; another seed gives other campaigns."""
    first, again, other = (
        sendguard("demo", "--no-progress", "--max-events", "1000", "--seed", seed)
        for seed in ("7", "7", "8")
    )
    assert first.exit_code == 0, first.stderr
    assert (first.stdout, first.stderr) == (again.stdout, again.stderr)
    assert first.stderr != other.stderr


def test_a_redis_url_of_another_scheme_is_one_line_exit_2(
    sendguard: Sendguard, tmp_path: Path
) -> None:
    """`--redis http://x` is a configuration error, not a traceback."""
    source = tmp_path / "events.jsonl"
    source.write_text(event(0, "good", "sent", 0) + "\n")
    result = sendguard("replay", "--no-progress", "--redis", "http://x", str(source))
    assert result.exit_code == 2
    assert result.stderr == (
        "sendguard: --redis: Redis URL must specify one of the following schemes "
        "(redis://, rediss://, unix://)\n"
    )


def test_a_key_prefix_with_other_characters_is_a_usage_error(
    sendguard: Sendguard, tmp_path: Path
) -> None:
    """A prefix that would need escaping in key patterns is refused up front."""
    source = tmp_path / "events.jsonl"
    source.write_text(event(0, "good", "sent", 0) + "\n")
    result = sendguard("replay", "--key-prefix", "a b*", str(source))
    assert result.exit_code == 2
    assert "letters, digits, '_', '.' and '-' only" in result.stderr


def test_a_policy_override_no_event_matched_is_warned_about(
    sendguard: Sendguard, tmp_path: Path
) -> None:
    """An override for tenant 'acmee' when the events are acme's: a warning naming it."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "tenants:\n"
        "  acmee: {rules: [{metric: hard_bounce, window: 24h, pause: 0.03}]}\n"
        "  acme: {rules: [{metric: hard_bounce, window: 24h, pause: 0.03}]}\n"
        "campaigns:\n"
        '  "acme:good": {rules: [{metric: hard_bounce, window: 1h, pause: 0.08}]}\n'
        '  "acme:goood": {rules: [{metric: hard_bounce, window: 1h, pause: 0.08}]}\n'
    )
    source = tmp_path / "events.jsonl"
    source.write_text("\n".join(two_campaigns()) + "\n")
    result = sendguard("replay", "--no-progress", "--policy", str(policy), str(source))
    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    prefix = "sendguard: warning: the policy's override for"
    assert warnings == [
        f"{prefix} tenant 'acmee' matched no event of {source}: a typo?",
        f"{prefix} campaign 'acme:goood' matched no event of {source}: a typo?",
    ]
