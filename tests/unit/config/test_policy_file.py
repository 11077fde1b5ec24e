"""The YAML policy file: defaults, overrides, validation errors that name the field, reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor.config.policy_file import (
    PolicyHolder,
    load_policy_file,
    load_policy_text,
    parse_duration_ms,
)
from processor.domain.policy import DEFAULT_RULES, DEFAULT_SEQUENTIAL, PolicyBook, Rule
from processor.errors import ConfigurationError
from schemas.control import Metric

EXAMPLE = Path(__file__).resolve().parents[3] / "docs" / "policy.example.yaml"


def _rule(rules: tuple[Rule, ...], metric: Metric, window: str) -> Rule:
    return next(r for r in rules if (r.metric, r.window) == (metric, window))


def test_no_file_means_the_built_in_defaults() -> None:
    """Without a policy file the defaults of the README apply."""
    book = load_policy_file(None)
    assert book.default.rules == DEFAULT_RULES
    assert book == PolicyBook()


def test_the_documented_example_loads_with_its_overrides() -> None:
    """docs/policy.example.yaml is valid and its tenant and campaign overrides take effect."""
    book = load_policy_file(EXAMPLE)
    acme = book.for_campaign("acme", "newsletter")
    assert _rule(acme.rules, Metric.HARD_BOUNCE, "24h").pause == 0.03
    assert acme.escalation.campaign_pauses == 2
    assert acme.escalation.within_ms == 12 * 3_600_000
    reactivation = book.for_campaign("acme", "reactivation-2026")
    assert _rule(reactivation.rules, Metric.HARD_BOUNCE, "1h").pause == 0.08
    assert _rule(reactivation.rules, Metric.HARD_BOUNCE, "24h").pause == 0.08
    other = book.for_campaign("globex", "x")
    assert _rule(other.rules, Metric.HARD_BOUNCE, "24h").pause == 0.05
    default_complaints = _rule(PolicyBook().default.rules, Metric.COMPLAINT, "24h")
    assert _rule(other.rules, Metric.COMPLAINT, "24h") == default_complaints  # spelled out as is


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("rules: [{metric: hard_bounce, window: 1h, pause: 2}]", "rules.0.pause"),
        ("rules: [{metric: bounces, window: 1h}]", "rules.0.metric"),
        ("rules: [{metric: hard_bounce, window: 7h, pause: 0.1}]", "new rule"),
        ("windows: [{name: 1h, length: soon}]", "windows.0.length"),
        ("confidence: 0.2", "confidence"),
        ("surprise: 1", "surprise"),
        ("campaigns: {nocolon: {}}", "tenant:campaign"),
        ("rules: [{metric: hard_bounce, window: 1h, warn: 0.2, pause: 0.1}]", "warn <= pause"),
        ("rules: [", "not valid YAML"),
        ("windows: [{name: 1h, length: 1h}, {name: 24h, length: 24h}]", "more history"),
    ],
)
def test_an_invalid_policy_is_rejected_with_the_field_named(text: str, named: str) -> None:
    """Each kind of mistake fails to load with a message that points at it."""
    with pytest.raises(ConfigurationError) as caught:
        load_policy_text(text, source="p.yaml")
    assert named in str(caught.value)
    assert "p.yaml" in str(caught.value)


def test_a_rule_for_an_unknown_window_is_rejected() -> None:
    """Windows are validated against the rules that use them."""
    text = "windows: [{name: 6h, length: 6h}]"
    with pytest.raises(ConfigurationError, match="unknown window"):
        load_policy_text(text)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("90s", 90_000), ("15m", 900_000), ("1h", 3_600_000), ("7d", 604_800_000), (5, 5000)],
)
def test_durations_read_as_milliseconds(text: str | int, ms: int) -> None:
    """Durations accept s, m, h, d suffixes or plain seconds."""
    assert parse_duration_ms(text) == ms


def test_reload_keeps_the_policy_in_force_when_the_new_file_is_bad(tmp_path: Path) -> None:
    """A bad file on reload is refused; a good one replaces the policy."""
    path = tmp_path / "policy.yaml"
    path.write_text("confidence: 0.9\n")
    holder = PolicyHolder(path)
    assert holder().default.confidence == 0.9
    path.write_text("confidence: 7\n")
    assert holder.reload() is False
    assert holder().default.confidence == 0.9
    path.write_text("confidence: 0.99\n")
    assert holder.reload() is True
    assert holder().default.confidence == 0.99


def test_sequential_rules_default_on_and_can_be_tuned_or_turned_off() -> None:
    """Omitted: the defaults; fields override; `enabled: false` leaves a metric to the windows."""
    book = load_policy_text(
        """
sequential:
  complaint: {h: 12, lag: 3h}
  unsubscribe: {enabled: false}
tenants:
  calm:
    sequential:
      hard_bounce: {enabled: false}
      complaint: {enabled: false}
"""
    )
    by_metric = {rule.metric: rule for rule in book.default.sequential}
    assert set(by_metric) == {Metric.HARD_BOUNCE, Metric.COMPLAINT}
    assert (by_metric[Metric.COMPLAINT].h, by_metric[Metric.COMPLAINT].lag_ms) == (12, 10_800_000)
    assert by_metric[Metric.COMPLAINT].p0 == DEFAULT_SEQUENTIAL[1].p0
    assert book.for_tenant("calm").sequential == ()
    assert load_policy_text("").default.sequential == DEFAULT_SEQUENTIAL


def test_a_sequential_rule_added_back_needs_every_field() -> None:
    """A tenant re-adding a metric the default dropped must give the whole rule."""
    text = """
sequential:
  unsubscribe: {enabled: false}
tenants:
  t:
    sequential:
      unsubscribe: {h: 9}
"""
    with pytest.raises(ConfigurationError, match="new sequential rule unsubscribe needs"):
        load_policy_text(text)


def test_an_inconsistent_sequential_rule_is_rejected() -> None:
    """p1 must exceed p0: the file is refused, naming the rule."""
    with pytest.raises(ConfigurationError, match="sequential complaint"):
        load_policy_text("sequential:\n  complaint: {p0: 0.01, p1: 0.005}\n")
