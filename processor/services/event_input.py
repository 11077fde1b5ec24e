"""Delivery-event records in: validation into events, clear reasons, dedup digests.

Shared by every input path, so a rejection reads the same on the dead-letter topic whatever
consumed the record. `schemas.events.DeliveryEvent` is the contract; a msgspec decoder that
accepts a strict subset of it reads the common case several times faster, and anything it does
not accept is judged by the pydantic model itself (which also words the rejection).
"""

from __future__ import annotations

import functools
import hashlib
import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from pydantic import ValidationError

from processor.errors import InvalidInputError
from processor.ports.records import RawRecord, to_ms
from schemas.base import CONTACT_ID_RE, IDENTIFIER_RE
from schemas.events import BounceCategory, BounceClass, DeliveryEvent, EventType

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.ports.records import EventView


# The fast decoder must accept nothing the contract rejects (tests/unit/test_event_input.py
# checks it with hypothesis). The contract strips surrounding whitespace before it checks a
# string; the fast one rejects such strings instead, so the contract handles them. Python's
# whitespace is wider than pydantic-core's (Rust), so these checks reject more, never less.
# Patterns are checked in `_fast_ok`, not by msgspec: its per-field regex calls cost 8x the
# decoding itself.
_IDENTIFIER = IDENTIFIER_RE  # schemas.base: one rule for every input path
_CONTACT_ID = CONTACT_ID_RE
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+")
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")
"""RFC 3339 in UTC with at most microseconds: what providers send, read alike by both paths."""
_KNOWN_CAMPAIGNS_MAX = 100_000
"""Identifiers recur (one campaign, many events): verdicts on this many pairs are remembered."""


def _text(min_length: int, max_length: int) -> msgspec.Meta:
    return msgspec.Meta(min_length=min_length, max_length=max_length)


class LeanRecipient(msgspec.Struct, frozen=True):
    """The recipient of a fast-decoded event (same fields as `schemas.events.Recipient`)."""

    contact_id: Annotated[str, _text(1, 320)]
    address: Annotated[str, _text(3, 320)]

    @property
    def domain(self) -> str:
        """The recipient's mail domain, lower-cased."""
        return self.address.rsplit("@", 1)[1].lower()


class LeanEvent(msgspec.Struct):
    """A fast-decoded delivery event (same fields and meaning as `DeliveryEvent`).

    `occurred_at` is read as text and parsed by `_fast_ok`, which sets `at_ms`: msgspec rounds
    a seventh fractional digit where the contract truncates it, so only the common shape is
    taken here.
    """

    event_id: Annotated[str, _text(1, 256)]
    tenant_id: Annotated[str, _text(1, 200)]
    campaign_id: Annotated[str, _text(1, 200)]
    recipient: LeanRecipient
    type: EventType
    occurred_at_text: Annotated[str, msgspec.Meta(max_length=40)] = msgspec.field(
        name="occurred_at"
    )
    bounce_class: BounceClass | None = None
    bounce_category: BounceCategory | None = None
    schema_version: Literal[1] = 1
    provider: Annotated[str, _text(1, 64)] = "sendguard"
    provider_message_id: Annotated[str, _text(1, 512)] | None = None
    provider_event_id: Annotated[str, _text(1, 512)] | None = None
    at_ms: int = 0
    """`occurred_at` in epoch ms, set by `_fast_ok` (whatever the input said)."""

    @property
    def occurred_at(self) -> datetime:
        """When it happened (UTC); `_fast_ok` has checked the text's shape."""
        return datetime.fromisoformat(self.occurred_at_text)


_DECODE_ONE = msgspec.json.Decoder(LeanEvent).decode
_DECODE_MANY = msgspec.json.Decoder(list[LeanEvent]).decode


@functools.lru_cache(maxsize=_KNOWN_CAMPAIGNS_MAX)
def _campaign_ok(tenant_id: str, campaign_id: str) -> bool:
    return (
        _IDENTIFIER.fullmatch(tenant_id) is not None
        and _IDENTIFIER.fullmatch(campaign_id) is not None
    )


def _fast_ok(event: LeanEvent) -> bool:
    """What the contract checks beyond msgspec's types and lengths (see the comment above)."""
    if (event.type is EventType.BOUNCE) is (event.bounce_class is None):
        return False
    if event.bounce_category is not None and event.type is not EventType.BOUNCE:
        return False
    # Other shapes and offsets are read and normalized by the contract's path.
    if _TIMESTAMP.fullmatch(event.occurred_at_text) is None:
        return False
    try:
        event.at_ms = to_ms(event.occurred_at)
    except ValueError:  # e.g. 2026-02-30
        return False
    recipient = event.recipient
    # str.strip returns the very object when there is nothing to strip.
    event_id, contact_id, provider = event.event_id, recipient.contact_id, event.provider
    message_id, provider_event_id = event.provider_message_id, event.provider_event_id
    return (
        _ADDRESS.fullmatch(recipient.address) is not None
        and _campaign_ok(event.tenant_id, event.campaign_id)
        and event_id.strip() is event_id
        and _CONTACT_ID.fullmatch(contact_id) is not None
        and provider.strip() is provider
        and (message_id is None or message_id.strip() is message_id)
        and (provider_event_id is None or provider_event_id.strip() is provider_event_id)
    )


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


def parse_with_time(record: RawRecord, max_future_skew_ms: int) -> tuple[EventView, int]:
    """One record's value validated as a delivery event, and its `occurred_at` in epoch ms.

    Raises InvalidInputError naming the reason.
    """
    if not record.value:
        raise InvalidInputError("empty_value", "record has no value")
    event: EventView
    try:
        fast = _DECODE_ONE(record.value)
    except msgspec.DecodeError:
        event = _contract_event(record.value)
    else:
        event = fast if _fast_ok(fast) else _contract_event(record.value)
    return event, _checked_ms(event, record, max_future_skew_ms)


def parse_batch(
    records: Sequence[RawRecord], max_future_skew_ms: int
) -> list[tuple[EventView, int] | InvalidInputError]:
    """`parse_with_time` of each record, decoding the batch in one call when it is all valid.

    A batch is decoded as one JSON array of the values; that is only trusted when it yields
    exactly one event per record (a value holding `{..},{..}` would otherwise shift them).
    """
    values = [record.value for record in records]
    if all(values):
        try:
            decoded = _DECODE_MANY(b"[" + b",".join(values) + b"]")  # type: ignore[arg-type]  # all() ruled None out
        except msgspec.DecodeError:
            decoded = None
        if decoded is not None and len(decoded) == len(records):
            results: list[tuple[EventView, int] | InvalidInputError] = []
            for event, record in zip(decoded, records, strict=True):
                try:
                    if _fast_ok(event):
                        results.append((event, _checked_ms(event, record, max_future_skew_ms)))
                    else:
                        results.append(parse_with_time(record, max_future_skew_ms))
                except InvalidInputError as exc:
                    results.append(exc)
            return results
    return [_parse_or_error(record, max_future_skew_ms) for record in records]


def _parse_or_error(
    record: RawRecord, max_future_skew_ms: int
) -> tuple[EventView, int] | InvalidInputError:
    try:
        return parse_with_time(record, max_future_skew_ms)
    except InvalidInputError as exc:
        return exc


def _contract_event(value: bytes) -> DeliveryEvent:
    """The contract's verdict on a value the fast decoder did not accept."""
    try:
        return DeliveryEvent.model_validate_json(value)
    except ValidationError as exc:
        kind = (
            "invalid_json"
            if any(e["type"] == "json_invalid" for e in exc.errors())
            else ("invalid_event")
        )
        raise InvalidInputError(kind, describe_validation_error(exc)) from exc


def _checked_ms(event: EventView, record: RawRecord, max_future_skew_ms: int) -> int:
    at_ms = event.at_ms
    if record.timestamp_ms is not None and max_future_skew_ms >= 0:
        ahead_ms = at_ms - record.timestamp_ms
        if ahead_ms > max_future_skew_ms:
            raise InvalidInputError(
                "future_event",
                f"occurred_at is {ahead_ms / 1000:.0f} s after the record's Kafka timestamp "
                f"(more than the {max_future_skew_ms / 1000:.0f} s allowed clock skew)",
            )
    return at_ms
