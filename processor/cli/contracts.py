"""`sendguard schemas` and `sendguard topics`: the message contracts and the Kafka topics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click


@click.group()
def schemas() -> None:
    """Message contracts of the topics."""


@schemas.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--asyncapi-only", is_flag=True, help="Write only asyncapi.yaml.")
def schemas_export(directory: Path, *, asyncapi_only: bool) -> None:
    """Write a JSON Schema per message and an AsyncAPI 3 document into DIRECTORY."""
    from processor.adapters.asyncapi import (
        ASYNCAPI_FILE_NAME,
        asyncapi_document,
        export,
        render_asyncapi_yaml,
    )
    from processor.runtime.bootstrap import load_settings

    prefix = load_settings().topic_prefix
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if asyncapi_only:
            path = directory / ASYNCAPI_FILE_NAME
            path.write_text(render_asyncapi_yaml(asyncapi_document(prefix)), encoding="utf-8")
            written = [path]
        else:
            written = export(directory, topic_prefix=prefix)
    except OSError as exc:  # a parent that is a file, no permission, a full disk
        where = exc.filename or directory
        raise click.BadParameter(
            f"cannot write {where}: {exc.strerror}", param_hint="DIRECTORY"
        ) from None
    for path in written:
        click.echo(str(path))


@click.group()
def topics() -> None:
    """Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every sendguard topic that is missing (partitions, compaction as documented)."""
    from processor.adapters.kafka import declare_topics
    from processor.runtime.bootstrap import load_settings

    created = asyncio.run(declare_topics(load_settings()))
    click.echo("created: " + (", ".join(created) if created else "nothing, all topics exist"))
