"""SendGrid Event Webhook batches (JSON arrays, or one object) -> normalized delivery events."""

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
    batch_items,
    child,
    optional_object,
    optional_str,
    parse_timestamp,
    required_str,
    short,
    stable_event_id,
)
from processor.adapters.providers.bounces import (
    Bounce,
    Label,
    generic,
    resolve_text,
    specific,
)
from schemas.events import BounceCategory, BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT: Final = "sendgrid"

_EVENT_TYPES: Final = MappingProxyType(
    {
        "processed": EventType.SENT,
        "delivered": EventType.DELIVERED,
        "deferred": EventType.DEFERRED,
        "open": EventType.OPEN,
        "click": EventType.CLICK,
        "spamreport": EventType.COMPLAINT,
        "unsubscribe": EventType.UNSUBSCRIBE,
        "group_unsubscribe": EventType.UNSUBSCRIBE,
    }
)
_NOT_SIGNALS: Final = MappingProxyType(
    {"group_resubscribe": "a resubscribe to a suppression group is not a reputation signal"}
)
_BOUNCE_LABELS: Final[Mapping[str, Label]] = MappingProxyType(
    {
        "bounce": specific(BounceClass.HARD, BounceCategory.BAD_MAILBOX),
        "blocked": specific(BounceClass.BLOCK, BounceCategory.POLICY),
    }
)
_UNLABELLED: Final = generic(BounceClass.SOFT, BounceCategory.OTHER)
"""A bounce without `type` (older payloads, or "" / null): `status` and `reason` decide."""
_SUPPRESSED_DROP_REASONS: Final = frozenset(
    {"bounced address", "unsubscribed address", "spam reporting address", "invalid"}
)
"""Drop reasons meaning the address is on a suppression list (`invalid`: invalid-emails list)."""


def normalize(payload: Any, ctx: Context) -> list[Outcome]:
    """Every record of a SendGrid Event Webhook post, in order."""
    try:
        records = batch_items(payload, ROOT)
    except FieldError as exc:
        return [exc.rejection(None)]
    outcomes: list[Outcome] = []
    for index, path, raw in records:
        try:
            outcomes.append(_record(raw, path, index, ctx))
        except FieldError as exc:
            outcomes.append(exc.rejection(index))
    return outcomes


def _bounce(obj: Mapping[str, Any], path: str) -> Bounce:
    bounce_type = optional_str(obj, "type", path)  # tells a bounce from a block
    if bounce_type is not None and bounce_type not in _BOUNCE_LABELS:
        raise FieldError(child(path, "type"), f"unknown bounce type {short(bounce_type)}")
    label = _UNLABELLED if bounce_type is None else _BOUNCE_LABELS[bounce_type]
    status = obj.get("status")
    reason = obj.get("reason")
    return resolve_text(
        label,
        reason if isinstance(reason, str) else None,
        enhanced_code=status if isinstance(status, str) else None,
    )


def _classify(
    obj: Mapping[str, Any], path: str, index: int | None
) -> tuple[EventType, Bounce | None] | Ignored:
    event = required_str(obj, "event", path)
    event_path = child(path, "event")
    if event in _NOT_SIGNALS:
        return Ignored(index, event_path, f"{short(event)}: {_NOT_SIGNALS[event]}")
    if event == "bounce":
        return EventType.BOUNCE, _bounce(obj, path)
    if event == "dropped":
        reason = optional_str(obj, "reason", path) or ""
        if reason.casefold() not in _SUPPRESSED_DROP_REASONS:
            problem = f"drop reason {short(reason)} is not a send to a suppressed address"
            return Ignored(index, child(path, "reason"), problem)
        return EventType.DROPPED_SUPPRESSED, None
    if event not in _EVENT_TYPES:
        return Ignored(index, event_path, f"unknown event type {short(event)}")
    return _EVENT_TYPES[event], None


def _record(raw: Any, path: str, index: int | None, ctx: Context) -> Outcome:
    obj = as_object(raw, path)
    classified = _classify(obj, path, index)
    if isinstance(classified, Ignored):
        return classified
    event_type, bounce = classified
    address = Found(child(path, "email"), required_str(obj, "email", path))
    occurred_at = parse_timestamp(obj.get("timestamp"), child(path, "timestamp"))
    # Custom args (unique args) arrive as top-level keys of the event.
    metadata = [(path, obj)]
    newsletter = optional_object(obj, "newsletter", path)
    native = [
        Found(child(path, "marketing_campaign_id"), obj.get("marketing_campaign_id")),
        Found(child(path, "singlesend_id"), obj.get("singlesend_id")),
        Found(
            child(child(path, "newsletter"), "newsletter_id"),
            None if newsletter is None else newsletter.get("newsletter_id"),
        ),
    ]
    campaign = resolve_campaign(ctx, metadata, native)
    contact = resolve_contact(ctx, metadata, address)
    sg_event_id = optional_str(obj, "sg_event_id", path)
    sg_message_id = optional_str(obj, "sg_message_id", path)
    event = required_str(obj, "event", path)
    if sg_event_id is not None:
        event_id = stable_event_id(Provider.SENDGRID, event, sg_event_id)
    else:
        # Legacy Marketing Campaigns events carry no sg_event_id: derive one from what they do.
        send_id = None if newsletter is None else newsletter.get("newsletter_send_id")
        event_id = stable_event_id(
            Provider.SENDGRID,
            event,
            address.value.lower(),
            occurred_at.isoformat(),
            sg_message_id or "",
            str(send_id or ""),
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
        if sg_message_id is None
        else Found(child(path, "sg_message_id"), sg_message_id),
        provider_event_id=sg_event_id,
    )
