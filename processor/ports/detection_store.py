"""The state store seam: what detection needs from storage, and the embedded in-memory store.

`RedisStore` (adapters/redis_store.py) and `InMemoryStore` implement the same protocol and pass
the same contract tests, so a replay on the embedded store decides exactly as the worker does.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """A message decided but perhaps not yet published: kept with the state that caused it."""

    role: str
    key: str
    value: str

    def to_json(self) -> list[str]:
        """A compact JSON-able form."""
        return [self.role, self.key, self.value]


def encode_outbox(messages: list[OutboxMessage]) -> str:
    """Serialize an outbox."""
    return json.dumps([m.to_json() for m in messages], separators=(",", ":"))


def decode_outbox(raw: str | bytes | None) -> list[OutboxMessage]:
    """Read an outbox back (empty when absent)."""
    if not raw:
        return []
    return [OutboxMessage(role, key, value) for role, key, value in json.loads(raw)]


@dataclass(frozen=True, slots=True)
class CampaignRef:
    """A campaign's identity."""

    tenant_id: str
    campaign_id: str


DAY_MS: Final = 86_400_000
"""The digest sets' day: `digests_by_day` is keyed by event time (ms) // DAY_MS."""


@dataclass(slots=True)
class CampaignAsk:
    """Load a campaign's state and tell which of these event digests it has applied."""

    ref: CampaignRef
    digests_by_day: dict[int, list[bytes]] = field(default_factory=dict)


@dataclass(slots=True)
class StoredCampaign:
    """A campaign's state as loaded, with the version to compare-and-set against."""

    blob: bytes | None
    version: int
    outbox: list[OutboxMessage]
    outbox_version: int
    seen: set[bytes]
    speculative: bool = False
    """Not read from the store: the worker's own cached state, digests unchecked."""


@dataclass(slots=True)
class CampaignWrite:
    """Replace a campaign's state if it is still at `expected_version`."""

    ref: CampaignRef
    expected_version: int
    blob: bytes
    new_digests_by_day: dict[int, list[bytes]]
    outbox: list[OutboxMessage]
    paused: bool = False
    """A paused campaign's state is kept longer, until it is resumed."""
    speculative: bool = False
    """Folded from this worker's cached state, without loading: the stored digests were not
    checked. Refused (like a conflict) if any new digest was already applied or an outbox
    awaits delivery, so the caller loads and folds again."""


@dataclass(frozen=True, slots=True)
class TenantEscalation:
    """A tenant crossed its campaign-pause limit: pause it (episode `episode`)."""

    episode: int
    campaigns: tuple[str, ...]


class DetectionStore(Protocol):
    """Durable detection state. Every write is idempotent or compare-and-set."""

    async def load_campaigns(self, asks: list[CampaignAsk]) -> list[StoredCampaign]:
        """States of the asked campaigns, in order, with the digests already applied."""
        ...

    async def commit_campaigns(self, writes: list[CampaignWrite]) -> list[bool]:
        """Apply writes atomically per campaign; False where the version moved on (conflict)."""
        ...

    async def clear_outbox(self, ref: CampaignRef, version: int) -> None:
        """Forget a published outbox, unless a newer write replaced it (then it stays listed)."""
        ...

    async def campaigns_with_outbox(self, unpublished_for_ms: int = 0) -> list[CampaignRef]:
        """Campaigns whose outbox may not have been published (crash recovery).

        Only outboxes written at least `unpublished_for_ms` ago: a younger one is likely being
        published by the worker that wrote it, and taking it would publish its messages twice.
        """
        ...

    async def record_campaign_pause(
        self, tenant_id: str, member: str, at_ms: int, limit: int, within_ms: int
    ) -> TenantEscalation | None:
        """Note a campaign pause (idempotent per member) and maybe escalate to the tenant.

        Escalates when the tenant reaches `limit` pauses within `within_ms`. Until the escalation
        is confirmed published, every call returns it again, so a crash loses nothing.
        """
        ...

    async def confirm_tenant_pause(self, tenant_id: str, episode: int) -> None:
        """The tenant pause of `episode` is published: stop returning it."""
        ...

    async def tenant_paused(self, tenant_id: str) -> bool:
        """True while a tenant-scoped pause is in force."""
        ...

    async def save_resume(self, ref: CampaignRef, blob: bytes, expected_version: int) -> bool:
        """Write a re-armed campaign state after a resume (compare-and-set)."""
        ...

    async def campaign_lock(self, ref: CampaignRef) -> str | None:
        """The operator lock on a campaign's pause (JSON text), if any."""
        ...

    async def set_campaign_lock(self, ref: CampaignRef, lock: str | None) -> None:
        """Set (or, with None, lift) the operator lock on a campaign's pause."""
        ...


class InMemoryStore:
    """The embedded store for replay and tests: dictionaries, same semantics as Redis.

    With `seen_ttl_ms`, a digest set is forgotten `seen_ttl_ms` after its last write, as Redis
    expires it; but by event time (the newest day written so far), which is what a replay
    advances, and never sooner than Redis would. Without it every digest is kept (tests).
    """

    def __init__(
        self, monotonic: Callable[[], float] = time.monotonic, *, seen_ttl_ms: int | None = None
    ) -> None:
        self._monotonic = monotonic
        self._seen_days_kept = None if seen_ttl_ms is None else math.ceil(seen_ttl_ms / DAY_MS)
        self.campaigns: dict[CampaignRef, tuple[int, bytes]] = {}
        self.outboxes: dict[CampaignRef, tuple[int, list[OutboxMessage]]] = {}
        self.outbox_written_at: dict[CampaignRef, float] = {}
        self.seen: dict[tuple[CampaignRef, int], set[bytes]] = {}
        self._newest_day = 0
        """The store's clock: the newest event day of any digest written."""
        self._seen_written: dict[tuple[CampaignRef, int], int] = {}
        """Each digest set's last write, by the store's clock."""
        self._seen_by_write: dict[int, set[tuple[CampaignRef, int]]] = {}
        """The digest sets last written on each day of the store's clock."""
        self.tenant_pauses: dict[str, dict[str, int]] = {}
        self.tenant_episodes: dict[str, int] = {}
        self.paused_tenants: set[str] = set()
        self.unpublished_tenant_pauses: dict[str, TenantEscalation] = {}
        self.locks: dict[CampaignRef, str] = {}

    async def load_campaigns(self, asks: list[CampaignAsk]) -> list[StoredCampaign]:
        """See `DetectionStore.load_campaigns`."""
        loaded = []
        for ask in asks:
            version, blob = self.campaigns.get(ask.ref, (0, None))
            seen = {
                digest
                for day, digests in ask.digests_by_day.items()
                for digest in digests
                if digest in self.seen.get((ask.ref, day), set())
            }
            outbox_version, outbox = self.outboxes.get(ask.ref, (0, []))
            loaded.append(StoredCampaign(blob, version, list(outbox), outbox_version, seen))
        return loaded

    async def commit_campaigns(self, writes: list[CampaignWrite]) -> list[bool]:
        """See `DetectionStore.commit_campaigns`."""
        # The clock first: every set written now is written at the batch's newest day.
        self._newest_day = max(
            [self._newest_day, *(day for w in writes for day in w.new_digests_by_day)]
        )
        results = []
        for write in writes:
            version = self.campaigns.get(write.ref, (0, b""))[0]
            if version != write.expected_version or (
                write.speculative and self._seen_or_outbox(write)
            ):
                results.append(False)
                continue
            self.campaigns[write.ref] = (version + 1, write.blob)
            for day, digests in write.new_digests_by_day.items():
                key = (write.ref, day)
                self.seen.setdefault(key, set()).update(digests)
                self._note_seen_write(key)
            if write.outbox:
                self.outboxes[write.ref] = (version + 1, list(write.outbox))
                self.outbox_written_at[write.ref] = self._monotonic()
            results.append(True)
        self._expire_seen()
        return results

    def _note_seen_write(self, key: tuple[CampaignRef, int]) -> None:
        if self._seen_days_kept is None:
            return
        previous = self._seen_written.get(key)
        if previous is not None:
            self._seen_by_write[previous].discard(key)
        self._seen_written[key] = self._newest_day
        self._seen_by_write.setdefault(self._newest_day, set()).add(key)

    def _expire_seen(self) -> None:
        if self._seen_days_kept is None:
            return
        # Written at any time of day `written`: gone once a whole TTL has passed after that
        # day's end, whatever the time within the newest day.
        for written in [
            w for w in self._seen_by_write if w < self._newest_day - 1 - self._seen_days_kept
        ]:
            for key in self._seen_by_write.pop(written):
                del self.seen[key]
                del self._seen_written[key]

    def _seen_or_outbox(self, write: CampaignWrite) -> bool:
        if write.ref in self.outboxes:
            return True
        return any(
            not self.seen.get((write.ref, day), set()).isdisjoint(digests)
            for day, digests in write.new_digests_by_day.items()
        )

    async def clear_outbox(self, ref: CampaignRef, version: int) -> None:
        """See `DetectionStore.clear_outbox`."""
        if ref in self.outboxes and self.outboxes[ref][0] == version:
            del self.outboxes[ref]
            del self.outbox_written_at[ref]

    async def campaigns_with_outbox(self, unpublished_for_ms: int = 0) -> list[CampaignRef]:
        """See `DetectionStore.campaigns_with_outbox`."""
        written_before = self._monotonic() - unpublished_for_ms / 1000
        return [ref for ref in self.outboxes if self.outbox_written_at[ref] <= written_before]

    async def record_campaign_pause(
        self, tenant_id: str, member: str, at_ms: int, limit: int, within_ms: int
    ) -> TenantEscalation | None:
        """See `DetectionStore.record_campaign_pause`."""
        pauses = self.tenant_pauses.setdefault(tenant_id, {})
        pauses[member] = at_ms
        for old in [m for m, t in pauses.items() if t < at_ms - within_ms]:
            del pauses[old]
        if tenant_id in self.paused_tenants:
            return self.unpublished_tenant_pauses.get(tenant_id)
        if len(pauses) < limit:
            return None
        self.paused_tenants.add(tenant_id)
        episode = self.tenant_episodes.get(tenant_id, 0) + 1
        self.tenant_episodes[tenant_id] = episode
        by_time = sorted(pauses.items(), key=lambda item: (item[1], item[0]))
        escalation = TenantEscalation(episode, tuple(member for member, _ in by_time))
        self.unpublished_tenant_pauses[tenant_id] = escalation
        return escalation

    async def confirm_tenant_pause(self, tenant_id: str, episode: int) -> None:
        """See `DetectionStore.confirm_tenant_pause`."""
        pending = self.unpublished_tenant_pauses.get(tenant_id)
        if pending is not None and pending.episode == episode:
            del self.unpublished_tenant_pauses[tenant_id]

    async def tenant_paused(self, tenant_id: str) -> bool:
        """See `DetectionStore.tenant_paused`."""
        return tenant_id in self.paused_tenants

    async def save_resume(self, ref: CampaignRef, blob: bytes, expected_version: int) -> bool:
        """See `DetectionStore.save_resume`."""
        version = self.campaigns.get(ref, (0, b""))[0]
        if version != expected_version:
            return False
        self.campaigns[ref] = (version + 1, blob)
        return True

    async def campaign_lock(self, ref: CampaignRef) -> str | None:
        """See `DetectionStore.campaign_lock`."""
        return self.locks.get(ref)

    async def set_campaign_lock(self, ref: CampaignRef, lock: str | None) -> None:
        """See `DetectionStore.set_campaign_lock`."""
        if lock is None:
            self.locks.pop(ref, None)
        else:
            self.locks[ref] = lock
