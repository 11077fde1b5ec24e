"""Control messages read back by their `command` field, the one way they are parsed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas.control import PauseCommand, PauseScope, ResumeCommand, read_control

AT = datetime(2025, 6, 1, 12, tzinfo=UTC)
PAUSE = PauseCommand(
    command_id="pause-t1-c1-1",
    scope=PauseScope.TENANT,
    tenant_id="t1",
    campaign_id=None,
    episode=1,
    policy_version="abc",
    decided_at=AT,
    trigger=None,
    evidence=None,
    paused_campaigns=["c1", "c2"],
)
RESUME = ResumeCommand(
    command_id="resume-t1-c1-r1",
    tenant_id="t1",
    campaign_id="c1",
    clone_campaign_id="c1-r1",
    request_id="r1",
    requested_by="ops@example.com",
    recipient_count=2,
    decided_at=AT,
)


@pytest.mark.parametrize("command", [PAUSE, RESUME], ids=["pause", "resume"])
def test_a_published_command_reads_back_as_itself(command: PauseCommand | ResumeCommand) -> None:
    """Each command published on the control topic is read back equal, as its own type."""
    read = read_control(command.model_dump_json())
    assert type(read) is type(command)
    assert read == command


@pytest.mark.parametrize(
    "value",
    [
        PAUSE.model_dump_json().replace('"command":"pause"', '"command":"stop"'),
        PAUSE.model_dump_json().replace('"command":"pause"', '"command":"resume"'),
        "{}",
        "not json",
    ],
    ids=["unknown command", "fields of another command", "no command", "not json"],
)
def test_anything_else_on_the_control_topic_is_refused(value: str) -> None:
    """A message that is no valid pause or resume command raises ValidationError."""
    with pytest.raises(ValidationError):
        read_control(value)
