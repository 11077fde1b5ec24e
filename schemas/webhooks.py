"""Raw webhook audit records: every accepted provider request body, exactly as it was posted."""

from __future__ import annotations

from typing import Literal

from pydantic import Base64Bytes, Field

from schemas.base import Identifier, OutputMessage, UtcDatetime


class RawWebhook(OutputMessage):
    """One authenticated webhook request, kept for audit and re-processing.

    Kafka key: the tenant id. Published in the same batch as the request's delivery events.
    """

    schema_version: Literal[1] = 1
    request_id: str = Field(description="The receiver's id of the request (also in its logs).")
    provider: str = Field(description="The provider of the URL it was posted to, e.g. 'sendgrid'.")
    tenant_id: Identifier = Field(description="The tenant whose credentials authenticated it.")
    received_at: UtcDatetime = Field(description="Wall-clock time the receiver accepted it.")
    headers: dict[str, str] = Field(
        description="Provider and signature headers, lower-cased names; never Authorization."
    )
    body: Base64Bytes = Field(description="The request body bytes, base64.")
