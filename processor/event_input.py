"""Delivery-event records in: validation into `DeliveryEvent`, clear reasons, dedup digests.

Shared by every input path, so a rejection reads the same on the dead-letter topic whatever
consumed the record.
"""

from __future__ import annotations

import hashlib

from pydantic import ValidationError

from processor.errors import InvalidInputError
from processor.messages import RawRecord, to_ms
from schemas.events import DeliveryEvent


def event_digest(event_id: str) -> bytes:
    """8-byte digest of an event id: what the dedup sets hold."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


def describe_validation_error(exc: ValidationError) -> str:
    """'field.path: message' for each problem, joined: names the offending field."""
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(p) for p in error["loc"]) or "(message)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def parse_event(record: RawRecord, max_future_skew_ms: int) -> DeliveryEvent:
    """Validate one record's value as a DeliveryEvent, or raise InvalidInputError."""
    return parse_with_time(record, max_future_skew_ms)[0]


def parse_with_time(record: RawRecord, max_future_skew_ms: int) -> tuple[DeliveryEvent, int]:
    """`parse_event`, plus the event's `occurred_at` in epoch ms (computed once)."""
    if not record.value:
        raise InvalidInputError("empty_value", "record has no value")
    try:
        event = DeliveryEvent.model_validate_json(record.value)
    except ValidationError as exc:
        kind = (
            "invalid_json"
            if any(e["type"] == "json_invalid" for e in exc.errors())
            else ("invalid_event")
        )
        raise InvalidInputError(kind, describe_validation_error(exc)) from exc
    at_ms = to_ms(event.occurred_at)
    if record.timestamp_ms is not None and max_future_skew_ms >= 0:
        ahead_ms = at_ms - record.timestamp_ms
        if ahead_ms > max_future_skew_ms:
            raise InvalidInputError(
                "future_event",
                f"occurred_at is {ahead_ms / 1000:.0f} s after the record's Kafka timestamp "
                f"(more than the {max_future_skew_ms / 1000:.0f} s allowed clock skew)",
            )
    return event, at_ms
