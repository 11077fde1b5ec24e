"""Records as read from Kafka or a file, the event view every consumer reads, and time helpers.

The vocabulary of the hot path: an adapter turns what it reads into a `RawRecord`, a service
parses it into something that satisfies `EventView`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from schemas.events import BounceCategory, BounceClass, EventType

FILE_TOPIC = ""
"""The `topic` of a RawRecord read from a file rather than from Kafka."""


class RawRecord(NamedTuple):
    """One Kafka record as read, before any parsing.

    A NamedTuple: one is built per record on the hot path, where it is cheaper than a frozen
    dataclass.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None

    @property
    def source(self) -> str | None:
        """`topic:partition`, the unit Kafka orders and commits by; None outside Kafka."""
        return f"{self.topic}:{self.partition}" if self.from_kafka else None

    @property
    def from_kafka(self) -> bool:
        """False for records replayed from a file (their offsets are line numbers)."""
        return self.topic != FILE_TOPIC


def from_ms(at_ms: int) -> datetime:
    """A UTC datetime from epoch milliseconds."""
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC)


def to_ms(at: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(at.timestamp() * 1000)


class RecipientView(Protocol):
    """What consumers of an event read of its recipient."""

    @property
    def contact_id(self) -> str: ...  # noqa: D102 - named like the contract's field
    @property
    def address(self) -> str: ...  # noqa: D102 - named like the contract's field
    @property
    def domain(self) -> str: ...  # noqa: D102 - named like the contract's property


class EventView(Protocol):
    """A validated delivery event: a `DeliveryEvent` or the fast decoder's `LeanEvent`."""

    @property
    def event_id(self) -> str: ...  # noqa: D102 - named like the contract's field
    @property
    def tenant_id(self) -> str: ...  # noqa: D102 - named like the contract's field
    @property
    def campaign_id(self) -> str: ...  # noqa: D102 - named like the contract's field
    @property
    def recipient(self) -> RecipientView: ...  # noqa: D102 - named like the contract's field
    @property
    def type(self) -> EventType: ...  # noqa: D102 - named like the contract's field
    @property
    def bounce_class(self) -> BounceClass | None: ...  # noqa: D102 - contract's field
    @property
    def bounce_category(self) -> BounceCategory | None: ...  # noqa: D102 - contract's field
    @property
    def occurred_at(self) -> datetime: ...  # noqa: D102 - named like the contract's field
    @property
    def at_ms(self) -> int: ...  # noqa: D102 - named like the contract's property
