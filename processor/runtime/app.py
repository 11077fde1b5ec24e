"""The one place that wires the Faust app: topics, agents, timers; no other module imports Faust.

Agents read raw bytes and hand whole batches to the use cases; they ack a batch only after it was
applied and its decisions published. When Redis or Kafka stay unavailable the worker crashes
without acking, so the unapplied records are read again after the restart.
"""

from __future__ import annotations

import gc
import logging
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import faust
import mode
from faust.exceptions import NotReady

from processor.adapters.batch_consumer import BatchConsumer
from processor.adapters.kafka import (
    PRODUCER_MAX_BATCH_BYTES,
    PRODUCER_MAX_REQUEST_BYTES,
    ConfirmedPublisher,
    client_options,
    topic_names,
)
from processor.config.settings import WorkerRole
from processor.errors import PublishError, StateLostError, StoreUnavailableError
from processor.logs import library_level, logging_config
from processor.ports.records import RawRecord
from processor.runtime.observe import ObservedPublisher, Observer
from processor.services.state_guard import EPOCH_CHECK_INTERVAL_S
from schemas.topics import TopicRole

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable, Sequence

    from processor.adapters.metrics import Metrics
    from processor.config.settings import Settings
    from processor.ports.publishing import Publisher
    from processor.services.detection import BatchReport, DetectionService
    from processor.services.resume import ResumeService
    from processor.services.resume_intake import AudienceIntake, ContactUpdateIntake
    from processor.services.state_guard import StateGuard

log = logging.getLogger(__name__)

OUTBOX_SWEEP_INTERVAL_S = 10.0
LAG_SAMPLE_INTERVAL_S = 5.0
RESUME_INPUT_BATCH = 8
"""Audience chunks per batch: each holds up to 50 000 recipients."""


@dataclass(slots=True)
class Wiring:
    """What the app needs from the outside, built by the CLI (or a test)."""

    detection: Callable[[Publisher], DetectionService] | None = None
    reload_policy: Callable[[], bool] | None = None
    audience: Callable[[Publisher], AudienceIntake] | None = None
    contact_updates: Callable[[Publisher], ContactUpdateIntake] | None = None
    resume: Callable[[Publisher], ResumeService] | None = None
    closers: tuple[Callable[[], Awaitable[None]], ...] = ()
    """Run when the app stops (clients the use cases opened)."""
    metrics: Metrics | None = None
    """Where the worker's metrics go (None: not collected)."""
    state_guard: StateGuard | None = None
    """Opened before the app is built (it set the store's epoch); checked while it runs."""


def _broker_credentials(settings: Settings) -> Any:
    options = client_options(settings)
    if "sasl_mechanism" in options:
        mechanism = options["sasl_mechanism"]
        if mechanism == "PLAIN":
            return faust.SASLCredentials(
                username=options["sasl_plain_username"],
                password=options["sasl_plain_password"],
                ssl_context=options.get("ssl_context"),
            )
        return faust.SASLCredentials(
            username=options["sasl_plain_username"],
            password=options["sasl_plain_password"],
            mechanism=mechanism,
            ssl_context=options.get("ssl_context"),
        )
    if "ssl_context" in options:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def to_raw_record(event: Any) -> RawRecord:
    """A Faust event's message as a RawRecord."""
    message = event.message
    timestamp = message.timestamp
    return RawRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp_ms=int(timestamp * 1000) if timestamp else None,
    )


class _Closers(mode.Service):
    """Closes the wiring's clients when the app stops."""

    def __init__(self, closers: Sequence[Callable[[], Awaitable[None]]]) -> None:
        super().__init__()
        self._closers = closers

    async def on_stop(self) -> None:
        for close in self._closers:
            await close()


class _ConsumerService(mode.Service):
    """Runs a BatchConsumer with the app; crashes the app if the consumer failed."""

    def __init__(self, consumer: BatchConsumer, app: faust.App) -> None:
        super().__init__()
        self._consumer = consumer
        self._app = app

    async def on_start(self) -> None:
        await self._consumer.start()

    async def on_stop(self) -> None:
        await self._consumer.stop()

    @mode.Service.task
    async def _watch(self) -> None:
        announced = False
        while not self.should_stop:
            if self._consumer.failed is not None:
                await self._app.crash(self._consumer.failed)
                return
            if not announced and self._consumer.ready.is_set():
                log.info("detection consumer ready")
                announced = True
            await self.sleep(0.2)


def create_app(settings: Settings, wiring: Wiring) -> faust.App:
    """Build the Faust app for these settings (nothing is started here)."""
    servers = [f"aiokafka://{s.strip()}" for s in settings.kafka_bootstrap_servers.split(",")]
    app = faust.App(
        settings.app_id,
        broker=servers,
        broker_credentials=_broker_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir / "{conf.name}"),
        autodiscover=False,
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        topic_allow_declare=True,  # Faust's internal topics only; ours are declared explicitly
        broker_session_timeout=settings.kafka_session_timeout_s,
        broker_heartbeat_interval=max(1, settings.kafka_session_timeout_s // 3),
        broker_rebalance_timeout=max(10, settings.kafka_session_timeout_s * 2),
        consumer_group_instance_id=settings.kafka_group_instance_id,
        consumer_auto_offset_reset="earliest",
        # The same limits as every other sendguard producer (adapters/kafka.py): set here, not
        # left to Faust's defaults, so a message too large fails the same way everywhere.
        producer_acks=-1,
        producer_max_request_size=PRODUCER_MAX_REQUEST_BYTES,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        stream_wait_empty=False,
        broker_commit_interval=1.0,
        loghandlers=[],
    )
    observer = Observer(wiring.metrics) if wiring.metrics is not None else None
    publisher = _publisher(app, settings, observer)
    # Delivery events are the hot path: whole batches straight from aiokafka (see
    # adapters/batch_consumer.py), committed by us after each batch is applied.
    consumer: BatchConsumer | None = None
    if wiring.detection is not None:
        detection = wiring.detection(publisher)
        consumer = _detection_consumer(app, settings, detection, observer, wiring.state_guard)
        _outbox_sweep(app, detection, settings)
    if wiring.state_guard is not None:
        _watch_state_epoch(app, wiring.state_guard, publisher)

    @app.on_before_shutdown.connect
    async def finish_detection(_sender: object, /, *_args: object, **_kwargs: object) -> None:
        # Sent before the producer is flushed and stopped; dependencies stop after it, so
        # the batch in flight finishes (and publishes) while Kafka can still be written.
        if consumer is not None:
            await consumer.stop()

    _resume_agents(app, settings, wiring, publisher)
    if wiring.closers:
        app.add_dependency(_Closers(wiring.closers))

    async def on_start() -> None:
        if wiring.reload_policy is not None:
            reload_policy = wiring.reload_policy
            app.loop.add_signal_handler(signal.SIGHUP, reload_policy)

    app.task(on_start)
    return app


def _publisher(app: faust.App, settings: Settings, observer: Observer | None) -> Publisher:
    """The app's producer as a Publisher that waits for acknowledgements (and is measured)."""
    names = topic_names(settings)

    async def send(topic: str, key: bytes | None, value: bytes | None) -> Awaitable[Any]:
        try:
            return await app.producer.send(topic, key, value, None, None, None)
        except NotReady as exc:
            # Faust's own error, not aiokafka's: without this a batch in flight while the
            # producer stops would look like a bad record and be split up and dead-lettered.
            raise PublishError(f"Kafka producer is not running: {exc}") from exc

    publisher: Publisher = ConfirmedPublisher(send, names)
    return publisher if observer is None else ObservedPublisher(publisher, observer)


def detection_group(settings: Settings) -> str:
    """Detection's consumer group: it commits a batch once its contacts are merged too."""
    return f"{settings.app_id}-{WorkerRole.DETECT.value}"


def _detection_consumer(
    app: faust.App,
    settings: Settings,
    detection: DetectionService,
    observer: Observer | None,
    guard: StateGuard | None,
) -> BatchConsumer:
    """The batch consumer of the delivery events, run with the app (and measured)."""
    topic = settings.topic(TopicRole.DELIVERY_EVENTS)
    handle: Callable[[Sequence[RawRecord]], Awaitable[BatchReport]] = detection.apply_isolating
    if observer is not None:
        handle = observer.observed(handle)
    consumer = BatchConsumer(
        settings,
        topic,
        WorkerRole.DETECT.value,
        handle,
        write_held=detection.write_held_states,
        rewinder=guard,
    )
    app.add_dependency(_ConsumerService(consumer, app))
    if observer is not None:
        sampler = observer

        async def sample_lag() -> None:
            sampler.metrics.set_lag(topic, consumer.lag())
            sampler.state_cache(*detection.state_cache_counts)

        app.timer(LAG_SAMPLE_INTERVAL_S, name="sendguard.sample_lag", on_leader=False)(sample_lag)
    return consumer


def _outbox_sweep(app: faust.App, detection: DetectionService, settings: Settings) -> None:
    """Publish outboxes a crash left behind: at start-up, then every few seconds."""

    async def sweep_outboxes() -> None:
        try:
            recovered = await detection.recover_outboxes(settings.outbox_recovery_after_s)
        except (StoreUnavailableError, PublishError):
            log.exception("outbox sweep failed; will retry")
            return
        if recovered:
            log.warning("published outboxes left by an earlier crash", extra={"count": recovered})

    app.timer(OUTBOX_SWEEP_INTERVAL_S, name="sendguard.sweep_outboxes", on_leader=False)(
        sweep_outboxes
    )
    app.task(sweep_outboxes)


def _watch_state_epoch(app: faust.App, guard: StateGuard, publisher: Publisher) -> None:
    """Announce a loss the epoch began with; stop the worker if Redis loses the state again."""

    async def watch_state_epoch() -> None:
        try:
            await guard.check()
        except StateLostError as exc:
            # Not committed, not rebuilt in this process: the restart's StateGuard.open does.
            await app.crash(exc)
            return
        except StoreUnavailableError:
            log.warning("state epoch check failed; will retry", exc_info=True)
            return
        try:
            if await guard.announce(publisher):
                log.warning("published the loss of the detection state on the health topic")
        except (StoreUnavailableError, PublishError):
            log.exception("announcing the loss of the detection state failed; will retry")

    app.timer(EPOCH_CHECK_INTERVAL_S, name="sendguard.watch_state_epoch", on_leader=False)(
        watch_state_epoch
    )
    app.task(watch_state_epoch)


def _resume_agents(
    app: faust.App, settings: Settings, wiring: Wiring, publisher: Publisher
) -> None:
    """The agents of the wired resume use cases: audience, contact updates, requests."""
    # One request per batch (each may stream a large audience); audience chunks in small ones.
    for role, factory, batch in (
        (TopicRole.AUDIENCE, wiring.audience, RESUME_INPUT_BATCH),
        (TopicRole.CONTACT_UPDATES, wiring.contact_updates, settings.batch_max_events),
        (TopicRole.RESUME_REQUESTS, wiring.resume, 1),
    ):
        if factory is not None:
            _raw_agent(app, settings, role, batch, factory(publisher).apply)


def _raw_agent(
    app: faust.App,
    settings: Settings,
    role: TopicRole,
    batch: int,
    apply: Callable[[Sequence[RawRecord]], Awaitable[object]],
) -> None:
    """An agent handing raw-bytes batches of a topic to `apply`, acking after success."""
    topic = app.topic(
        settings.topic(role),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )

    async def consume(stream: Any) -> None:
        async for events in stream.noack_take(batch, within=settings.batch_max_wait_ms / 1000):
            await _apply_or_crash(app, stream, events, apply)

    app.agent(topic, name=f"sendguard.{role.value}", concurrency=1)(consume)


async def _apply_or_crash(
    app: faust.App,
    stream: Any,
    events: Sequence[Any],
    apply: Callable[[Sequence[RawRecord]], Awaitable[object]],
) -> None:
    records = [to_raw_record(event) for event in events]
    try:
        await apply(records)
    except (StoreUnavailableError, PublishError) as exc:
        # Not acked, so not committed: the restarted worker reads these records again, and
        # the idempotent state makes the replay harmless.
        log.critical("state or broker unavailable, stopping the worker", extra={"error": str(exc)})
        await app.crash(exc)
        raise
    for event in events:
        await stream.ack(event)


def run_worker(
    app: faust.App, loop: asyncio.AbstractEventLoop, log_level: str, library: str | None = None
) -> None:
    """Run the app until SIGTERM or SIGINT, then stop cleanly (this call exits the process).

    Faust would set up logging again at `log_level` for every logger (aiokafka's DEBUG lines
    carry each record): it gets ours instead, libraries at `library_level`.
    """
    worker = faust.Worker(
        app,
        loop=loop,
        loglevel=library_level(log_level, library),
        logging_config=logging_config(log_level, library),
        quiet=True,
        redirect_stdouts=False,
    )
    tune_garbage_collection()
    worker.execute_from_commandline()


WORKER_GC_YOUNG_THRESHOLD = 20_000
"""Net new container objects between young collections (CPython's default is 700)."""


def tune_garbage_collection() -> None:
    """Freeze the start-up heap and collect the young generation less often.

    Faust, aiokafka and pydantic leave about 90,000 long-lived objects after start-up; every
    full collection walked them all, stopping the worker for 70-100 ms every few seconds at
    10,000 events/s (bench.latency). Frozen, those collections take 5-8 ms. The hot path's
    objects die young and are freed by reference counting, so collecting every 700 net
    allocations only re-walks what survives: at 20,000 the worker spends 3-5% less CPU per
    event (docs/BENCHMARKS.md). Cyclic garbage still triggers a collection as it piles up.
    """
    gc.collect()
    gc.freeze()
    young, *older = gc.get_threshold()
    gc.set_threshold(max(young, WORKER_GC_YOUNG_THRESHOLD), *older)
