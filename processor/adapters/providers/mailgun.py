"""Mailgun webhooks (`{"signature", "event-data"}` or a bare event-data object) -> events.

The signature block is not checked here (the receiver verifies it with the tenant's key).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from processor.adapters.providers.attribution import (
    Context,
    Found,
    make_event,
    resolve_campaign,
    resolve_contact,
)
from processor.adapters.providers.base import (
    FieldError,
    Ignored,
    Outcome,
    Provider,
    as_object,
    child,
    item,
    optional_object,
    optional_str,
    parse_timestamp,
    required_str,
    short,
    stable_event_id,
)
from processor.adapters.providers.bounces import (
    Bounce,
    generic,
    joined_text,
    resolve_text,
    specific,
)
from schemas.events import BounceCategory, BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT: Final = "mailgun"

_EVENT_TYPES: Final = MappingProxyType(
    {
        "accepted": EventType.SENT,
        "delivered": EventType.DELIVERED,
        "opened": EventType.OPEN,
        "clicked": EventType.CLICK,
        "unsubscribed": EventType.UNSUBSCRIBE,
        "complained": EventType.COMPLAINT,
    }
)
_NOT_SIGNALS: Final = MappingProxyType(
    {
        "rejected": "Mailgun refused the send request itself; no recipient was tried",
        "stored": "an inbound message was stored",
    }
)
_SUPPRESSION_REASONS: Final = frozenset(
    {"suppress-bounce", "suppress-unsubscribe", "suppress-complaint", "hardfail"}
)
"""Permanent failures that are a send to a suppressed address, not a new bounce (`hardfail`:
the name of the same drop in Mailgun's legacy webhooks)."""
_PERMANENT_FAILURES: Final = MappingProxyType(
    {
        # immediate or delayed (NDR) rejection of the recipient
        "bounce": specific(BounceClass.HARD, BounceCategory.BAD_MAILBOX),
        # the mailbox provider blocked the message
        "espblock": specific(BounceClass.BLOCK, BounceCategory.POLICY),
        # retried past Mailgun's deadline after temporary failures
        "old": specific(BounceClass.SOFT, BounceCategory.TRANSIENT),
        # greylisting is a deferral by nature
        "greylisted": specific(BounceClass.SOFT, BounceCategory.TRANSIENT),
        # unclassified by Mailgun: the SMTP answer in delivery-status decides
        "generic": generic(BounceClass.SOFT, BounceCategory.OTHER),
    }
)


def normalize(payload: Any, ctx: Context) -> list[Outcome]:
    """The one event of a Mailgun webhook post (signed body or bare event-data)."""
    try:
        body = as_object(payload, ROOT)
        if "event-data" in body:
            path = child(ROOT, "event-data")
            return [_record(as_object(body["event-data"], path), path, ctx)]
        return [_record(body, ROOT, ctx)]
    except FieldError as exc:
        return [exc.rejection(None)]


def _answered(data: Mapping[str, Any], reason: str | None) -> Bounce:
    """The permanent failure's class from Mailgun's reason and its `delivery-status`."""
    label = _PERMANENT_FAILURES["generic" if reason is None else reason]
    status = data.get("delivery-status")
    if not isinstance(status, dict):  # diagnostics only: a malformed one must not lose the bounce
        status = {}
    return resolve_text(
        label,
        joined_text(status.get("message"), status.get("description")),
        reply_code=status.get("code"),
        enhanced_code=joined_text(status.get("enhanced-code")),
    )


def _classify(data: Mapping[str, Any], path: str) -> tuple[EventType, Bounce | None] | Ignored:
    event = required_str(data, "event", path)
    if event in _NOT_SIGNALS:
        return Ignored(None, child(path, "event"), f"{short(event)}: {_NOT_SIGNALS[event]}")
    if event == "failed":
        severity = required_str(data, "severity", path)
        if severity == "temporary":  # Mailgun retries these: a deferral, not a bounce
            return EventType.DEFERRED, None
        if severity != "permanent":
            raise FieldError(child(path, "severity"), f"unknown severity {short(severity)}")
        reason = optional_str(data, "reason", path)  # absent: as unclassified as `generic`
        if reason in _SUPPRESSION_REASONS:
            return EventType.DROPPED_SUPPRESSED, None
        if reason is not None and reason not in _PERMANENT_FAILURES:
            raise FieldError(
                child(path, "reason"), f"unknown permanent failure reason {short(reason)}"
            )
        return EventType.BOUNCE, _answered(data, reason)
    if event not in _EVENT_TYPES:
        return Ignored(None, child(path, "event"), f"unknown event type {short(event)}")
    return _EVENT_TYPES[event], None


def _user_variables(data: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    value = data.get("user-variables")
    if value == []:  # Mailgun sends an empty array, not an object, when there are none
        return None
    return optional_object(data, "user-variables", path)


def _native_campaigns(data: Mapping[str, Any], path: str) -> list[Found]:
    campaigns = data.get("campaigns")
    first = campaigns[0] if isinstance(campaigns, list) and campaigns else None
    tags = data.get("tags")
    return [
        # Mailgun's (legacy) campaigns: the first one the message was sent in.
        Found(
            child(item(child(path, "campaigns"), 0), "id"),
            first.get("id") if isinstance(first, dict) else None,
        ),
        # A tag names the campaign only when it is the message's sole tag.
        Found(
            item(child(path, "tags"), 0),
            tags[0] if isinstance(tags, list) and len(tags) == 1 else None,
        ),
    ]


def _record(data: Mapping[str, Any], path: str, ctx: Context) -> Outcome:
    classified = _classify(data, path)
    if isinstance(classified, Ignored):
        return classified
    event_type, bounce = classified
    address = Found(child(path, "recipient"), required_str(data, "recipient", path))
    occurred_at = parse_timestamp(data.get("timestamp"), child(path, "timestamp"))
    metadata = [(child(path, "user-variables"), _user_variables(data, path))]
    campaign = resolve_campaign(ctx, metadata, _native_campaigns(data, path))
    contact = resolve_contact(ctx, metadata, address)
    headers_path = child(child(path, "message"), "headers")
    message = optional_object(data, "message", path)
    headers = (
        None if message is None else optional_object(message, "headers", child(path, "message"))
    )
    message_id = None if headers is None else optional_str(headers, "message-id", headers_path)
    event = required_str(data, "event", path)
    mailgun_id = optional_str(data, "id", path)
    # Mailgun's event id is only unique within a day: the event's second makes it unique.
    epoch_second = str(int(occurred_at.timestamp()))
    if mailgun_id is not None:
        event_id = stable_event_id(Provider.MAILGUN, event, mailgun_id, epoch_second)
    else:  # the Events API shape, which has no id
        event_id = stable_event_id(
            Provider.MAILGUN,
            event,
            message_id or "",
            address.value.lower(),
            occurred_at.isoformat(),
        )
    return make_event(
        ctx,
        event_id=event_id,
        event_type=event_type,
        bounce_class=None if bounce is None else bounce.bounce_class,
        bounce_category=None if bounce is None else bounce.category,
        campaign=campaign,
        contact=contact,
        address=address,
        occurred_at=occurred_at,
        message_id=None
        if message_id is None
        else Found(child(headers_path, "message-id"), message_id),
        provider_event_id=mailgun_id,
    )
