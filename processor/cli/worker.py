"""`sendguard worker`: the stream worker (detection, pause commands, health, resume)."""

from __future__ import annotations

import asyncio

import click


@click.command()
def worker() -> None:
    """Run the stream worker: detection, pause commands and health (SIGTERM stops it)."""
    from processor.adapters.kafka import declare_topics
    from processor.config.policy_file import PolicyHolder
    from processor.config.settings import WorkerRole
    from processor.logs import configure_logging
    from processor.runtime.app import Wiring, create_app, run_worker
    from processor.runtime.bootstrap import (
        build_contact_store,
        build_metrics,
        build_redis,
        build_state_guard,
        build_store,
        detection_factory,
        load_settings,
        open_state_guard,
        redis_calls,
        with_resume,
    )

    settings = load_settings()
    configure_logging(settings.log_level, settings.library_log_level)
    holder = PolicyHolder(settings.policy_file)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(declare_topics(settings))
    metrics, metrics_server = build_metrics(settings, "worker")
    if metrics_server is not None:
        metrics_server.start()  # before Kafka: a taken port is said at once, as a setting error
    calls = redis_calls(metrics)
    redis_client = build_redis(settings)
    store = build_store(settings, redis_client, holder(), calls)
    contacts = build_contact_store(settings, redis_client, calls)

    roles = settings.worker_roles
    guard = build_state_guard(settings, redis_client, store, holder(), metrics)
    detects = WorkerRole.DETECT in roles
    loop.run_until_complete(open_state_guard(settings, guard, detects=detects))
    detection = detection_factory(settings, store, contacts, holder)
    wiring = Wiring(
        detection=detection if detects else None,
        reload_policy=holder.reload,
        metrics=metrics,
        state_guard=guard,
    )
    if WorkerRole.RESUME in roles:
        wiring = with_resume(wiring, settings, store, contacts, holder)
    app = create_app(settings, wiring)
    run_worker(app, loop, settings.log_level, settings.library_log_level)
