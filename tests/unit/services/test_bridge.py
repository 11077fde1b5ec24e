"""BridgeService and its appliers over the in-memory twins.

Once per command id, retries, dead letters, what a pause and a resume mean to KumoMTA, and one
log line per command.
"""

from __future__ import annotations

import json
import logging
from base64 import b64decode
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from processor.errors import PublishError, TargetRefusedError, TargetUnavailableError
from processor.ports.bridge import (
    CountingMetrics,
    InMemoryEndpoint,
    InMemoryLedger,
    InMemorySuspensionApi,
    Suspension,
)
from processor.services.bridge import (
    BridgeService,
    CommandApplier,
    KumoApplier,
    RetryPolicy,
    WebhookApplier,
    suspension_reason,
)
from schemas.topics import TopicRole
from tests.unit.services.bridge_support import (
    campaign_pause,
    record,
    resume,
    tenant_pause,
)
from tests.unit.services.resume_world import ListPublisher

if TYPE_CHECKING:
    from typing import Any

EXPIRY_S = 7 * 86400


class Bridge:
    """A service under test with its twins; sleeps are recorded, not slept."""

    def __init__(self, *, attempts: int = 3, webhook: bool = False) -> None:
        self.api = InMemorySuspensionApi()
        self.endpoint = InMemoryEndpoint()
        self.ledger = InMemoryLedger()
        self.dead = ListPublisher()
        self.metrics = CountingMetrics()
        self.slept: list[float] = []
        self.name = "webhook-x" if webhook else "kumomta"
        applier: CommandApplier = (
            WebhookApplier(self.endpoint, self.ledger)
            if webhook
            else KumoApplier(self.api, self.ledger, expiry_s=EXPIRY_S)
        )
        self.service = BridgeService(
            self.name,
            applier,
            self.ledger,
            self.dead,
            self.metrics,
            retry=RetryPolicy(attempts, 0.5, 30),
            now=lambda: datetime(2026, 3, 2, tzinfo=UTC),
            sleep=self._sleep,
        )

    async def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Dead letters published, decoded."""
        return self.dead.on(TopicRole.DEAD_LETTER)


async def test_campaign_pause_suspends_the_tenants_campaign_with_its_evidence() -> None:
    """A campaign pause becomes one suspension of that tenant AND campaign, with the reason."""
    bridge = Bridge()
    pause = campaign_pause()
    await bridge.service.handle([record(pause)])
    [(suspension_id, suspension)] = bridge.api.suspensions.items()
    assert (suspension.tenant, suspension.campaign) == ("acme", "spring-sale")
    assert suspension.duration_s == EXPIRY_S
    assert "hard_bounce rate 7.50% over 1h" in suspension.reason
    assert suspension.reason.endswith(f"command {pause.command_id}")
    assert await bridge.ledger.suspensions("acme", "spring-sale") == {
        pause.command_id: suspension_id
    }
    assert bridge.metrics.commands == {("kumomta", "applied"): 1}


async def test_tenant_pause_suspends_every_campaign_of_the_tenant() -> None:
    """A tenant pause suspends the tenant with no campaign (KumoMTA: any campaign matches)."""
    bridge = Bridge()
    await bridge.service.handle([record(tenant_pause())])
    [suspension] = bridge.api.suspensions.values()
    assert (suspension.tenant, suspension.campaign) == ("acme", None)
    assert "campaign pauses: a, b, c" in suspension.reason


async def test_a_redelivered_pause_suspends_once() -> None:
    """The same command id read again (a restart before the commit) changes nothing."""
    bridge = Bridge()
    pause = campaign_pause()
    await bridge.service.handle([record(pause), record(pause, offset=1)])
    assert len(bridge.api.suspensions) == 1
    assert bridge.api.calls.count("suspend") == 1
    assert bridge.metrics.commands == {("kumomta", "applied"): 1, ("kumomta", "skipped"): 1}


@pytest.mark.parametrize(
    "lost",
    [
        pytest.param("answer", id="suspend-answer-lost-then-retried"),
        pytest.param("ledger", id="crash-between-suspend-and-ledger"),
    ],
)
async def test_a_suspension_made_but_not_recorded_is_found_not_made_again(lost: str) -> None:
    """A suspend the bridge never heard back from is found by its command id on the next try."""
    bridge = Bridge()
    pause = campaign_pause()
    if lost == "answer":
        bridge.api.lose_answers = 1
    else:  # the MTA has it, the ledger does not (the process died in between)
        await bridge.api.suspend(Suspension("acme", "spring-sale", suspension_reason(pause), 60))
    await bridge.service.handle([record(pause)])
    assert len(bridge.api.suspensions) == 1
    [suspension_id] = bridge.api.suspensions
    assert await bridge.ledger.suspensions("acme", "spring-sale") == {
        pause.command_id: suspension_id
    }


async def test_resume_lifts_the_stored_suspension_and_forgets_it() -> None:
    """A resume cancels the suspension id stored for the campaign; a redelivery does nothing."""
    bridge = Bridge()
    other = campaign_pause(campaign="other", command_id="o" * 32)
    await bridge.service.handle([record(campaign_pause()), record(other)])
    await bridge.service.handle([record(resume()), record(resume(), offset=9)])
    assert [(s.tenant, s.campaign) for s in bridge.api.suspensions.values()] == [("acme", "other")]
    assert await bridge.ledger.suspensions("acme", "spring-sale") == {}
    assert bridge.api.calls.count("cancel") == 1
    assert bridge.metrics.commands[("kumomta", "lifted")] == 1
    assert bridge.metrics.commands[("kumomta", "skipped")] == 1


async def test_resume_of_an_expired_suspension_is_still_a_lift() -> None:
    """A suspension the MTA no longer knows (404: expired or cancelled by hand) is not an error."""
    bridge = Bridge()
    await bridge.service.handle([record(campaign_pause())])
    bridge.api.suspensions.clear()  # expired in KumoMTA
    await bridge.service.handle([record(resume())])
    assert bridge.metrics.commands[("kumomta", "lifted")] == 1
    assert bridge.dead_letters() == []


async def test_resume_lifts_our_suspensions_the_ledger_lost_and_nobody_elses() -> None:
    """Suspensions of ours the ledger lost are found in the MTA and lifted, no one else's."""
    bridge = Bridge()
    ours = await bridge.api.suspend(
        Suspension("acme", "spring-sale", suspension_reason(campaign_pause()), 60)
    )
    operator = await bridge.api.suspend(Suspension("acme", "spring-sale", "postmaster block", 60))
    elsewhere = await bridge.api.suspend(
        Suspension("acme", "autumn", suspension_reason(campaign_pause(campaign="autumn")), 60)
    )
    await bridge.service.handle([record(resume())])
    assert ours not in bridge.api.suspensions
    assert set(bridge.api.suspensions) == {operator, elsewhere}


async def test_resume_under_a_tenant_pause_keeps_the_tenant_suspension() -> None:
    """A campaign's resume keeps its tenant's suspension (lifting it frees every campaign)."""
    bridge = Bridge()
    await bridge.service.handle([record(tenant_pause()), record(campaign_pause())])
    await bridge.service.handle([record(resume())])
    [kept] = bridge.api.suspensions.values()
    assert (kept.tenant, kept.campaign) == ("acme", None)


async def test_a_target_failing_twice_is_retried_with_exponential_backoff() -> None:
    """Two failures, then success: three attempts, waits of 0.5 s and 1 s, nothing dead."""
    bridge = Bridge(attempts=5)
    bridge.api.failures = [TargetUnavailableError("503"), TargetUnavailableError("reset")]
    await bridge.service.handle([record(campaign_pause())])
    assert bridge.slept == [0.5, 1.0]
    assert len(bridge.api.suspensions) == 1
    assert bridge.dead_letters() == []


async def test_a_target_that_never_answers_ends_in_a_dead_letter_and_the_next_command_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bounded attempts, then a dead letter with the reason, an ERROR, a count; the next runs."""
    bridge = Bridge(attempts=3)
    pause = campaign_pause()
    bridge.api.failures = [TargetUnavailableError("HTTP 503")] * 3
    with caplog.at_level(logging.INFO):
        await bridge.service.handle([record(pause), record(tenant_pause(), offset=1)])
    [letter] = bridge.dead_letters()
    assert letter["error_type"] == "bridge_unavailable"
    assert "after 3 attempt(s): HTTP 503" in letter["error"]
    assert json.loads(b64decode(letter["original"]))["command_id"] == pause.command_id
    assert bridge.slept == [0.5, 1.0]
    assert bridge.metrics.failures == {"kumomta": 1}
    assert [s.campaign for s in bridge.api.suspensions.values()] == [None]
    failed = [r for r in caplog.records if getattr(r, "result", None) == "failed"]
    assert [r.levelno for r in failed] == [logging.ERROR]
    assert await bridge.ledger.outcome(pause.command_id) is None  # read again, it is retried


async def test_a_refused_request_is_dead_lettered_without_retrying() -> None:
    """A 4xx cannot heal by retrying: one attempt, then the dead letter."""
    bridge = Bridge(attempts=5)
    bridge.api.failures = [TargetRefusedError("400 bad request")]
    await bridge.service.handle([record(campaign_pause())])
    [letter] = bridge.dead_letters()
    assert letter["error_type"] == "bridge_refused"
    assert bridge.slept == []


@pytest.mark.parametrize(
    "value",
    [b"{not json", b'{"command": "explode"}', b'{"command": "pause", "scope": "campaign"}'],
)
async def test_what_is_not_a_command_is_dead_lettered(value: bytes) -> None:
    """A record that is not a control command goes to the dead letters, and nothing is called."""
    bridge = Bridge()
    await bridge.service.handle([record(value)])
    [letter] = bridge.dead_letters()
    assert letter["error_type"] == "invalid_command"
    assert bridge.api.calls == []


async def test_dead_letters_that_cannot_be_published_stop_the_batch() -> None:
    """If the dead letter is not acknowledged the batch fails, so it is not committed."""
    bridge = Bridge(attempts=1)
    bridge.api.failures = [TargetRefusedError("400")]
    bridge.dead.failures = 1
    with pytest.raises(PublishError):
        await bridge.service.handle([record(campaign_pause())])


async def test_webhook_bridge_delivers_each_command_once_as_published() -> None:
    """The endpoint gets the record's bytes with the command id; a redelivery is skipped."""
    bridge = Bridge(webhook=True)
    pause = record(campaign_pause())
    await bridge.service.handle([pause, pause, record(resume())])
    assert bridge.endpoint.accepted == [
        (campaign_pause().command_id, pause.value),
        (resume().command_id, record(resume()).value),
    ]
    assert bridge.metrics.commands == {("webhook-x", "delivered"): 2, ("webhook-x", "skipped"): 1}


async def test_each_command_logs_one_structured_line(caplog: pytest.LogCaptureFixture) -> None:
    """Every command gets exactly one line naming bridge, command id, scope and result."""
    bridge = Bridge()
    with caplog.at_level(logging.INFO, logger="processor.services.bridge"):
        await bridge.service.handle(
            [record(campaign_pause()), record(campaign_pause(), 1), record(resume(), 2)]
        )
    lines = [r for r in caplog.records if r.getMessage().startswith("bridge command")]
    assert [(r.result, r.command, r.scope, r.tenant_id) for r in lines] == [  # type: ignore[attr-defined]
        ("applied", "pause", "campaign", "acme"),
        ("skipped", "pause", "campaign", "acme"),
        ("lifted", "resume", "campaign", "acme"),
    ]


@pytest.mark.parametrize(
    ("attempts", "initial", "cap", "delays"),
    [
        (1, 0.5, 30, []),
        (3, 0.5, 30, [0.5, 1.0]),
        (5, 0.5, 30, [0.5, 1.0, 2.0, 4.0]),
        (6, 1, 5, [1, 2, 4, 5, 5]),
    ],
)
def test_retry_delays_double_up_to_the_cap(
    attempts: int, initial: float, cap: float, delays: list[float]
) -> None:
    """Waits between attempts start at the initial backoff and double, never above the cap."""
    assert RetryPolicy(attempts, initial, cap).delays() == delays
