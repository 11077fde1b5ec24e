"""The outward seams of detection: publishing decided messages, handing contact facts on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from processor.ports.contact_store import ContactWrite
    from processor.ports.detection_store import OutboxMessage
    from processor.ports.records import EventView


class Publisher(Protocol):
    """Publishes messages and returns once the broker acknowledged all of them."""

    async def publish(self, messages: Sequence[OutboxMessage]) -> None:
        """Send in order; raise PublishError if any was not acknowledged."""
        ...


class ContactSink(Protocol):
    """Takes what delivery events teach about contacts (idempotent merges)."""

    def prepare_events(self, events: Sequence[EventView]) -> ContactWrite:
        """Build the merge of the events into contacts and attempted sets; a call writes it."""
        ...
