"""Bootstrap: settings from the environment, then clients, then the services they serve.

The only place that turns configuration into live objects; the CLI commands call it.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from pydantic import ValidationError

from processor.config.settings import Settings
from processor.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from redis.asyncio import Redis

    from processor.adapters.metrics import Metrics, MetricsServer
    from processor.adapters.redis_contacts import RedisContactStore
    from processor.adapters.redis_errors import RedisCalls
    from processor.adapters.redis_store import RedisStore
    from processor.config.policy_file import PolicyHolder
    from processor.domain.policy import PolicyBook
    from processor.ports.contact_store import ContactStore
    from processor.ports.detection_store import DetectionStore
    from processor.ports.publishing import Publisher
    from processor.runtime.app import Wiring
    from processor.services.detection import DetectionService
    from processor.services.state_guard import StateGuard


def load_settings() -> Settings:
    """Settings from the environment; a bad value raises ConfigurationError naming the variable.

    The message never quotes the value: a bad password must not end up on a terminal or a log.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False, include_input=False):
            location = [str(part) for part in error["loc"]]
            if location:
                field, *inside = location
                # The variable is the field's; what lies inside it (a key, an item) is not a name.
                where = f" ({'.'.join(inside)})" if inside else ""
                problems.append(f"SENDGUARD_{field.upper()}{where}: {error['msg']}")
            else:  # a check across several settings names no single variable
                problems.append(error["msg"])
        raise ConfigurationError("invalid configuration: " + "; ".join(problems)) from None
    except ValueError as exc:  # pydantic-settings: a JSON-valued variable that is not JSON
        raise ConfigurationError(f"invalid configuration: {exc}") from None


def build_redis(settings: Settings) -> Redis:
    """A Redis client with bounded retries on connection errors."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        password=password,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.1), retries=6),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def redis_calls(metrics: Metrics | None) -> RedisCalls | None:
    """What times the Redis calls of a process with metrics (None: not timed)."""
    from processor.adapters.metrics import PrometheusRedisCalls

    return None if metrics is None else PrometheusRedisCalls(metrics)


def build_store(
    settings: Settings, client: Redis, book: PolicyBook, calls: RedisCalls | None = None
) -> RedisStore:
    """The Redis detection store with TTLs derived from the policy's longest window."""
    from processor.adapters.keys import Keys
    from processor.adapters.redis_store import RedisStore

    longest_ms = book.longest_window_ms
    margin_ms = int(settings.state_margin_s * 1000)
    return RedisStore(
        client,
        Keys(settings.redis_key_prefix),
        state_ttl_ms=longest_ms + margin_ms,
        paused_state_ttl_ms=int(settings.paused_state_ttl_s * 1000),
        seen_ttl_ms=2 * longest_ms + margin_ms,
        calls=calls,
    )


def build_state_guard(
    settings: Settings,
    client: Redis,
    store: RedisStore,
    book: PolicyBook,
    metrics: Metrics | None = None,
) -> StateGuard:
    """The guard of the detection state's epoch; it stamps `store`'s writes once opened."""
    import time

    from processor.adapters.keys import Keys
    from processor.adapters.redis_epoch import RedisEpochStore
    from processor.services.state_guard import StateGuard, rebuild_span_ms

    return StateGuard(
        RedisEpochStore(client, Keys(settings.redis_key_prefix), redis_calls(metrics)),
        span_ms=rebuild_span_ms(book.windows, int(settings.max_future_skew_s * 1000)),
        wall_clock_ms=lambda: int(time.time() * 1000),
        use_epoch=store.use_epoch,
        on_state_lost=metrics.state_lost.inc if metrics is not None else None,
        on_rebuild=metrics.state_rebuilds.inc if metrics is not None else None,
    )


async def open_state_guard(settings: Settings, guard: StateGuard, *, detects: bool) -> None:
    """At start, before consuming: check that Redis kept the detection state, or adopt its epoch.

    A detecting worker begins a rebuild if the state was lost; any other adopts the epoch.
    """
    from processor.adapters.kafka_rewind import group_has_offsets
    from processor.runtime.app import detection_group
    from schemas.topics import TopicRole

    if not detects:
        await guard.follow()
        return
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    await guard.open(lambda: group_has_offsets(settings, topic, detection_group(settings)))


async def build_reading_store(settings: Settings, client: Redis, book: PolicyBook) -> RedisStore:
    """The detection store of a tool beside the worker (explain, status, lock, dashboard).

    It reads in the epoch the worker writes in (see `StateGuard`), never starting one itself.
    """
    from processor.adapters.keys import Keys
    from processor.adapters.redis_epoch import RedisEpochStore

    store = build_store(settings, client, book)
    epoch = await RedisEpochStore(client, Keys(settings.redis_key_prefix)).read_epoch()
    if epoch is not None:
        store.use_epoch(epoch.id)
    return store


def build_contact_store(
    settings: Settings, client: Redis, calls: RedisCalls | None = None
) -> RedisContactStore:
    """The Redis contact store; a campaign's audience outlives its paused detection state."""
    from processor.adapters.keys import Keys
    from processor.adapters.redis_contacts import RedisContactStore

    ttl_ms = int((settings.paused_state_ttl_s + settings.state_margin_s) * 1000)
    return RedisContactStore(
        client,
        Keys(settings.redis_key_prefix),
        campaign_ttl_ms=ttl_ms,
        shards=settings.contact_shards,
        calls=calls,
    )


def build_metrics(settings: Settings, process: str) -> tuple[Metrics, MetricsServer | None]:
    """The process's metrics, and their /metrics server if SENDGUARD_METRICS_PORT is set."""
    from processor.adapters.metrics import Metrics, MetricsServer

    metrics = Metrics(process)
    if settings.metrics_port == 0:
        return metrics, None
    return metrics, MetricsServer(metrics, settings.metrics_host, settings.metrics_port)


def detection_factory(
    settings: Settings, store: DetectionStore, contacts: ContactStore, holder: PolicyHolder
) -> Callable[[Publisher], DetectionService]:
    """The detection service of a worker, built once its publisher exists."""
    from processor.services.detection import DetectionService

    skew_ms = int(settings.max_future_skew_s * 1000)

    def detection(publisher: Publisher) -> DetectionService:
        return DetectionService(
            store,
            publisher,
            holder,
            contacts=contacts,
            max_future_skew_ms=skew_ms,
            health_min_interval_s=settings.health_min_interval_s,
            state_cache_campaigns=settings.state_cache_campaigns,
            state_write_behind_s=settings.state_write_behind_ms / 1000,
        )

    return detection


def with_resume(
    wiring: Wiring,
    settings: Settings,
    store: DetectionStore,
    contacts: ContactStore,
    policy_book: Callable[[], PolicyBook],
) -> Wiring:
    """`wiring` plus the resume use cases: audience and contact-update intake, requests."""
    from processor.adapters.kafka_progress import GroupProgress
    from processor.config.operator_keys import OperatorKeys, load_operator_keys
    from processor.runtime.app import detection_group
    from processor.services.resume import ResumeService
    from processor.services.resume_intake import AudienceIntake, ContactUpdateIntake
    from schemas.topics import TopicRole

    operator_keys = (
        load_operator_keys(settings.operator_keys_file, os.environ)
        if settings.operator_keys_file is not None
        else OperatorKeys.none()
    )
    # Detection merges contacts, maybe in another process: its progress is read from Kafka.
    progress = GroupProgress(
        settings, settings.topic(TopicRole.DELIVERY_EVENTS), detection_group(settings)
    )
    return replace(
        wiring,
        closers=(*wiring.closers, progress.close),
        audience=lambda publisher: AudienceIntake(contacts, publisher),
        contact_updates=lambda publisher: ContactUpdateIntake(contacts, publisher),
        resume=lambda publisher: ResumeService(
            store,
            contacts,
            publisher,
            policy_book,
            rules_for=settings.filter_rules,
            chunk_size=settings.resume_chunk_size,
            contact_progress=progress,
            contact_wait_s=settings.resume_contacts_wait_s,
            operator_keys=operator_keys,
            operator_max_age_s=settings.operator_max_age_s,
        ),
    )
