"""Bridges: apply each control command to a target once, with retries, or dead-letter it.

`BridgeService` owns the guarantees every bridge shares (idempotency by command id, bounded
retries with exponential backoff, a dead letter and a loud log when the target never accepts,
one structured log line per command); an applier says what a command means to its target.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from pydantic import TypeAdapter, ValidationError

from processor.errors import TargetRefusedError, TargetUnavailableError
from processor.ports.bridge import Suspension
from processor.ports.dead_letters import dead_letter
from schemas.control import ControlCommand, PauseCommand, PauseScope, ResumeCommand

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime

    from processor.ports.bridge import (
        BridgeLedger,
        BridgeMetrics,
        CommandEndpoint,
        SuspensionApi,
    )
    from processor.ports.publishing import Publisher
    from processor.ports.records import RawRecord

log = logging.getLogger(__name__)

Command = PauseCommand | ResumeCommand
_COMMANDS: TypeAdapter[Command] = TypeAdapter(ControlCommand)

REASON_PREFIX = "sendguard"
"""Every suspension reason this bridge writes starts with it (how its own are recognised)."""


class Result(StrEnum):
    """What became of one command (the `result` of its log line and metric)."""

    APPLIED = "applied"
    """A pause is in force at the target."""
    LIFTED = "lifted"
    """A resume lifted the campaign's suspensions (or found none left to lift)."""
    DELIVERED = "delivered"
    """An endpoint accepted the command (webhook bridge)."""
    SKIPPED = "skipped"
    """Already completed before (a redelivery): nothing was done."""
    FAILED = "failed"
    """The target never accepted it: dead-lettered."""
    INVALID = "invalid"
    """Not a control command: dead-lettered."""


@dataclass(frozen=True, slots=True)
class Applied:
    """An applier's answer: the result and what a log line should say about it."""

    result: Result
    detail: dict[str, object] = field(default_factory=dict)


class CommandApplier(Protocol):
    """What one command means to one target. Records its completion in the ledger itself."""

    async def apply(self, command: Command, raw: bytes) -> Applied:
        """Apply it; TargetUnavailableError is retried, TargetRefusedError is not."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded attempts with exponential backoff between them."""

    attempts: int = 5
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def delays(self) -> list[float]:
        """The waits between attempts, in order (one fewer than the attempts)."""
        return [
            min(self.max_backoff_s, self.initial_backoff_s * 2**n) for n in range(self.attempts - 1)
        ]


def command_marker(command_id: str) -> str:
    """The text that ends a suspension's reason and identifies the command that made it."""
    return f"command {command_id}"


def suspension_reason(command: PauseCommand) -> str:
    """A reason an MTA operator can act on: the metric, the rate, the rule and the command."""
    if command.evidence is not None:
        ev = command.evidence
        what = (
            f"{ev.metric.value} rate {ev.rate:.2%} over {ev.window} ({ev.numerator}/"
            f"{ev.denominator}; Wilson lower bound {ev.wilson_lower_bound:.2%} > threshold "
            f"{ev.threshold:.2%})"
        )
    else:
        what = f"tenant escalation after campaign pauses: {', '.join(command.paused_campaigns)}"
    return (
        f"{REASON_PREFIX} pause episode {command.episode}: {what}; policy "
        f"{command.policy_version}; {command_marker(command.command_id)}"
    )


def _campaign_of(command: PauseCommand) -> str | None:
    return command.campaign_id if command.scope is PauseScope.CAMPAIGN else None


class KumoApplier:
    """Pauses as KumoMTA scheduled-queue suspensions; a resume lifts the campaign's.

    A campaign pause suspends `tenant` AND `campaign` (campaign names are only unique within a
    tenant); a tenant pause suspends the tenant. A suspend whose answer was lost is found again
    by the command id in its reason, so a retry or redelivery never suspends twice.
    """

    def __init__(self, api: SuspensionApi, ledger: BridgeLedger, *, expiry_s: int) -> None:
        self._api = api
        self._ledger = ledger
        self._expiry_s = expiry_s

    async def apply(self, command: Command, raw: bytes) -> Applied:  # noqa: ARG002 - the API takes fields, not the message
        """See `CommandApplier.apply`."""
        if isinstance(command, PauseCommand):
            return await self._pause(command)
        return await self._resume(command)

    async def _pause(self, command: PauseCommand) -> Applied:
        campaign = _campaign_of(command)
        marker = command_marker(command.command_id)
        made = [s for s in await self._api.active() if s.reason.endswith(marker)]
        if made:
            suspension_id, adopted = made[0].id, True
        else:
            reason = suspension_reason(command)
            suspension = Suspension(command.tenant_id, campaign, reason, self._expiry_s)
            suspension_id, adopted = await self._api.suspend(suspension), False
        await self._ledger.record_suspension(
            command.command_id, command.tenant_id, campaign, suspension_id, Result.APPLIED
        )
        return Applied(
            Result.APPLIED,
            {"suspension_id": suspension_id, "found_in_mta": adopted, "expiry_s": self._expiry_s},
        )

    async def _resume(self, command: ResumeCommand) -> Applied:
        tenant, campaign = command.tenant_id, command.campaign_id
        held = await self._ledger.suspensions(tenant, campaign)
        active = await self._api.active()
        # Ours the ledger lost (a Redis restored from an old backup): same scope, our prefix.
        ours = {
            s.id
            for s in active
            if s.tenant == tenant and s.campaign == campaign and s.reason.startswith(REASON_PREFIX)
        }
        to_lift = sorted(set(held.values()) | ours)
        lifted = [sid for sid in to_lift if await self._api.cancel(sid)]
        detail: dict[str, object] = {
            "lifted": lifted,
            "already_gone": sorted(set(to_lift) - set(lifted)),
            "clone_campaign_id": command.clone_campaign_id,
        }
        tenant_holds = await self._ledger.suspensions(tenant, None)
        if tenant_holds:
            # Lifting the tenant's suspension would release every campaign of the tenant: an
            # operator decides that (kcli suspend-cancel), not a campaign's resume.
            detail["tenant_suspensions_kept"] = sorted(tenant_holds.values())
            log.warning(
                "tenant suspension still holds this campaign and its clone",
                extra={"bridge_tenant": tenant, "suspension_ids": sorted(tenant_holds.values())},
            )
        await self._ledger.record_lift(command.command_id, tenant, campaign, list(held), "lifted")
        return Applied(Result.LIFTED, detail)


class WebhookApplier:
    """Posts each command, as published, to an endpoint that de-duplicates by command id."""

    def __init__(self, endpoint: CommandEndpoint, ledger: BridgeLedger) -> None:
        self._endpoint = endpoint
        self._ledger = ledger

    async def apply(self, command: Command, raw: bytes) -> Applied:
        """See `CommandApplier.apply`."""
        await self._endpoint.deliver(command.command_id, raw)
        await self._ledger.record_outcome(command.command_id, Result.DELIVERED)
        return Applied(Result.DELIVERED)


class BridgeService:
    """Hands each control record to an applier once, retrying, dead-lettering what fails.

    `handle` returns only when every record of the batch was applied, skipped or dead-lettered
    (and the dead letters acknowledged): the caller commits the offsets after it. Ledger and
    publishing errors propagate, so the batch is not committed and is read again.
    """

    def __init__(
        self,
        bridge: str,
        applier: CommandApplier,
        ledger: BridgeLedger,
        dead_letters: Publisher,
        metrics: BridgeMetrics,
        *,
        retry: RetryPolicy,
        now: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._bridge = bridge
        self._applier = applier
        self._ledger = ledger
        self._dead_letters = dead_letters
        self._metrics = metrics
        self._retry = retry
        self._now = now
        self._sleep = sleep

    async def handle(self, records: Sequence[RawRecord]) -> None:
        """Apply the records in order."""
        for record in records:
            await self._one(record)

    async def _one(self, record: RawRecord) -> None:
        raw = record.value or b""
        try:
            command = _COMMANDS.validate_json(raw)
        except ValidationError as exc:
            reason = f"not a control command: {exc.errors(include_url=False)[0]['msg']}"
            await self._dead_letters.publish(
                [dead_letter(record, "invalid_command", reason, self._now())]
            )
            self._report(Result.INVALID, None, logging.ERROR, {"error": reason})
            return
        previous = await self._ledger.outcome(command.command_id)
        if previous is not None:
            self._report(Result.SKIPPED, command, logging.INFO, {"previous_result": previous})
            return
        applied, failure, attempts = await self._attempt(command, raw)
        if applied is not None:
            self._report(
                applied.result, command, logging.INFO, {**applied.detail, "attempts": attempts}
            )
            return
        kind = "bridge_refused" if isinstance(failure, TargetRefusedError) else "bridge_unavailable"
        reason = f"{self._bridge} bridge gave up after {attempts} attempt(s): {failure}"
        await self._dead_letters.publish([dead_letter(record, kind, reason, self._now())])
        self._metrics.failure(self._bridge)
        self._report(
            Result.FAILED,
            command,
            logging.ERROR,
            {"attempts": attempts, "error": str(failure), "dead_letter": kind},
        )

    async def _attempt(
        self, command: Command, raw: bytes
    ) -> tuple[Applied | None, Exception | None, int]:
        delays = self._retry.delays()
        failure: Exception | None = None
        for attempt in range(1, self._retry.attempts + 1):
            try:
                return await self._applier.apply(command, raw), None, attempt
            except TargetRefusedError as exc:
                return None, exc, attempt
            except TargetUnavailableError as exc:
                failure = exc
                if attempt <= len(delays):
                    log.warning(
                        "bridge target failed, retrying",
                        extra={
                            "bridge": self._bridge,
                            "command_id": command.command_id,
                            "attempt": attempt,
                            "retry_in_s": delays[attempt - 1],
                            "error": str(exc),
                        },
                    )
                    await self._sleep(delays[attempt - 1])
        return None, failure, self._retry.attempts

    def _report(
        self, result: Result, command: Command | None, level: int, detail: dict[str, object]
    ) -> None:
        self._metrics.command(self._bridge, result.value)
        fields: dict[str, object] = {"bridge": self._bridge, "result": result.value}
        if command is not None:
            fields.update(
                command_id=command.command_id,
                command=command.command,
                tenant_id=command.tenant_id,
                campaign_id=command.campaign_id,
                scope=command.scope.value if isinstance(command, PauseCommand) else "campaign",
            )
        fields.update(detail)
        log.log(level, f"bridge command {result.value}", extra=fields)  # noqa: G004 - the result is the message
