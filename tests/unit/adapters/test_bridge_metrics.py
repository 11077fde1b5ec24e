"""The bridges' Prometheus counters (processor.adapters.metrics.PrometheusBridgeMetrics)."""

from __future__ import annotations

from processor.adapters.metrics import Metrics, PrometheusBridgeMetrics


def test_the_failure_series_exists_at_zero_before_the_first_failure() -> None:
    """SendguardBridgeFailing uses increase(): a series born at 1 would hide the first failure."""
    metrics = Metrics("bridge-kumomta")
    PrometheusBridgeMetrics(metrics, "kumomta")
    get = metrics.registry.get_sample_value
    assert get("sendguard_bridge_failures_total", {"bridge": "kumomta"}) == 0


def test_commands_are_counted_by_bridge_and_result_and_failures_by_bridge() -> None:
    """Each command adds one to its result's series; a dead-lettered one also to the failures."""
    metrics = Metrics("bridge-kumomta")
    bridge = PrometheusBridgeMetrics(metrics, "kumomta")
    for result in ("applied", "applied", "skipped", "failed"):
        bridge.command("kumomta", result)
    bridge.failure("kumomta")
    get = metrics.registry.get_sample_value
    assert get("sendguard_bridge_commands_total", {"bridge": "kumomta", "result": "applied"}) == 2
    assert get("sendguard_bridge_commands_total", {"bridge": "kumomta", "result": "failed"}) == 1
    assert get("sendguard_bridge_failures_total", {"bridge": "kumomta"}) == 1
