"""Shared base classes and field types for topic messages.

Inputs tolerate unknown fields (producers evolve ahead of us); outputs are exact. Every
timestamp is timezone-aware and normalized to UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware timestamp, converted to UTC; naive timestamps are rejected."""

Identifier = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=r"^[^\s:](?:[^:\x00-\x1f]*[^\s:])?$"),
]
"""Tenant and campaign identifiers: no ':' (the key separator), no control characters, no
leading or trailing blanks; inner spaces are allowed ("Example Campaign Name")."""


def campaign_key(tenant_id: str, campaign_id: str) -> str:
    """`tenant:campaign`: the Kafka key of a campaign's messages, and its name in sets and logs.

    Unambiguous, as an Identifier has no ':'.
    """
    return f"{tenant_id}:{campaign_id}"


class InputMessage(BaseModel):
    """A message sendguard consumes: unknown fields are ignored, used fields are validated."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class OutputMessage(BaseModel):
    """A message sendguard publishes: exactly these fields, nothing else."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )
