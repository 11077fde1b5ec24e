"""Unit and property tests of the seeded workload generator (processor.simulation.workload)."""

from __future__ import annotations

import io
import itertools
import math
import tracemalloc
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.domain.policy import DEFAULT_RULES
from processor.simulation.profiles import Drift, drift_profiles
from processor.simulation.workload import (
    CampaignKind,
    CampaignProfile,
    Rates,
    audience_chunks,
    campaign_events,
    contact,
    demo_profiles,
    domain_share,
    expected_event_count,
    merged_events,
    quality_profiles,
    recipients,
    to_json_line,
    write_jsonl,
)
from schemas.control import Metric
from schemas.events import BounceClass, DeliveryEvent, EventType

START = datetime(2024, 5, 1, 9, tzinfo=UTC)
NOISY = Rates(
    hard_bounce=0.02,
    soft_bounce=0.01,
    block=0.005,
    deferral=0.04,
    complaint=0.005,
    unsubscribe=0.01,
    open=0.3,
    click=0.05,
)
"""Healthy-shaped rates large enough to measure on 20k recipients."""


def _profile(size: int = 1000, **changes: Any) -> CampaignProfile:
    base = CampaignProfile(tenant_id="t1", campaign_id="c1", size=size, send_rate_per_s=20.0)
    return replace(base, **changes)


def _index(event: DeliveryEvent) -> int:
    return int(event.event_id.split(":")[2])


def _within(observed: int, trials: int, p: float) -> bool:
    """Observed successes lie within 5 binomial standard deviations of trials * p."""
    return abs(observed - trials * p) <= 5 * math.sqrt(trials * p * (1 - p)) + 1


def _pause_threshold(metric: Metric) -> float:
    return min(r.pause for r in DEFAULT_RULES if r.metric is metric)


def _warn_threshold(metric: Metric) -> float:
    return min(r.warn for r in DEFAULT_RULES if r.metric is metric)


# --- determinism and order ---------------------------------------------------------------------


def test_same_seed_gives_the_same_events_and_another_seed_different_ones() -> None:
    """The first 1000 merged demo events are identical for the same seed and differ for another."""
    profiles = demo_profiles(3)
    first = list(itertools.islice(merged_events(profiles, 3, START), 1000))
    again = list(itertools.islice(merged_events(demo_profiles(3), 3, START), 1000))
    other = list(itertools.islice(merged_events(demo_profiles(4), 4, START), 1000))
    assert first == again
    assert first != other


def test_campaign_events_are_in_time_order_with_unique_ids() -> None:
    """A campaign's events have nondecreasing occurred_at and unique event ids."""
    events = list(campaign_events(_profile(3000, rates=NOISY), 1, START))
    times = [e.occurred_at for e in events]
    assert times == sorted(times)
    assert len({e.event_id for e in events}) == len(events)


def test_merged_stream_is_in_time_order_and_holds_every_campaign_event() -> None:
    """Merging interleaves all campaigns in time order without losing or adding events."""
    profiles = [
        _profile(800, campaign_id="a", start_offset_s=0.0),
        _profile(500, campaign_id="b", start_offset_s=30.0, send_rate_per_s=50.0),
        _profile(300, tenant_id="t2", campaign_id="a", start_offset_s=10.0),
    ]
    merged = list(merged_events(profiles, 9, START))
    times = [e.occurred_at for e in merged]
    assert times == sorted(times)
    separate = [e for p in profiles for e in campaign_events(p, 9, START)]
    assert Counter(e.event_id for e in merged) == Counter(e.event_id for e in separate)
    assert len({e.event_id for e in merged}) == len(merged)


def test_sends_are_paced_by_send_rate_from_the_start_offset() -> None:
    """Recipient i is sent at start + offset + i / send_rate, and the first event is a send."""
    profile = _profile(100, send_rate_per_s=4.0, start_offset_s=60.0)
    events = list(campaign_events(profile, 1, START))
    sent = [e for e in events if e.type is EventType.SENT]
    assert events[0].type is EventType.SENT
    assert [e.occurred_at for e in sent[:3]] == [
        START + timedelta(seconds=60 + i / 4) for i in range(3)
    ]


def test_start_at_in_another_zone_is_normalized_and_naive_is_rejected() -> None:
    """An aware start in any zone gives UTC timestamps; a naive start is a ValueError."""
    plus2 = START.astimezone(timezone(timedelta(hours=2)))
    first = next(campaign_events(_profile(), 1, plus2))
    assert first.occurred_at == START
    assert first.occurred_at.tzinfo == UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        campaign_events(_profile(), 1, START.replace(tzinfo=None))


# --- outcomes and rates ------------------------------------------------------------------------


def test_rates_on_a_20k_healthy_campaign_match_the_profile() -> None:
    """Observed per-send bounce/deferral rates and per-delivery engagement rates match."""
    size = 20_000
    counts: Counter[str] = Counter()
    for event in campaign_events(_profile(size, rates=NOISY), 5, START):
        counts[event.bounce_class or event.type] += 1
    delivered = counts[EventType.DELIVERED]
    assert counts[EventType.SENT] == size
    assert delivered + counts["hard"] + counts["soft"] + counts["block"] == size
    for key, rate in (("hard", 0.02), ("soft", 0.01), ("block", 0.005), ("deferred", 0.04)):
        assert _within(counts[key], size, rate), (key, counts[key])
    for key, rate in (("complaint", 0.005), ("unsubscribe", 0.01), ("open", 0.3), ("click", 0.05)):
        assert _within(counts[key], delivered, rate), (key, counts[key])
    assert abs(sum(counts.values()) - expected_event_count(_profile(size, rates=NOISY))) < 500


def test_bad_list_is_healthy_before_onset_and_bad_after() -> None:
    """A bad list bounces at its healthy rate before the onset and at its bad rate after it."""
    profile = _profile(
        20_000,
        kind=CampaignKind.BAD_LIST,
        rates=Rates(hard_bounce=0.01),
        bad_rates=Rates(hard_bounce=0.15),
        onset_fraction=0.4,
    )
    hard = Counter(
        _index(e) >= profile.onset_index
        for e in campaign_events(profile, 2, START)
        if e.bounce_class == "hard"
    )
    assert profile.onset_index == 8000
    assert _within(hard[False], 8000, 0.01)
    assert _within(hard[True], 12_000, 0.15)


def test_provider_burst_hits_only_its_domain_after_onset() -> None:
    """A provider burst raises bounces at its domain after the onset, not elsewhere or before."""
    profile = _profile(
        20_000,
        kind=CampaignKind.PROVIDER_BURST,
        rates=Rates(hard_bounce=0.01, block=0.0),
        bad_rates=Rates(hard_bounce=0.6, block=0.3),
        onset_fraction=0.5,
        burst_domain="yahoo.com",
    )
    sends: Counter[tuple[bool, bool]] = Counter()
    failed: Counter[tuple[bool, bool]] = Counter()
    for event in campaign_events(profile, 4, START):
        cell = (_index(event) >= 10_000, event.recipient.domain == "yahoo.com")
        if event.type is EventType.SENT:
            sends[cell] += 1
        elif event.bounce_class in {"hard", "block"}:
            failed[cell] += 1
    assert _within(failed[True, True], sends[True, True], 0.9)
    for cell in ((False, True), (False, False), (True, False)):
        assert _within(failed[cell], sends[cell], 0.01), cell


@settings(max_examples=25, deadline=None)
@given(
    size=st.integers(1, 400),
    seed=st.integers(0, 2**32),
    hard=st.floats(0, 0.5),
    opens=st.floats(0, 1),
)
def test_every_recipient_gets_one_send_and_one_final_outcome(
    size: int, seed: int, hard: float, opens: float
) -> None:
    """Each recipient is sent once, then delivered or bounced once; engagement follows delivery."""
    rates = Rates(hard_bounce=hard, open=opens, click=opens / 2, complaint=0.05, unsubscribe=0.05)
    events = list(campaign_events(_profile(size, rates=rates), seed, START))
    by_recipient: dict[int, dict[EventType, datetime]] = {}
    for event in events:
        seen = by_recipient.setdefault(_index(event), {})
        assert event.type not in seen
        seen[event.type] = event.occurred_at
        assert (event.bounce_class is not None) == (event.type is EventType.BOUNCE)
    assert sorted(by_recipient) == list(range(size))
    for seen in by_recipient.values():
        assert (EventType.DELIVERED in seen) != (EventType.BOUNCE in seen)
        final = seen.get(EventType.DELIVERED, seen.get(EventType.BOUNCE))
        assert final is not None
        assert seen[EventType.SENT] < final
        for later in (EventType.OPEN, EventType.UNSUBSCRIBE, EventType.COMPLAINT):
            assert later not in seen or seen[EventType.DELIVERED] < seen[later]
        assert EventType.CLICK not in seen or seen[EventType.OPEN] < seen[EventType.CLICK]
        deferred = seen.get(EventType.DEFERRED)
        assert deferred is None or deferred < seen[EventType.DELIVERED]


def test_events_validate_as_delivery_events_and_bounces_have_a_class() -> None:
    """Every event survives a JSON round trip through DeliveryEvent validation unchanged."""
    events = list(campaign_events(_profile(2000, rates=NOISY), 6, START))
    assert {e.type for e in events} == set(EventType) - {EventType.DROPPED_SUPPRESSED}
    for event in events:
        assert DeliveryEvent.model_validate_json(to_json_line(event)) == event
        if event.type is EventType.BOUNCE:
            assert event.bounce_class is not None


def test_write_jsonl_writes_one_parsable_line_per_event() -> None:
    """write_jsonl writes newline-terminated JSON lines and returns how many it wrote."""
    events = list(itertools.islice(campaign_events(_profile(), 1, START), 50))
    out = io.StringIO()
    assert write_jsonl(events, out) == 50
    lines = out.getvalue().splitlines()
    assert [DeliveryEvent.model_validate_json(line) for line in lines] == events


# --- streaming ---------------------------------------------------------------------------------


def test_first_events_of_a_million_recipient_campaign_stream_in_little_memory() -> None:
    """Pulling 100 events of a 1M-recipient campaign allocates far less than the campaign."""
    profile = _profile(1_000_000, send_rate_per_s=500.0, tenant_contacts=2_000_000)
    tracemalloc.start()
    try:
        stream = campaign_events(profile, 1, START)
        first = list(itertools.islice(stream, 100))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(first) == 100
    assert peak < 20 * 1024 * 1024


# --- recipients and audiences ------------------------------------------------------------------


def test_recipients_are_distinct_lower_case_with_a_realistic_domain_mix() -> None:
    """A campaign never repeats a contact, addresses are lower-case, and big providers dominate."""
    people = list(recipients(_profile(20_000, tenant_contacts=50_000), 8))
    assert len({r.contact_id for r in people}) == len({r.address for r in people}) == 20_000
    assert all(r.address == r.address.lower() for r in people)
    domains = Counter(r.domain for r in people)
    for domain in ("gmail.com", "yahoo.com", "icloud.com", "outlook.com"):
        assert _within(domains[domain], 20_000, domain_share(domain)), domain
    assert len(domains) > 200


def test_campaigns_of_a_tenant_share_contacts_and_tenants_do_not() -> None:
    """Two campaigns of one tenant overlap with identical addresses; other tenants never share."""
    a = {r.contact_id: r for r in recipients(_profile(3000, tenant_contacts=5000), 1)}
    b = list(recipients(_profile(3000, campaign_id="c2", tenant_contacts=5000), 1))
    shared = [r for r in b if r.contact_id in a]
    assert 1000 < len(shared) < 3000
    assert all(a[r.contact_id] == r for r in shared)
    assert all(contact(1, "t1", int(r.contact_id.rsplit("c", 1)[1])) == r for r in shared[:10])
    other = {r.contact_id for r in recipients(_profile(3000, tenant_id="t2"), 1)}
    assert other.isdisjoint(a)


def test_audience_chunks_cover_the_recipients_in_order() -> None:
    """Chunks hold the recipients in send order, numbered, with the chunk count known."""
    profile = _profile(2500)
    chunks = list(audience_chunks(profile, 3, 1000))
    assert [c.chunk_index for c in chunks] == [0, 1, 2]
    assert {c.total_chunks for c in chunks} == {3}
    assert [len(c.recipients) for c in chunks] == [1000, 1000, 500]
    flat = [r for c in chunks for r in c.recipients]
    assert flat == list(recipients(profile, 3))
    with pytest.raises(ValueError, match="chunk_size"):
        audience_chunks(profile, 3, 0)


# --- profiles ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"kind": CampaignKind.BAD_LIST}, "bad_rates"),
        ({"bad_rates": Rates()}, "bad_rates"),
        ({"kind": CampaignKind.PROVIDER_BURST, "bad_rates": Rates()}, "burst_domain"),
        ({"campaign_id": "a:b"}, "identifier"),
        ({"size": 0}, "size"),
        ({"tenant_contacts": 10}, "tenant_contacts"),
        ({"onset_fraction": 1.5}, "onset_fraction"),
    ],
)
def test_profile_rejects_inconsistent_settings(changes: dict[str, Any], match: str) -> None:
    """Bad kinds need bad rates, bursts need a domain, and ids, sizes and fractions are checked."""
    with pytest.raises(ValueError, match=match):
        _profile(**changes)


@pytest.mark.parametrize(
    "changes",
    [{"hard_bounce": 1.2}, {"click": 0.5, "open": 0.2}, {"block": 0.6, "soft_bounce": 0.6}],
)
def test_rates_reject_impossible_probabilities(changes: dict[str, float]) -> None:
    """Rates must be probabilities, bounce classes cannot exceed 1 together, click <= open."""
    with pytest.raises(ValueError, match=r"exceed|probability"):
        Rates(**changes)


def test_demo_profiles_hold_every_kind_and_a_tenant_that_escalates() -> None:
    """The demo has ~30 campaigns of 2k-60k, every kind, and a tenant with 3+ bad campaigns."""
    profiles = demo_profiles(1)
    assert 25 <= len(profiles) <= 35
    assert len({p.tenant_id for p in profiles}) == 6
    assert {p.kind for p in profiles} == set(CampaignKind)
    assert Counter(p.kind for p in profiles)[CampaignKind.BAD_LIST] == 2
    assert all(2000 <= p.size <= 60_000 for p in profiles)
    bad_per_tenant = Counter(p.tenant_id for p in profiles if p.kind is not CampaignKind.HEALTHY)
    assert max(bad_per_tenant.values()) >= 3
    assert 300_000 <= sum(map(expected_event_count, profiles)) <= 600_000
    assert len({(p.tenant_id, p.campaign_id) for p in profiles}) == len(profiles)


@pytest.mark.parametrize("seed", [1, 2])
def test_demo_bad_campaigns_cross_and_healthy_ones_stay_below_the_default_thresholds(
    seed: int,
) -> None:
    """After onset each bad kind exceeds its pause threshold; healthy rates stay below warn."""
    for p in demo_profiles(seed):
        bad = p.bad_rates
        if bad is None:
            assert p.rates.hard_bounce < _warn_threshold(Metric.HARD_BOUNCE)
            assert p.rates.complaint < _warn_threshold(Metric.COMPLAINT)
            assert p.rates.unsubscribe < _warn_threshold(Metric.UNSUBSCRIBE)
            continue
        match p.kind:
            case CampaignKind.BAD_LIST:
                assert bad.hard_bounce > 1.5 * _pause_threshold(Metric.HARD_BOUNCE)
            case CampaignKind.PROVIDER_BURST:
                assert p.burst_domain is not None
                rate = domain_share(p.burst_domain) * bad.hard_bounce + p.rates.hard_bounce
                assert rate > 1.5 * _pause_threshold(Metric.HARD_BOUNCE)
            case CampaignKind.COMPLAINT_WAVE:
                assert bad.complaint > 3 * _pause_threshold(Metric.COMPLAINT)
            case CampaignKind.UNSUBSCRIBE_WAVE:
                assert bad.unsubscribe > 1.5 * _pause_threshold(Metric.UNSUBSCRIBE)
            case CampaignKind.HEALTHY:
                pytest.fail("a healthy campaign has bad rates")


def test_quality_profiles_have_1000_healthy_and_200_bad_campaigns_in_range() -> None:
    """The benchmark mix is 1,000 healthy and 200 bad campaigns of 50-500k, deterministically."""
    profiles = quality_profiles(11)
    kinds = Counter(p.kind for p in profiles)
    assert kinds[CampaignKind.HEALTHY] == 1000
    assert sum(kinds.values()) == 1200
    assert all(50 <= p.size <= 500_000 for p in profiles)
    assert len({p.tenant_id for p in profiles}) == 1200
    for p in profiles:
        if p.bad_rates is not None:
            assert 0 <= p.onset_fraction < 0.8
            assert (
                p.bad_rates.hard_bounce >= 0.06
                or p.bad_rates.complaint >= 0.003
                or p.bad_rates.unsubscribe >= 0.06
            )
    assert profiles == quality_profiles(11)


def test_drift_profiles_are_healthy_and_their_bounces_rise_while_one_provider_defers() -> None:
    """The drift mix has no bad campaign; a drift's bounces rise over the send.

    And the deferring provider's messages sent within its hour are all delivered after it.
    """
    assert all(p.kind is CampaignKind.HEALTHY and p.drift for p in drift_profiles(1))
    profile = CampaignProfile(
        tenant_id="d",
        campaign_id="drift",
        size=20_000,
        send_rate_per_s=10.0,
        rates=replace(Rates(), hard_bounce=0.01),
        drift=Drift(hard_bounce_end=0.05, deferring_domain="yahoo.com", deferring_from_s=600),
    )
    events = list(campaign_events(profile, 1, START))
    hard = [
        int(e.event_id.split(":")[2])
        for e in events
        if e.type is EventType.BOUNCE and e.bounce_class is BounceClass.HARD
    ]
    first_half = sum(1 for i in hard if i < 10_000)
    assert len(hard) - first_half > 1.5 * first_half  # 1% -> 5% across the send
    held_from, held_until = START + timedelta(seconds=600), START + timedelta(seconds=4200)
    held = {
        e.event_id.rsplit(":", 1)[0]
        for e in events
        if e.type is EventType.SENT
        and e.recipient.domain == "yahoo.com"
        and held_from <= e.occurred_at < held_until
    }
    assert held
    delivered = [
        e for e in events if e.type is EventType.DELIVERED and e.event_id.rsplit(":", 1)[0] in held
    ]
    assert delivered
    assert all(e.occurred_at >= held_until for e in delivered)
