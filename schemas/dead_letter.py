"""Dead-letter records: rejected input with its origin and the reason it was rejected."""

from __future__ import annotations

from typing import Literal

from pydantic import Base64Bytes, Field

from schemas.base import OutputMessage, UtcDatetime


class DeadLetter(OutputMessage):
    """One rejected input message. Kafka key: the source message's key."""

    schema_version: Literal[1] = 1
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    source_key: Base64Bytes | None = Field(description="Original key bytes, base64.")
    original: Base64Bytes = Field(description="Original value bytes, base64.")
    error_type: str = Field(description="Short machine-readable class, e.g. 'invalid_json'.")
    error: str = Field(description="Human-readable reason naming the offending field.")
    failed_at: UtcDatetime = Field(description="Wall-clock time of the rejection.")
