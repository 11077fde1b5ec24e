"""Per-tenant attribution of provider records to a campaign and a contact; event building.

The tenant comes from the caller's credentials; campaign and contact from the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from processor.adapters.providers.base import FieldError, child, json_type
from schemas.base import Identifier
from schemas.events import BounceCategory, BounceClass, DeliveryEvent, EventType

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from processor.adapters.providers.base import Provider

    Metadata = Sequence[tuple[str, Mapping[str, Any] | None]]
    """Metadata objects of a record with their paths, in lookup order."""

MetadataKey = Annotated[str, Field(min_length=1, max_length=128)]


class AttributionConfig(BaseModel):
    """Where one tenant's campaign and contact ids live in provider payloads.

    Metadata keys are looked up, in order, in the provider's per-message metadata: SendGrid
    custom args, SES message tags, Mailgun user-variables, Postmark Metadata, SparkPost
    rcpt_meta. A metadata key always wins over the provider's own campaign fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    campaign_keys: tuple[MetadataKey, ...] = Field(
        default=("campaign_id",), description="Metadata keys holding the campaign id."
    )
    contact_keys: tuple[MetadataKey, ...] = Field(
        default=("contact_id",),
        description="Metadata keys holding the contact id; else the lower-cased address.",
    )
    provider_campaign_fields: bool = Field(
        default=True,
        description=(
            "Fall back to the provider's own campaign fields: SendGrid marketing_campaign_id, "
            "singlesend_id or newsletter id; SES configuration set; Mailgun campaign or sole "
            "tag; Postmark Tag, then MessageStream; SparkPost campaign_id."
        ),
    )
    fallback_campaign_id: Identifier | None = Field(
        default=None,
        description="Campaign of records that carry none; None rejects such records.",
    )


@dataclass(frozen=True, slots=True)
class Context:
    """What every adapter call needs besides the payload."""

    provider: Provider
    tenant_id: str
    attribution: AttributionConfig


@dataclass(frozen=True, slots=True)
class Found:
    """A value taken from a record, with the path it came from (for rejections)."""

    path: str
    value: Any


def _present(value: Any) -> bool:
    if value is None or value == []:
        return False
    return not (isinstance(value, str) and not value.strip())


def _as_id(found: Found) -> Found:
    """A metadata or provider value as an id string; lists must hold exactly one value."""
    value = found.value
    if isinstance(value, list):
        if len(value) != 1:
            raise FieldError(found.path, f"ambiguous: {len(value)} values")
        value = value[0]
    if isinstance(value, str) and value.strip():
        return Found(found.path, value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return Found(found.path, str(value))
    raise FieldError(found.path, f"expected a string or integer id, got {json_type(value)}")


def _lookup(keys: Sequence[str], metadata: Metadata) -> Found | None:
    for key in keys:
        for path, container in metadata:
            if container is not None and _present(container.get(key)):
                return _as_id(Found(child(path, key), container[key]))
    return None


def resolve_campaign(
    ctx: Context,
    metadata: Metadata,
    native: Sequence[Found],
) -> Found:
    """The record's campaign: metadata key, else provider field, else the tenant's fallback."""
    config = ctx.attribution
    found = _lookup(config.campaign_keys, metadata)
    if found is not None:
        return found
    if config.provider_campaign_fields:
        for candidate in native:
            if _present(candidate.value):
                return _as_id(candidate)
    if config.fallback_campaign_id is not None:
        return Found("attribution.fallback_campaign_id", config.fallback_campaign_id)
    looked = [child(path, key) for key in config.campaign_keys for path, _ in metadata]
    if config.provider_campaign_fields:
        looked += [candidate.path for candidate in native]
    missing = looked[0] if looked else "campaign_id"
    also = f"; also looked at {', '.join(looked[1:])}" if len(looked) > 1 else ""
    raise FieldError(missing, f"missing: the record names no campaign{also}")


def resolve_contact(
    ctx: Context,
    metadata: Metadata,
    address: Found,
) -> Found:
    """The record's contact id: a configured metadata key, else the lower-cased address."""
    found = _lookup(ctx.attribution.contact_keys, metadata)
    if found is not None:
        return found
    return Found(address.path, str(address.value).strip().lower())


def make_event(
    ctx: Context,
    *,
    event_id: str,
    event_type: EventType,
    bounce_class: BounceClass | None,
    campaign: Found,
    contact: Found,
    address: Found,
    occurred_at: datetime,
    message_id: Found | None,
    provider_event_id: str | None,
    bounce_category: BounceCategory | None = None,
) -> DeliveryEvent:
    """A validated DeliveryEvent; a validation failure names the provider field it came from."""
    record = {
        "event_id": event_id,
        "tenant_id": ctx.tenant_id,
        "campaign_id": campaign.value,
        "recipient": {"contact_id": contact.value, "address": address.value},
        "type": event_type,
        "bounce_class": bounce_class,
        "bounce_category": bounce_category,
        "occurred_at": occurred_at,
        "provider": ctx.provider.value,
        "provider_message_id": None if message_id is None else message_id.value,
        "provider_event_id": provider_event_id,
    }
    try:
        return DeliveryEvent.model_validate(record)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(part) for part in error["loc"]) or "event"
        sources = {
            "campaign_id": campaign.path,
            "recipient.address": address.path,
            "recipient.contact_id": contact.path,
            "provider_message_id": None if message_id is None else message_id.path,
        }
        raise FieldError(sources.get(loc) or loc, f"not a valid {loc}: {error['msg']}") from exc
