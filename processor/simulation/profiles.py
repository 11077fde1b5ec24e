"""Simulated campaign profiles, the mailbox-provider mix, and the stock profile sets.

The stock sets are the `sendguard demo` mix and the detection-quality benchmark mix; the
generator that turns profiles into events is `processor.simulation.workload`.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import accumulate

# Mailbox providers and their share of a typical B2C list; the remaining share goes to
# CORPORATE_DOMAINS. The deferral factor is how much more often the provider defers (greylists
# or rate-limits) than average: Yahoo/AOL defer notoriously often, Microsoft somewhat.
PROVIDERS: tuple[tuple[str, float, float], ...] = (
    ("gmail.com", 0.35, 1.0),
    ("yahoo.com", 0.12, 3.0),
    ("outlook.com", 0.09, 2.0),
    ("hotmail.com", 0.06, 2.0),
    ("icloud.com", 0.08, 1.0),
    ("aol.com", 0.02, 3.0),
    ("live.com", 0.01, 2.0),
    ("comcast.net", 0.01, 1.0),
    ("gmx.de", 0.01, 1.0),
    ("web.de", 0.01, 1.0),
    ("protonmail.com", 0.01, 1.0),
    ("me.com", 0.005, 1.0),
    ("msn.com", 0.005, 2.0),
)
_CORP_WORDS = "acme blue north bright cedar delta ember falcon granite harbor iron juniper"
_CORP_MORE = "kestrel lumen maple nimbus orbit pine quartz river"
_CORP_PREFIXES = tuple(f"{_CORP_WORDS} {_CORP_MORE}".split())
_CORP_SUFFIXES = ("labs", "works", "group", "tech", "media", "partners", "systems", "studio")
_CORP_TLDS = ("com", "io", "co.uk", "de", "net")
CORPORATE_DOMAINS: tuple[str, ...] = tuple(
    f"{p}{s}.{t}" for t in _CORP_TLDS for s in _CORP_SUFFIXES for p in _CORP_PREFIXES
)
"""800 small and corporate domains sharing what the big providers leave (Zipf-like skew)."""
CORPORATE_SHARE = 1.0 - sum(share for _, share, _ in PROVIDERS)
PROVIDER_CUMULATIVE: tuple[float, ...] = tuple(accumulate(share for _, share, _ in PROVIDERS))
MEAN_DEFERRAL_FACTOR = CORPORATE_SHARE + sum(s * f for _, s, f in PROVIDERS)
"""Deferral factors are divided by this, so a profile's deferral rate is the list-wide rate."""

_IDENTIFIER = re.compile(r"^[^\s:]{1,200}$")


def domain_share(domain: str) -> float:
    """The share of a typical list's recipients at `domain` (0.0 for an unknown domain)."""
    for name, share, _ in PROVIDERS:
        if name == domain:
            return share
    return CORPORATE_SHARE / len(CORPORATE_DOMAINS) if domain in CORPORATE_DOMAINS else 0.0


def deferral_factor(domain: str) -> float:
    """How much more often than the list-wide rate `domain` defers (normalized to mean 1)."""
    for name, _, factor in PROVIDERS:
        if name == domain:
            return factor / MEAN_DEFERRAL_FACTOR
    return 1.0 / MEAN_DEFERRAL_FACTOR


class CampaignKind(StrEnum):
    """What a simulated campaign does; every kind but HEALTHY should be paused."""

    HEALTHY = "healthy"
    BAD_LIST = "bad_list"
    COMPLAINT_WAVE = "complaint_wave"
    UNSUBSCRIBE_WAVE = "unsubscribe_wave"
    PROVIDER_BURST = "provider_burst"


@dataclass(frozen=True, slots=True)
class Rates:
    """Outcome probabilities of one campaign phase.

    Bounces and deferrals are per send (a deferred message is still delivered); complaint,
    unsubscribe, open and click are per delivered message, and a click always comes with an
    open (so click <= open).
    """

    hard_bounce: float = 0.01
    soft_bounce: float = 0.004
    block: float = 0.002
    deferral: float = 0.03
    complaint: float = 0.0003
    unsubscribe: float = 0.003
    open: float = 0.25
    click: float = 0.03

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"rate {name}={value} is not a probability")
        if self.hard_bounce + self.soft_bounce + self.block > 1.0:
            raise ValueError("hard_bounce + soft_bounce + block exceeds 1")
        if self.click > self.open:
            raise ValueError("click exceeds open: every click comes with an open")

    @property
    def failed(self) -> float:
        """Probability that a send bounces (any class)."""
        return self.hard_bounce + self.soft_bounce + self.block


WEEKDAY_COMPLAINTS = (0.8, 0.9, 1.0, 1.0, 1.2, 1.5, 1.6)
"""Complaint rate factor by weekday of the send (Monday first): weekend mail annoys more."""


@dataclass(frozen=True, slots=True)
class Drift:
    """How a healthy campaign's rates move during its send (the drift mix).

    The hard-bounce rate rises linearly from the profile's rate at the first recipient to
    `hard_bounce_end` at the last (older segments of the list come last); the complaint rate
    is scaled by `WEEKDAY_COMPLAINTS` of each send's weekday, if `weekday_complaints`; and
    `deferring_domain`, if any, defers every message sent to it from `deferring_from_s` for
    `deferring_for_s` seconds after the campaign's start, delivering them after that.
    """

    hard_bounce_end: float
    weekday_complaints: bool = True
    deferring_domain: str | None = None
    deferring_from_s: float = 0.0
    deferring_for_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class CampaignProfile:
    """One simulated campaign: its size, pace, outcome rates and (if bad) when it turns bad.

    Recipient i (0-based, in send order) is sent at
    `start_offset_s + i / send_rate_per_s` seconds after the workload's start. From recipient
    `int(onset_fraction * size)` on, `bad_rates` apply instead of `rates` (for a provider burst
    only to recipients at `burst_domain`). Recipients are drawn from the tenant's contact pool
    of `tenant_contacts` contacts (0: as many as `size`), so campaigns of a tenant overlap.
    """

    tenant_id: str
    campaign_id: str
    size: int
    kind: CampaignKind = CampaignKind.HEALTHY
    send_rate_per_s: float = 50.0
    rates: Rates = field(default_factory=Rates)
    bad_rates: Rates | None = None
    onset_fraction: float = 1.0
    burst_domain: str | None = None
    start_offset_s: float = 0.0
    tenant_contacts: int = 0
    drift: Drift | None = None

    def __post_init__(self) -> None:
        for name in (self.tenant_id, self.campaign_id):
            if not _IDENTIFIER.match(name):
                raise ValueError(f"bad identifier {name!r}: 1-200 chars, no whitespace or ':'")
        if self.size < 1 or self.send_rate_per_s <= 0 or self.start_offset_s < 0:
            raise ValueError("need size >= 1, send_rate_per_s > 0 and start_offset_s >= 0")
        if self.tenant_contacts and self.tenant_contacts < self.size:
            raise ValueError("tenant_contacts must be 0 or at least size")
        if not 0.0 <= self.onset_fraction <= 1.0:
            raise ValueError("onset_fraction must lie in [0, 1]")
        bad = self.kind is not CampaignKind.HEALTHY
        if bad != (self.bad_rates is not None):
            raise ValueError(f"{self.kind} campaigns {'need' if bad else 'take no'} bad_rates")
        if (self.kind is CampaignKind.PROVIDER_BURST) != (self.burst_domain is not None):
            raise ValueError("burst_domain is required for, and only for, provider_burst")

    @property
    def onset_index(self) -> int:
        """Index of the first recipient sent under the bad rates (size if never)."""
        return self.size if self.bad_rates is None else int(self.onset_fraction * self.size)

    @property
    def pool_size(self) -> int:
        """Size of the contact pool the recipients are drawn from."""
        return self.tenant_contacts or self.size


def _events_per_send(rates: Rates, deferral_factor_: float = 1.0) -> float:
    delivered = 1.0 - rates.failed
    engagement = rates.open + rates.click + rates.complaint + rates.unsubscribe
    deferred = min(1.0, rates.deferral * deferral_factor_ / max(delivered, 1e-12))
    return 1.0 + rates.failed + delivered * (1.0 + deferred + engagement)


def expected_event_count(profile: CampaignProfile) -> float:
    """The expected number of events `campaign_events` yields for `profile`."""
    before = profile.onset_index
    total = before * _events_per_send(profile.rates)
    after = profile.size - before
    if profile.bad_rates is not None and after:
        if profile.burst_domain is None:
            total += after * _events_per_send(profile.bad_rates)
        else:
            share = domain_share(profile.burst_domain)
            factor = deferral_factor(profile.burst_domain)
            total += after * (
                share * _events_per_send(profile.bad_rates, factor)
                + (1 - share) * _events_per_send(profile.rates)
            )
    return total


def _loguniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def healthy_rates(rng: random.Random) -> Rates:
    """Random rates of a healthy campaign, with realistic noise.

    Hard bounces 0.3-2%, complaints 0.01-0.05%, unsubscribes 0.1-0.8% (all log-uniform), a
    few soft bounces, blocks and deferrals, opens 15-45% and clicks 5-20% of the opens.
    """
    opens = rng.uniform(0.15, 0.45)
    return Rates(
        hard_bounce=_loguniform(rng, 0.003, 0.02),
        soft_bounce=_loguniform(rng, 0.002, 0.01),
        block=_loguniform(rng, 0.0005, 0.005),
        deferral=_loguniform(rng, 0.01, 0.05),
        complaint=_loguniform(rng, 0.0001, 0.0005),
        unsubscribe=_loguniform(rng, 0.001, 0.008),
        open=opens,
        click=opens * rng.uniform(0.05, 0.2),
    )


def _send_rate(rng: random.Random, size: int, min_s: float, max_s: float) -> float:
    """A send rate that spreads `size` sends over a log-uniform duration in [min_s, max_s]."""
    return size / _loguniform(rng, min_s, max_s)


DEMO_TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")
_CAMPAIGN_WORDS = "newsletter spring-sale product-update webinar winback onboarding flash-sale"
_CAMPAIGN_MORE = "digest survey launch loyalty reminder event-invite recap"
_CAMPAIGN_NAMES = tuple(f"{_CAMPAIGN_WORDS} {_CAMPAIGN_MORE}".split())
DEMO_TARGET_EVENTS = 550_000
DEMO_MIN, DEMO_MAX = 2000, 60_000
_DEMO_BIG = {("acme", 0): 1.0, ("hooli", 0): math.log(10) / math.log(30)}
"""Healthy campaigns of fixed size: acme's 60k and hooli's 20k newsletters."""


def demo_profiles(seed: int) -> list[CampaignProfile]:
    """The `sendguard demo` mix: 6 tenants, 30 campaigns, about 550k events.

    Campaigns have 2k-60k recipients and start within 6 hours. Mostly healthy; 'globex' runs
    a bad list, an unsubscribe wave and a Yahoo hard-bounce burst within its first hour
    (enough pauses for tenant escalation); 'initech' runs another bad list and 'umbrella' a
    complaint wave.
    """
    rng = random.Random(f"demo/{seed}")  # noqa: S311  # seeded simulation, not security
    bad_plan = {
        ("globex", 1): CampaignKind.BAD_LIST,
        ("globex", 2): CampaignKind.UNSUBSCRIBE_WAVE,
        ("globex", 3): CampaignKind.PROVIDER_BURST,
        ("initech", 2): CampaignKind.BAD_LIST,
        ("umbrella", 1): CampaignKind.COMPLAINT_WAVE,
    }
    drawn: list[tuple[CampaignProfile, float | None, bool]] = []
    for tenant in DEMO_TENANTS:
        names = rng.sample(_CAMPAIGN_NAMES, 5)
        for n, name in enumerate(names):
            kind = bad_plan.get((tenant, n), CampaignKind.HEALTHY)
            # Healthy sizes are 2k * 30**(v * beta): log-uniform in [2k, 2k * 30**beta], but
            # two fixed big newsletters (60k and 20k) that beta does not shrink.
            v = _DEMO_BIG.get((tenant, n), rng.random())
            size = DEMO_MAX if kind is CampaignKind.HEALTHY else rng.randrange(5000, 9000)
            start = rng.uniform(0, 3600) if tenant == "globex" else rng.uniform(0, 6 * 3600)
            profile = _demo_profile(
                rng,
                tenant=tenant,
                campaign=f"{tenant}-{name}-{n}",
                size=size,
                kind=kind,
                start=start,
            )
            healthy = kind is CampaignKind.HEALTHY
            drawn.append((profile, v if healthy else None, (tenant, n) in _DEMO_BIG))

    def sized(beta: float) -> list[CampaignProfile]:
        return [
            p
            if v is None
            else _resized(p, DEMO_MIN * (DEMO_MAX / DEMO_MIN) ** (v if fixed else v * beta))
            for p, v, fixed in drawn
        ]

    low, high = 0.0, 1.0  # bisect beta so the expected event count meets the budget
    for _ in range(40):
        beta = (low + high) / 2
        if sum(map(expected_event_count, sized(beta))) > DEMO_TARGET_EVENTS:
            high = beta
        else:
            low = beta
    profiles = sized(low)
    # Each tenant's contact pool is a bit bigger than its biggest campaign: heavy overlap.
    pools = {
        t: round(1.25 * max(p.size for p in profiles if p.tenant_id == t)) for t in DEMO_TENANTS
    }
    return [replace(p, tenant_contacts=pools[p.tenant_id]) for p in profiles]


_DEMO_ONSETS = {
    CampaignKind.HEALTHY: (1.0, 1.0),
    CampaignKind.BAD_LIST: (0.2, 0.5),  # the send reaches a stale or bought segment
    CampaignKind.PROVIDER_BURST: (0.2, 0.5),  # the provider starts rejecting mid-send
    CampaignKind.COMPLAINT_WAVE: (0.0, 0.2),  # content or targeting: nearly from the start
    CampaignKind.UNSUBSCRIBE_WAVE: (0.0, 0.2),
}


def _resized(profile: CampaignProfile, size: float) -> CampaignProfile:
    """The profile with a new size (clamped to the demo range) and the same send duration."""
    new = min(DEMO_MAX, max(DEMO_MIN, round(size)))
    return replace(profile, size=new, send_rate_per_s=profile.send_rate_per_s * new / profile.size)


def _demo_profile(
    rng: random.Random, *, tenant: str, campaign: str, size: int, kind: CampaignKind, start: float
) -> CampaignProfile:
    rates = healthy_rates(rng)
    bad: Rates | None = None
    domain: str | None = None
    match kind:
        case CampaignKind.BAD_LIST:
            bad = replace(rates, hard_bounce=rng.uniform(0.08, 0.2), soft_bounce=0.02, block=0.01)
        case CampaignKind.COMPLAINT_WAVE:
            bad = replace(rates, complaint=rng.uniform(0.005, 0.01))
        case CampaignKind.UNSUBSCRIBE_WAVE:
            bad = replace(rates, unsubscribe=0.08)
        case CampaignKind.PROVIDER_BURST:
            domain = "yahoo.com"
            bad = replace(rates, hard_bounce=0.7, soft_bounce=0.0, block=0.25, deferral=0.05)
        case CampaignKind.HEALTHY:
            pass
    return CampaignProfile(
        tenant_id=tenant,
        campaign_id=campaign,
        size=size,
        kind=kind,
        send_rate_per_s=_send_rate(rng, size, 600, 2 * 3600),
        rates=rates,
        bad_rates=bad,
        onset_fraction=rng.uniform(*_DEMO_ONSETS[kind]),
        burst_domain=domain,
        start_offset_s=start,
    )


QUALITY_HEALTHY = 1000
QUALITY_BAD = 200


def quality_profiles(seed: int) -> list[CampaignProfile]:
    """The detection-quality benchmark mix: 1,000 healthy and 200 bad campaigns.

    Bad ones are a bad list (hard bounces 6-30%), a complaint wave (0.3-2%) or an unsubscribe
    wave (6-15%) from an onset uniform in [0, 0.8). Sizes are log-uniform in [50, 500k]; starts
    are spread over 7 days. Every campaign has its own tenant, so tenant escalation never
    confounds per-campaign verdicts. Healthy and bad campaigns are shuffled together; `kind`
    is the ground truth. About 65M recipients and 150M events (see docs/WORKLOAD.md).
    """
    rng = random.Random(f"quality/{seed}")  # noqa: S311  # seeded simulation, not security
    kinds = [CampaignKind.HEALTHY] * QUALITY_HEALTHY + [
        rng.choice(
            (CampaignKind.BAD_LIST, CampaignKind.COMPLAINT_WAVE, CampaignKind.UNSUBSCRIBE_WAVE)
        )
        for _ in range(QUALITY_BAD)
    ]
    rng.shuffle(kinds)
    profiles = []
    for n, kind in enumerate(kinds):
        size = round(_loguniform(rng, 50, 500_000))
        rates = healthy_rates(rng)
        bad: Rates | None = None
        match kind:
            case CampaignKind.BAD_LIST:
                bad = replace(rates, hard_bounce=rng.uniform(0.06, 0.3))
            case CampaignKind.COMPLAINT_WAVE:
                bad = replace(rates, complaint=rng.uniform(0.003, 0.02))
            case CampaignKind.UNSUBSCRIBE_WAVE:
                bad = replace(rates, unsubscribe=rng.uniform(0.06, 0.15))
            case _:
                pass
        profiles.append(
            CampaignProfile(
                tenant_id=f"q{n:04d}",
                campaign_id=f"camp{n:04d}",
                size=size,
                kind=kind,
                send_rate_per_s=_send_rate(rng, size, 300, 3 * 3600),
                rates=rates,
                bad_rates=bad,
                onset_fraction=rng.uniform(0.0, 0.8) if bad is not None else 1.0,
                start_offset_s=rng.uniform(0, 7 * 86400),
            )
        )
    return profiles


DRIFT_CAMPAIGNS = 120


def drift_profiles(seed: int) -> list[CampaignProfile]:
    """The drift mix: healthy campaigns whose rates move as real sends' do, none of them bad.

    Hard bounces rise from 1-1.5% to 2-3% over the send, complaints follow the weekday
    (0.02-0.05% times 0.8-1.6), and in every campaign one mailbox provider (Yahoo, Outlook or
    Gmail) defers everything for an hour somewhere in the send. Sizes log-uniform in [2k,
    300k], sends over 20 minutes to 6 hours, starts spread over 7 days; one tenant each.
    """
    rng = random.Random(f"drift/{seed}")  # noqa: S311  # seeded simulation, not security
    profiles = []
    for n in range(DRIFT_CAMPAIGNS):
        size = round(_loguniform(rng, 2000, 300_000))
        rates = replace(
            healthy_rates(rng),
            hard_bounce=rng.uniform(0.01, 0.015),
            complaint=rng.uniform(0.0002, 0.0005),
        )
        rate = _send_rate(rng, size, 1200, 6 * 3600)
        duration = size / rate
        profiles.append(
            CampaignProfile(
                tenant_id=f"d{n:04d}",
                campaign_id=f"drift{n:04d}",
                size=size,
                send_rate_per_s=rate,
                rates=rates,
                start_offset_s=rng.uniform(0, 7 * 86400),
                drift=Drift(
                    hard_bounce_end=rng.uniform(0.02, 0.03),
                    deferring_domain=rng.choice(("yahoo.com", "outlook.com", "gmail.com")),
                    deferring_from_s=rng.uniform(0, max(0.0, duration - 3600)),
                ),
            )
        )
    return profiles
