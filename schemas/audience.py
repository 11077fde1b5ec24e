"""Planned audiences and contact updates: what the resume agent filters against."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.base import ContactId, Identifier, InputMessage, UtcDatetime
from schemas.events import Recipient


class AudienceChunk(InputMessage):
    """A chunk of a campaign's planned recipients. Kafka key: `tenant:campaign`.

    Chunks are idempotent by `chunk_index`: a redelivered chunk replaces itself.
    """

    schema_version: Literal[1] = 1
    tenant_id: Identifier
    campaign_id: Identifier
    chunk_index: int = Field(ge=0, description="Position of this chunk in the audience.")
    total_chunks: int | None = Field(default=None, ge=1, description="Chunk count, if known.")
    recipients: list[Recipient] = Field(min_length=1, max_length=50_000)


class ConsentState(StrEnum):
    """Opt-in consent to marketing email."""

    GRANTED = "granted"
    REVOKED = "revoked"


class ContactUpdate(InputMessage):
    """What another system knows about a contact. Kafka key: `tenant:contact` (compacted).

    Compaction keeps only the latest message per contact, so a producer should state every field
    it knows; a field left out (None) leaves sendguard's knowledge of it unchanged.
    """

    schema_version: Literal[1] = 1
    tenant_id: Identifier
    contact_id: ContactId
    consent: ConsentState | None = Field(default=None, description="Opt-in consent, if known.")
    unsubscribed: bool | None = Field(
        default=None, description="Unsubscribed in this or another system."
    )
    deleted: bool = Field(default=False, description="The contact was deleted: never mail it.")
    occurred_at: UtcDatetime
    source: str = Field(default="unknown", max_length=200, description="System of record.")

    @property
    def key(self) -> str:
        """The Kafka key of this update."""
        return f"{self.tenant_id}:{self.contact_id}"
