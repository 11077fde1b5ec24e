"""Prometheus metrics of a sendguard process: one registry per process, served on /metrics.

Label values are bounded by design: event types, dead-letter reasons, providers, HTTP status
classes and partitions; never a campaign, a contact or (by default) a tenant.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client import Info as InfoMetric

from processor.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of the text exposition format that `render` returns."""

_BATCH_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_EVENTS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
MESSAGE_OUTCOMES = ("accepted", "deferred", "rejected", "ignored")
"""What became of a mail or an MTA log record (see `sendguard_mail_messages_total`)."""
_REDIS_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
_DECISION_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """Every sendguard metric, registered in its own registry (no module-level state)."""

    def __init__(self, process: str, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.info = InfoMetric("sendguard", "The sendguard process", registry=r)
        self.info.info({"process": process})
        self.events_applied = Counter(
            "sendguard_events_applied",
            "Delivery events counted into campaign windows, by event type.",
            ["type"],
            registry=r,
        )
        self.events_skipped = Counter(
            "sendguard_events_skipped",
            "Delivery events not counted: duplicates, replays of applied offsets, too late.",
            ["why"],
            registry=r,
        )
        self.dead_letters = Counter(
            "sendguard_dead_letters",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.batch_seconds = Histogram(
            "sendguard_batch_apply_seconds",
            "Time to apply one batch of delivery events, decisions published.",
            buckets=_BATCH_SECONDS,
            registry=r,
        )
        self.batch_events = Histogram(
            "sendguard_batch_events",
            "Records per applied batch.",
            buckets=_BATCH_EVENTS,
            registry=r,
        )
        self.decision_seconds = Histogram(
            "sendguard_decision_latency_seconds",
            "From the triggering event's Kafka timestamp to its pause command acknowledged.",
            buckets=_DECISION_SECONDS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sendguard_consumer_lag_records",
            "Records behind the end of each assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.batch_failures = Counter(
            "sendguard_batch_failures",
            "Batches not applied because Redis or Kafka was unavailable (then read again).",
            ["kind"],
            registry=r,
        )
        self.commands_published = Counter(
            "sendguard_commands_published",
            "Control commands acknowledged by Kafka, by command and scope.",
            ["command", "scope"],
            registry=r,
        )
        self.campaigns_by_status = Gauge(
            "sendguard_campaigns",
            "Campaigns this process last reported, by status.",
            ["status"],
            registry=r,
        )
        self.webhook_requests = Counter(
            "sendguard_webhook_requests",
            "Webhook requests answered, by provider and HTTP status.",
            ["provider", "status"],
            registry=r,
        )
        self.state_lost = Counter(
            "sendguard_state_lost",
            "Times this process found that Redis had lost state it had written.",
            registry=r,
        )
        self.state_rebuilds = Counter(
            "sendguard_state_rebuilds",
            "Rebuilds of lost state from the delivery-events topic.",
            registry=r,
        )
        self.state_cache = Counter(
            "sendguard_state_cache_lookups",
            "Stored campaign states found decoded in the worker's cache (hit) or decoded (miss).",
            ["result"],
            registry=r,
        )
        self.bridge_commands = Counter(
            "sendguard_bridge_commands",
            "Control commands a bridge handled, by bridge and result (applied, lifted, "
            "delivered, skipped, failed, invalid).",
            ["bridge", "result"],
            registry=r,
        )
        self.bridge_failures = Counter(
            "sendguard_bridge_failures",
            "Control commands a bridge gave up on and dead-lettered (its target never took them).",
            ["bridge"],
            registry=r,
        )
        self.redis_call_seconds = Histogram(
            "sendguard_redis_call_seconds",
            "Redis calls (a command, script or pipeline), by operation, failed ones too.",
            ["operation"],
            buckets=_REDIS_SECONDS,
            registry=r,
        )
        self.redis_errors = Counter(
            "sendguard_redis_errors",
            "Redis calls answered with an error or a timeout, by operation.",
            ["operation"],
            registry=r,
        )
        self.mail_messages = Counter(
            "sendguard_mail_messages",
            "Bounce and feedback mail (source smtp, lmtp) and KumoMTA log records (kumomta_logs)"
            " by outcome: accepted (events published), ignored (nothing to publish), rejected"
            " (recipient refused, or dead-lettered), deferred (Kafka did not acknowledge).",
            ["source", "outcome"],
            registry=r,
        )
        self.last_batch_timestamp = Gauge(
            "sendguard_last_batch_timestamp_seconds",
            "Unix time of the last applied batch (a stalled worker stops moving it).",
            registry=r,
        )

    def set_lag(self, topic: str, lag_by_partition: Mapping[int, int]) -> None:
        """Replace the lag of `topic`'s partitions (partitions no longer held disappear)."""
        for labels in list(self._lag_labels(topic)):
            if int(labels) not in lag_by_partition:
                self.consumer_lag.remove(topic, labels)
        for partition, lag in lag_by_partition.items():
            self.consumer_lag.labels(topic, str(partition)).set(lag)

    def _lag_labels(self, topic: str) -> list[str]:
        (family,) = self.consumer_lag.collect()
        samples = family.samples
        return [s.labels["partition"] for s in samples if s.labels["topic"] == topic]

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class PrometheusBridgeMetrics:
    """`BridgeMetrics` into the registry's bridge counters."""

    def __init__(self, metrics: Metrics, bridge: str) -> None:
        self._metrics = metrics
        # A series that is born at 1 shows no increase(): the failure series starts at 0, so
        # the first dead letter already fires SendguardBridgeFailing.
        metrics.bridge_failures.labels(bridge)

    def command(self, bridge: str, result: str) -> None:
        """See `BridgeMetrics.command`."""
        self._metrics.bridge_commands.labels(bridge, result).inc()

    def failure(self, bridge: str) -> None:
        """See `BridgeMetrics.failure`."""
        self._metrics.bridge_failures.labels(bridge).inc()


class PrometheusRedisCalls:
    """`RedisCalls` into the registry's Redis histogram and error counter.

    The operation label is the fixed "what" of `translate_redis_errors`: a bounded set.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._seconds: dict[str, Histogram] = {}

    def record(self, operation: str, seconds: float, *, failed: bool) -> None:
        """See `RedisCalls.record`."""
        series = self._seconds.get(operation)
        if series is None:  # the labelled child once per operation: this runs per Redis call
            series = self._seconds[operation] = self._metrics.redis_call_seconds.labels(operation)
            self._metrics.redis_errors.labels(operation)  # born at 0 for increase()
        series.observe(seconds)
        if failed:
            self._metrics.redis_errors.labels(operation).inc()


class PrometheusMessageOutcomes:
    """Counts what became of the messages of one source (born at 0, so increase() sees them)."""

    def __init__(self, metrics: Metrics, source: str) -> None:
        self._series = {
            outcome: metrics.mail_messages.labels(source, outcome) for outcome in MESSAGE_OUTCOMES
        }

    def count(self, outcome: str, messages: int = 1) -> None:
        """`messages` more had `outcome` (one of MESSAGE_OUTCOMES)."""
        self._series[outcome].inc(messages)


class MetricsServer:
    """/metrics on its own port, served by prometheus-client's thread (off the event loop)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._metrics = metrics
        self._host = host
        self._port = port
        self._stop: Callable[[], None] | None = None
        self.port: int | None = None

    def start(self) -> None:
        """Listen; a port in use is a configuration error, said once and clearly."""
        try:
            server, thread = start_http_server(
                self._port, addr=self._host, registry=self._metrics.registry
            )
        except OSError as exc:
            raise ConfigurationError(
                f"metrics endpoint {self._host}:{self._port} cannot listen: {exc}"
            ) from exc
        self.port = server.server_port

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        self._stop = stop

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            threading.Thread(target=stop, daemon=True).start()
