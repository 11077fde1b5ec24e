"""The seams of the bridges that make an MTA or an endpoint obey the control topic.

A suspension API (KumoMTA's shape), a command endpoint (any HTTP receiver), the ledger that
makes application idempotent by command id, bridge metrics; their in-memory twins beside them.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from processor.errors import TargetRefusedError, TargetUnavailableError


@dataclass(frozen=True, slots=True)
class Suspension:
    """What to hold in the MTA: a tenant's mail, or one campaign of a tenant's (AND-matched)."""

    tenant: str
    campaign: str | None
    reason: str
    duration_s: int


@dataclass(frozen=True, slots=True)
class ActiveSuspension:
    """A suspension the MTA reports as in force."""

    id: str
    reason: str
    tenant: str | None
    campaign: str | None


class SuspensionApi(Protocol):
    """An MTA's suspension API. Raises TargetUnavailableError (retry) or TargetRefusedError."""

    async def suspend(self, suspension: Suspension) -> str:
        """Define a suspension; returns its id."""
        ...

    async def cancel(self, suspension_id: str) -> bool:
        """Lift a suspension; False if the MTA does not know it (expired or already lifted)."""
        ...

    async def active(self) -> list[ActiveSuspension]:
        """The suspensions in force."""
        ...


class CommandEndpoint(Protocol):
    """An HTTP endpoint that takes commands. Raises TargetUnavailableError or TargetRefusedError."""

    async def deliver(self, command_id: str, body: bytes) -> None:
        """Post one command's JSON; returns once the endpoint accepted it (2xx)."""
        ...


class BridgeLedger(Protocol):
    """What a bridge has done, by command id, kept durably so restarts do nothing twice.

    Raises StoreUnavailableError when the store does not answer: the bridge then stops without
    committing, so the command is read again.
    """

    async def outcome(self, command_id: str) -> str | None:
        """The outcome recorded for a command, or None if it was never completed."""
        ...

    async def record_outcome(self, command_id: str, outcome: str) -> None:
        """Record that a command was completed with this outcome."""
        ...

    async def suspensions(self, tenant: str, campaign: str | None) -> dict[str, str]:
        """Suspensions this bridge holds for a tenant (campaign None) or a campaign, by pause id."""
        ...

    async def record_suspension(
        self, command_id: str, tenant: str, campaign: str | None, suspension_id: str, outcome: str
    ) -> None:
        """Atomically: the pause's suspension id under its scope, and its outcome."""
        ...

    async def record_lift(
        self,
        command_id: str,
        tenant: str,
        campaign: str | None,
        pause_ids: list[str],
        outcome: str,
    ) -> None:
        """Atomically: forget the lifted pauses' suspensions, and record the resume's outcome."""
        ...


class BridgeMetrics(Protocol):
    """Counters of a bridge.

    In Prometheus: sendguard_bridge_commands_total{bridge,result} and
    sendguard_bridge_failures_total{bridge}, the series SendguardBridgeFailing alerts on.
    """

    def command(self, bridge: str, result: str) -> None:
        """One command handled with this result (applied, lifted, skipped, failed, invalid)."""
        ...

    def failure(self, bridge: str) -> None:
        """One command given up on and dead-lettered (the target never accepted it)."""
        ...


@dataclass
class CountingMetrics:
    """Bridge metrics kept in dicts: the twin for tests, and the default until a registry."""

    commands: dict[tuple[str, str], int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def command(self, bridge: str, result: str) -> None:
        """See `BridgeMetrics.command`."""
        self.commands[bridge, result] = self.commands.get((bridge, result), 0) + 1

    def failure(self, bridge: str) -> None:
        """See `BridgeMetrics.failure`."""
        self.failures[bridge] = self.failures.get(bridge, 0) + 1


@dataclass
class InMemoryLedger:
    """A dict-backed `BridgeLedger`."""

    outcomes: dict[str, str] = field(default_factory=dict)
    held: dict[tuple[str, str | None], dict[str, str]] = field(default_factory=dict)

    async def outcome(self, command_id: str) -> str | None:
        """See `BridgeLedger.outcome`."""
        return self.outcomes.get(command_id)

    async def record_outcome(self, command_id: str, outcome: str) -> None:
        """See `BridgeLedger.record_outcome`."""
        self.outcomes[command_id] = outcome

    async def suspensions(self, tenant: str, campaign: str | None) -> dict[str, str]:
        """See `BridgeLedger.suspensions`."""
        return dict(self.held.get((tenant, campaign), {}))

    async def record_suspension(
        self, command_id: str, tenant: str, campaign: str | None, suspension_id: str, outcome: str
    ) -> None:
        """See `BridgeLedger.record_suspension`."""
        self.held.setdefault((tenant, campaign), {})[command_id] = suspension_id
        self.outcomes[command_id] = outcome

    async def record_lift(
        self,
        command_id: str,
        tenant: str,
        campaign: str | None,
        pause_ids: list[str],
        outcome: str,
    ) -> None:
        """See `BridgeLedger.record_lift`."""
        held = self.held.get((tenant, campaign), {})
        for pause_id in pause_ids:
            held.pop(pause_id, None)
        self.outcomes[command_id] = outcome


@dataclass
class InMemorySuspensionApi:
    """A `SuspensionApi` holding suspensions in a dict; `failures` queues errors to raise first.

    `lose_answers` makes that many successful suspends raise TargetUnavailableError after the
    suspension was made (an answer lost on the way back).
    """

    suspensions: dict[str, Suspension] = field(default_factory=dict)
    failures: list[TargetUnavailableError | TargetRefusedError] = field(default_factory=list)
    lose_answers: int = 0
    calls: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)

    async def suspend(self, suspension: Suspension) -> str:
        """See `SuspensionApi.suspend`."""
        self._maybe_fail("suspend")
        suspension_id = str(uuid.UUID(int=next(self._ids) + 1))
        self.suspensions[suspension_id] = suspension
        if self.lose_answers:
            self.lose_answers -= 1
            raise TargetUnavailableError("answer lost after the suspension was made")
        return suspension_id

    async def cancel(self, suspension_id: str) -> bool:
        """See `SuspensionApi.cancel`."""
        self._maybe_fail("cancel")
        return self.suspensions.pop(suspension_id, None) is not None

    async def active(self) -> list[ActiveSuspension]:
        """See `SuspensionApi.active`."""
        self._maybe_fail("active")
        return [
            ActiveSuspension(sid, s.reason, s.tenant, s.campaign)
            for sid, s in self.suspensions.items()
        ]


@dataclass
class InMemoryEndpoint:
    """A `CommandEndpoint` that keeps what it accepted; `failures` queues errors to raise first."""

    accepted: list[tuple[str, bytes]] = field(default_factory=list)
    failures: list[TargetUnavailableError | TargetRefusedError] = field(default_factory=list)

    async def deliver(self, command_id: str, body: bytes) -> None:
        """See `CommandEndpoint.deliver`."""
        if self.failures:
            raise self.failures.pop(0)
        self.accepted.append((command_id, body))
