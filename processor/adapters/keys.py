"""Every Redis key sendguard uses, in one place, with its Redis Cluster hash tag.

A campaign's keys share the tag `{c:<tenant>:<campaign>}` so one Lua script can update them
atomically in one slot; a tenant's keys share `{t:<tenant>}`. Every key that names a campaign or
a contact names its tenant too: two tenants' campaigns `welcome` are two campaigns.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (tests give each test its own prefix)."""

    prefix: str

    def campaign_state(self, tenant_id: str, campaign_id: str) -> str:
        """Hash: detection state blob `s`, version `v`, pending outbox `o`/`ov`, epoch `e`."""
        return f"{self.prefix}:{{c:{tenant_id}:{campaign_id}}}:state"

    def campaign_seen(self, tenant_id: str, campaign_id: str, day: int, epoch: str = "") -> str:
        """Set of 8-byte digests of event ids applied, per event-time day of the events.

        Scoped by the state epoch (see `state_epoch`): digests written into a Redis that had
        lost its state, before the loss was noticed, are never read by the rebuilt state.
        The first epoch of a deployment that predates epochs is "" (the names it always had).
        """
        scope = f"{epoch}:" if epoch else ""
        return f"{self.prefix}:{{c:{tenant_id}:{campaign_id}}}:seen:{scope}{day}"

    def campaign_attempted(self, tenant_id: str, campaign_id: str) -> str:
        """Set of 8-byte digests of the contact ids this campaign has already attempted."""
        return f"{self.prefix}:{{c:{tenant_id}:{campaign_id}}}:attempted"

    def campaign_audience(self, tenant_id: str, campaign_id: str) -> str:
        """Hash chunk index -> packed recipients of the planned audience."""
        return f"{self.prefix}:{{c:{tenant_id}:{campaign_id}}}:audience"

    def campaign_lock(self, tenant_id: str, campaign_id: str) -> str:
        """String: the operator lock of a campaign's pause (JSON: by, reason, at)."""
        return f"{self.prefix}:{{c:{tenant_id}:{campaign_id}}}:lock"

    def resume_outcome(self, tenant_id: str, campaign_id: str, request_id: str) -> str:
        """String: the outcome already given to a resume request, as JSON (idempotency)."""
        return f"{self.prefix}:{{c:{tenant_id}:{campaign_id}}}:resume:{request_id}"

    def tenant_state(self, tenant_id: str) -> str:
        """Hash: tenant pause status `st`, episode `ep`, pending outbox `o`."""
        return f"{self.prefix}:{{t:{tenant_id}}}:tenant"

    def tenant_pauses(self, tenant_id: str) -> str:
        """Sorted set of campaign pause episodes scored by event time (for escalation)."""
        return f"{self.prefix}:{{t:{tenant_id}}}:pauses"

    def contacts(self, tenant_id: str, contact_id: str, shards: int) -> str:
        """Hash shard contact id -> contact state (domain/contact_codec.py; v1 and v2 read too).

        A tenant's shards share its tag, so one Lua script merges a whole batch of its contacts.
        """
        shard = zlib.crc32(contact_id.encode()) % shards
        return f"{self.prefix}:{{t:{tenant_id}}}:contacts:{shard}"

    def contact_shard_prefix(self, tenant_id: str) -> str:
        """`contacts` without the shard number: that key is this plus `contact_shards(...)`.

        For batch reads, which build the key of each shard once rather than once per contact.
        """
        return f"{self.prefix}:{{t:{tenant_id}}}:contacts:"

    def legacy_campaign_owner(self, campaign_id: str) -> str:
        """String written before 2026-12: the first tenant to plan a campaign id, across tenants.

        No longer read or written (any tenant could squat a common campaign id with it): the
        tenant's own audience key says whether it planned the campaign. Left to expire.
        """
        return f"{self.prefix}:owner:{campaign_id}"

    def tenant_campaign_keys(self, tenant_id: str, suffix: str) -> tuple[str, re.Pattern[str]]:
        """A SCAN pattern for the tenant's campaign keys ending `:suffix`, and the exact shape.

        The glob may match more (a request id can hold `:attempted`): keep only the keys the
        regular expression matches in full.
        """
        glob = f"{_glob_escape(self.prefix)}:{{c:{_glob_escape(tenant_id)}:*}}:{suffix}"
        exact = (
            rf"{re.escape(self.prefix)}:\{{c:{re.escape(tenant_id)}:[^}}]+\}}:{re.escape(suffix)}"
        )
        return glob, re.compile(exact)

    def resume_run(self, tenant_id: str, campaign_id: str, run_id: str) -> str:
        """Set of 8-byte contact digests one resume run has met (drops planned duplicates)."""
        return f"{self.prefix}:{{c:{tenant_id}:{campaign_id}}}:resume-run:{run_id}"

    def webhook_token(self, provider: str, token: str) -> str:
        """String: a webhook signing token already accepted (replay protection, expires)."""
        return f"{self.prefix}:webhook-token:{provider}:{token}"

    def bridge_outcome(self, bridge: str, command_id: str) -> str:
        """String: what a bridge did with a control command (idempotency; expires, 90 days)."""
        return f"{self.prefix}:{{b:{bridge}}}:done:{command_id}"

    def bridge_suspensions(self, bridge: str, tenant_id: str, campaign_id: str | None) -> str:
        """Hash pause command id -> the MTA's suspension id, per tenant (`t:`) or campaign (`c:`).

        A bridge's keys share the tag `{b:<bridge>}`, so a pause's suspension and its outcome
        are written in one transaction.
        """
        scope = f"t:{tenant_id}" if campaign_id is None else f"c:{tenant_id}:{campaign_id}"
        return f"{self.prefix}:{{b:{bridge}}}:suspended:{scope}"

    def outbox_index(self) -> str:
        """Sorted set of campaigns whose outbox may still hold unpublished messages.

        Scored by when the outbox was written (ms, Redis's clock), so that the recovery sweep
        takes only outboxes left long enough to be a crash's, not one being published.
        """
        return f"{self.prefix}:outboxes"

    def state_epoch(self) -> str:
        """Hash, no TTL: the epoch of the detection state (services/state_guard.py).

        `id` (creation time in ms, zero-padded, then a random part: ids sort by age),
        `created_at`, and after a loss the rebuild plan: `rewind_to` (ms), `reason`,
        `previous`, `announced`, and `rebuilt:<partition>` for each partition rewound.
        Written with the first state; missing while group offsets exist means Redis lost it.
        """
        return f"{self.prefix}:state-epoch"

    def legacy_outbox_index(self) -> str:
        """Set of the same, as written before 2026-11-27; still read and cleared (no times)."""
        return f"{self.prefix}:outbox"

    def every_key(self) -> str:
        """SCAN MATCH pattern of every key above (the prefix's glob characters escaped)."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.prefix)
        return f"{escaped}:*"


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis glob pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def contact_shards(raw_contact_ids: Iterable[bytes], shards: int) -> list[int]:
    """The shard number of each contact id (as UTF-8), as `Keys.contacts` picks it."""
    crc32 = zlib.crc32
    return [crc32(raw) % shards for raw in raw_contact_ids]
