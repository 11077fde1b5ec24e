"""The intake of what the resume filter reads: planned audiences and contact updates.

Also the one validation of resume-side input records, which names the offending field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ValidationError

from processor.errors import InvalidInputError
from processor.ports.dead_letters import dead_letter
from processor.services.event_input import describe_validation_error
from schemas.audience import AudienceChunk, ContactUpdate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from processor.ports.contact_store import ContactStore
    from processor.ports.detection_store import OutboxMessage
    from processor.ports.publishing import Publisher
    from processor.ports.records import RawRecord

_Model = TypeVar("_Model", bound=BaseModel)


def parse_input(record: RawRecord, model: type[_Model], error_type: str) -> _Model:
    """Validate a record's value as `model`, or raise InvalidInputError naming the field."""
    if not record.value:
        raise InvalidInputError("empty_value", "record has no value")
    try:
        return model.model_validate_json(record.value)
    except ValidationError as exc:
        bad_json = any(e["type"] == "json_invalid" for e in exc.errors())
        kind = "invalid_json" if bad_json else error_type
        raise InvalidInputError(kind, describe_validation_error(exc)) from exc


class _Intake:
    """An input handler: the contact store it feeds, and where its dead letters go."""

    def __init__(
        self,
        contacts: ContactStore,
        publisher: Publisher,
        *,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(tz=UTC),
    ) -> None:
        self._contacts = contacts
        self._publisher = publisher
        self._wall_clock = wall_clock


class AudienceIntake(_Intake):
    """Stores planned audience chunks, each under its own tenant's campaign."""

    async def apply(self, records: Sequence[RawRecord]) -> None:
        """Store each chunk; bad input is dead-lettered, never raised."""
        dead: list[OutboxMessage] = []
        for record in records:
            try:
                chunk = parse_input(record, AudienceChunk, "invalid_audience_chunk")
            except InvalidInputError as exc:
                dead.append(dead_letter(record, exc.error_type, exc.reason, self._wall_clock()))
                continue
            await self._contacts.store_audience_chunk(chunk)
        if dead:
            await self._publisher.publish(dead)


class ContactUpdateIntake(_Intake):
    """Merges contact updates from other systems into contact state, a batch at a time."""

    async def apply(self, records: Sequence[RawRecord]) -> None:
        """Merge the batch's updates in order; bad input is dead-lettered, never raised.

        A record without a value is a compaction tombstone and is skipped.
        """
        updates: list[ContactUpdate] = []
        dead: list[OutboxMessage] = []
        for record in records:
            if not record.value:
                continue
            try:
                updates.append(parse_input(record, ContactUpdate, "invalid_contact_update"))
            except InvalidInputError as exc:
                dead.append(dead_letter(record, exc.error_type, exc.reason, self._wall_clock()))
        if dead:
            await self._publisher.publish(dead)
        if updates:
            await self._contacts.apply_updates(updates)
