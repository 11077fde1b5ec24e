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
from processor.domain.policy import DEFAULT_RULES, PolicyBook, Rule
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
