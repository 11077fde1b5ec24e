"""The metrics registry and its /metrics endpoint (processor.adapters.metrics)."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from processor.adapters.metrics import Metrics, MetricsServer
from processor.errors import ConfigurationError


def test_lag_of_partitions_no_longer_held_disappears() -> None:
    """After a rebalance only the partitions still held keep a lag series."""
    metrics = Metrics("test")
    metrics.set_lag("events", {0: 5, 1: 2})
    metrics.set_lag("events", {1: 7})
    get = metrics.registry.get_sample_value
    assert get("sendguard_consumer_lag_records", {"topic": "events", "partition": "0"}) is None
    assert get("sendguard_consumer_lag_records", {"topic": "events", "partition": "1"}) == 7


def test_two_metrics_objects_do_not_share_samples() -> None:
    """Each process (or test) has its own registry: no module-level state."""
    first, second = Metrics("a"), Metrics("b")
    first.events_applied.labels("sent").inc(3)
    assert (
        second.registry.get_sample_value("sendguard_events_applied_total", {"type": "sent"}) is None
    )


def test_the_endpoint_serves_the_text_format_on_loopback() -> None:
    """GET /metrics answers with the registry's samples."""
    metrics = Metrics("test")
    metrics.events_applied.labels("sent").inc(4)
    server = MetricsServer(metrics, "127.0.0.1", 0)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:  # our loopback server
            text = response.read().decode()
    finally:
        server.stop()
    assert 'sendguard_events_applied_total{type="sent"} 4.0' in text


def test_a_taken_port_is_a_configuration_error() -> None:
    """The message names the address, so the operator knows which setting to change."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError, match=f"127.0.0.1:{port} cannot listen"):
            MetricsServer(Metrics("test"), "127.0.0.1", port).start()
