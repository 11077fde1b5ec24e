"""Seeded, streaming workload generator: simulated campaigns' recipients and delivery events.

Feeds `sendguard demo`, integration tests and benchmarks. Pure (no I/O but `write_jsonl`, no
clock reads): the same seed always gives the same workload. Profiles: `workload_profiles`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from bisect import bisect_right
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, TextIO

from processor.simulation.profiles import (
    CORPORATE_DOMAINS,
    CORPORATE_SHARE,
    PROVIDER_CUMULATIVE,
    PROVIDERS,
    WEEKDAY_COMPLAINTS,
    CampaignKind,
    CampaignProfile,
    Drift,
    Rates,
    deferral_factor,
    demo_profiles,
    domain_share,
    expected_event_count,
    healthy_rates,
    quality_profiles,
)
from schemas.audience import AudienceChunk
from schemas.events import BounceClass, DeliveryEvent, EventType, Recipient

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "CampaignKind",
    "CampaignProfile",
    "Rates",
    "audience_chunks",
    "campaign_events",
    "contact",
    "deferral_factor",
    "demo_profiles",
    "domain_share",
    "expected_event_count",
    "healthy_rates",
    "merged_events",
    "quality_profiles",
    "recipients",
    "to_json_line",
    "write_jsonl",
]

PROVIDER = "simulated"
MAX_CHUNK = 50_000

_MASK64 = (1 << 64) - 1
_UNIT = 2.0**-53
_FIRST_NAMES = (
    "anna ben carla david elena felix grace hugo ines jack kate liam maria noah olivia paul quinn"
    " rosa sam tara umar vera will xenia yusuf zoe li mei raj priya omar lea jonas mia"
)
_LAST_NAMES = (
    "smith jones garcia muller rossi dubois kowalski nguyen kim patel silva novak jensen brown"
    " taylor wilson martin lee walker young king wright lopez hill scott green baker adams"
    " nelson"
)
_FIRST, _LAST = tuple(_FIRST_NAMES.split()), tuple(_LAST_NAMES.split())
_DEFERRAL = {name: deferral_factor(name) for name, _, _ in PROVIDERS}
_CORPORATE_DEFERRAL = deferral_factor(CORPORATE_DOMAINS[0])
_FAST_OPENERS = frozenset({"icloud.com", "me.com"})
"""Apple Mail Privacy Protection prefetches images: 'opens' there come minutes after delivery."""

# Delays in seconds: (median, sigma) of lognormal distributions, and the cap on any delay.
_OPEN = (45 * 60.0, 1.3)
_FAST_OPEN = (120.0, 1.0)
_CLICK = (40.0, 1.0)
_UNSUBSCRIBE = (30 * 60.0, 1.2)
_COMPLAINT = (3 * 3600.0, 0.9)
_REDELIVERY = (20 * 60.0, 0.8)
_MAX_DELAY = 72 * 3600.0


def _mix(x: int) -> int:
    """splitmix64 finalizer: a well-spread 64-bit hash of x."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _tenant_key(seed: int, tenant_id: str) -> int:
    digest = hashlib.blake2b(f"{seed}/{tenant_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _contact(tenant_key: int, tenant_id: str, k: int) -> tuple[Recipient, float]:
    """Contact k of a tenant, and its 'dead address' draw in [0, 1).

    A contact hard-bounces in every campaign whose hard-bounce rate exceeds its draw, so dead
    addresses stay dead across the tenant's campaigns.
    """
    h1 = _mix(tenant_key + k)
    h2 = _mix(h1)
    u = (h2 >> 11) * _UNIT
    slot = bisect_right(PROVIDER_CUMULATIVE, u)
    if slot < len(PROVIDERS):
        domain = PROVIDERS[slot][0]
    else:
        v = (u - PROVIDER_CUMULATIVE[-1]) / CORPORATE_SHARE
        corporate = min(len(CORPORATE_DOMAINS) - 1, int(len(CORPORATE_DOMAINS) * v * v))
        domain = CORPORATE_DOMAINS[corporate]  # v*v: a few domains are big, most are tiny
    first, last = _FIRST[h1 % len(_FIRST)], _LAST[(h1 >> 8) % len(_LAST)]
    # Names end in letters and k is the trailing digit run, so addresses are unique per tenant.
    local = (f"{first}.{last}", f"{first}{last}", f"{first[0]}{last}", f"{first}_{last}")[
        (h1 >> 16) % 4
    ]
    recipient = Recipient(contact_id=f"{tenant_id}-c{k}", address=f"{local}{k}@{domain}")
    return recipient, (h1 >> 11) * _UNIT


def contact(seed: int, tenant_id: str, k: int) -> Recipient:
    """Contact number k of a tenant's contact pool: the same in every campaign of the tenant."""
    return _contact(_tenant_key(seed, tenant_id), tenant_id, k)[0]


def _walk(profile: CampaignProfile, seed: int) -> Iterator[tuple[Recipient, float]]:
    """The campaign's recipients and their dead-address draws, in send order.

    A seeded walk over the tenant's pool with a stride coprime to its size: no contact is
    picked twice and nothing is stored.
    """
    pool = profile.pool_size
    rng = random.Random(f"{seed}/{profile.tenant_id}/{profile.campaign_id}/audience")  # noqa: S311  # seeded simulation, not security
    k = rng.randrange(pool)
    stride = 1
    if pool > 1:
        stride = rng.randrange(1, pool)
        while math.gcd(stride, pool) != 1:
            stride = rng.randrange(1, pool)
    key = _tenant_key(seed, profile.tenant_id)
    for _ in range(profile.size):
        yield _contact(key, profile.tenant_id, k)
        k = (k + stride) % pool


def recipients(profile: CampaignProfile, seed: int) -> Iterator[Recipient]:
    """The campaign's recipients in send order (lazily; tenant-wide contacts, lower-case)."""
    return (recipient for recipient, _ in _walk(profile, seed))


def audience_chunks(
    profile: CampaignProfile, seed: int, chunk_size: int
) -> Iterator[AudienceChunk]:
    """The campaign's planned audience as chunks of `chunk_size` recipients (1..50,000)."""
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise ValueError(f"chunk_size must lie in [1, {MAX_CHUNK}]")
    return _chunks(profile, seed, chunk_size)


def _chunks(profile: CampaignProfile, seed: int, chunk_size: int) -> Iterator[AudienceChunk]:
    total = -(-profile.size // chunk_size)
    batch: list[Recipient] = []
    index = 0
    for recipient in recipients(profile, seed):
        batch.append(recipient)
        if len(batch) == chunk_size:
            yield _chunk(profile, index, total, batch)
            batch, index = [], index + 1
    if batch:
        yield _chunk(profile, index, total, batch)


def _chunk(
    profile: CampaignProfile, index: int, total: int, batch: list[Recipient]
) -> AudienceChunk:
    return AudienceChunk(
        tenant_id=profile.tenant_id,
        campaign_id=profile.campaign_id,
        chunk_index=index,
        total_chunks=total,
        recipients=batch,
    )


def _lognormal(rng: random.Random, shape: tuple[float, float], low: float) -> float:
    median, sigma = shape
    return min(_MAX_DELAY, max(low, median * math.exp(sigma * rng.gauss())))


_ID_SUFFIX = {kind: f":{kind.value}" for kind in EventType}
_Pending = tuple[int, int, int, EventType, BounceClass | None, Recipient]
"""(offset µs, tie-break sequence, recipient index, type, bounce class, recipient)."""


def _outcomes(  # noqa: PLR0917  # one send's whole situation, called in one place
    rng: random.Random,
    rates: Rates,
    dead: float,
    domain: str,
    sent_us: int,
    held_until_us: int = 0,
) -> list[tuple[int, EventType, BounceClass | None]]:
    """The events following one send: (offset µs, type, bounce class), in any order.

    Before `held_until_us` the recipient's provider defers every message (a drift profile's
    deferring provider); it delivers them after.
    """
    if dead < rates.hard_bounce:
        bounce: BounceClass | None = BounceClass.HARD
    else:
        # Soft bounces and blocks among the live addresses, keeping their per-send rates.
        u = rng.random() * (1.0 - rates.hard_bounce)
        if u < rates.soft_bounce:
            bounce = BounceClass.SOFT
        elif u < rates.soft_bounce + rates.block:
            bounce = BounceClass.BLOCK
        else:
            bounce = None
    if bounce is not None:
        delay = math.exp(math.log(2.0) + rng.random() * math.log(150.0))  # 2 s .. 5 min
        return [(sent_us + int(delay * 1e6), EventType.BOUNCE, bounce)]
    out: list[tuple[int, EventType, BounceClass | None]] = []
    at = sent_us + int((1.0 + 29.0 * rng.random() ** 2) * 1e6)  # mostly within seconds
    factor = _DEFERRAL.get(domain, _CORPORATE_DEFERRAL)
    if rng.random() * (1.0 - rates.failed) < rates.deferral * factor or at < held_until_us:
        out.append((at, EventType.DEFERRED, None))
        at = max(at, held_until_us) + int(_lognormal(rng, _REDELIVERY, 300.0) * 1e6)
    out.append((at, EventType.DELIVERED, None))
    if rng.random() < rates.open:
        shape = _FAST_OPEN if domain in _FAST_OPENERS else _OPEN
        opened = at + int(_lognormal(rng, shape, 5.0) * 1e6)
        out.append((opened, EventType.OPEN, None))
        if rng.random() * rates.open < rates.click:
            out.append((opened + int(_lognormal(rng, _CLICK, 2.0) * 1e6), EventType.CLICK, None))
    if rng.random() < rates.unsubscribe:
        out.append(
            (at + int(_lognormal(rng, _UNSUBSCRIBE, 20.0) * 1e6), EventType.UNSUBSCRIBE, None)
        )
    if rng.random() < rates.complaint:
        out.append((at + int(_lognormal(rng, _COMPLAINT, 300.0) * 1e6), EventType.COMPLAINT, None))
    return out


def campaign_events(
    profile: CampaignProfile, seed: int, start_at: datetime
) -> Iterator[DeliveryEvent]:
    """The campaign's delivery events in nondecreasing `occurred_at` order, lazily.

    Recipient i is sent at `start_at + start_offset_s + i / send_rate_per_s`; its later events
    wait in a heap, so memory is O(events pending), not O(campaign size). Event ids are
    `tenant:campaign:i:type`.
    """
    if start_at.tzinfo is None:
        raise ValueError("start_at must be timezone-aware")
    base = start_at.astimezone(UTC) + timedelta(seconds=profile.start_offset_s)
    return _campaign_events(profile, seed, base)


def _campaign_events(
    profile: CampaignProfile, seed: int, base: datetime
) -> Iterator[DeliveryEvent]:
    tenant, campaign = profile.tenant_id, profile.campaign_id
    rng = random.Random(f"{seed}/{tenant}/{campaign}/events")  # noqa: S311  # seeded simulation, not security
    us_per_send = 1e6 / profile.send_rate_per_s
    onset, bad, burst = profile.onset_index, profile.bad_rates, profile.burst_domain
    drift = profile.drift
    event_prefix, message_prefix = f"{tenant}:{campaign}:", f"{tenant}.{campaign}."

    def event(
        at_us: int, i: int, kind: EventType, bounce: BounceClass | None, recipient: Recipient
    ) -> DeliveryEvent:
        return DeliveryEvent(
            event_id=f"{event_prefix}{i}{_ID_SUFFIX[kind]}",
            tenant_id=tenant,
            campaign_id=campaign,
            recipient=recipient,
            type=kind,
            bounce_class=bounce,
            occurred_at=base + timedelta(microseconds=at_us),
            provider=PROVIDER,
            provider_message_id=f"{message_prefix}{i}",
        )

    pending: list[_Pending] = []
    sequence = 0
    for i, (recipient, dead) in enumerate(_walk(profile, seed)):
        sent_us = int(i * us_per_send)
        while pending and pending[0][0] <= sent_us:
            at_us, _, j, kind, bounce, who = heapq.heappop(pending)
            yield event(at_us, j, kind, bounce, who)
        yield event(sent_us, i, EventType.SENT, None, recipient)
        domain = recipient.domain
        rates = profile.rates
        if bad is not None and i >= onset and (burst is None or domain == burst):
            rates = bad
        held_until_us = 0
        if drift is not None:
            rates, held_until_us = _drifted(profile, drift, rates, i, sent_us, base, domain)
        for at_us, kind, bounce in _outcomes(rng, rates, dead, domain, sent_us, held_until_us):
            heapq.heappush(pending, (at_us, sequence, i, kind, bounce, recipient))
            sequence += 1
    while pending:
        at_us, _, j, kind, bounce, who = heapq.heappop(pending)
        yield event(at_us, j, kind, bounce, who)


def _drifted(  # noqa: PLR0917  # one send's situation, called in one place
    profile: CampaignProfile,
    drift: Drift,
    rates: Rates,
    index: int,
    sent_us: int,
    base: datetime,
    domain: str,
) -> tuple[Rates, int]:
    """A drift profile's rates for recipient `index`, and until when its provider defers."""
    share = index / max(1, profile.size - 1)
    hard = rates.hard_bounce + (drift.hard_bounce_end - rates.hard_bounce) * share
    complaint = rates.complaint
    if drift.weekday_complaints:
        weekday = (base + timedelta(microseconds=sent_us)).weekday()
        complaint = min(1.0, complaint * WEEKDAY_COMPLAINTS[weekday])
    held_until_us = 0
    if domain == drift.deferring_domain:
        start_us = int(drift.deferring_from_s * 1e6)
        end_us = start_us + int(drift.deferring_for_s * 1e6)
        if start_us <= sent_us < end_us:
            held_until_us = end_us
    return replace(rates, hard_bounce=hard, complaint=complaint), held_until_us


def merged_events(
    profiles: Iterable[CampaignProfile], seed: int, start_at: datetime
) -> Iterator[DeliveryEvent]:
    """All campaigns' events interleaved in `occurred_at` order, lazily.

    Ties go to the campaign that comes first in `profiles`, then to the campaign's own order,
    so the merge is deterministic.
    """
    streams = [campaign_events(profile, seed, start_at) for profile in profiles]
    return heapq.merge(*streams, key=attrgetter("occurred_at"))


def to_json_line(event: DeliveryEvent) -> str:
    """The event as one line of JSON (no trailing newline)."""
    return event.model_dump_json()


def write_jsonl(events: Iterable[DeliveryEvent], fp: TextIO) -> int:
    """Write events to `fp` as JSON lines; return how many were written."""
    count = 0
    for event in events:
        fp.write(to_json_line(event))
        fp.write("\n")
        count += 1
    return count
