"""Postmark webhooks (one record per post, keyed by `RecordType`) -> normalized delivery events."""

from __future__ import annotations

from dataclasses import dataclass
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
    required,
    required_str,
    scalar_text,
    short,
    stable_event_id,
)
from processor.adapters.providers.bounces import (
    Bounce,
    Label,
    generic,
    joined_text,
    resolve_text,
    specific,
)
from schemas.events import BounceCategory, BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT: Final = "postmark"

# Postmark's bounce types: name -> (TypeCode, outcome). The outcome is a bounce label, an event
# type for the two that are no bounce at all, or None for those that say nothing about the
# address or the sender (auto-replies, challenges, the sender's own errors): ignored.
_B, _C = BounceClass, BounceCategory
_BOUNCE_TYPES: Final[Mapping[str, tuple[int, Label | EventType | None]]] = MappingProxyType(
    {
        "HardBounce": (1, specific(_B.HARD, _C.BAD_MAILBOX)),
        "BadEmailAddress": (100000, specific(_B.HARD, _C.BAD_MAILBOX)),
        "Transient": (2, specific(_B.SOFT, _C.TRANSIENT)),
        "DnsError": (256, specific(_B.SOFT, _C.ROUTING)),
        "Unknown": (2048, generic(_B.SOFT, _C.OTHER)),  # Details (the SMTP answer) decides
        "SoftBounce": (4096, specific(_B.SOFT, _C.TRANSIENT)),
        # classified as spam or blocked by the user
        "SpamNotification": (512, specific(_B.BLOCK, _C.SPAM_BLOCK)),
        "Blocked": (100006, specific(_B.BLOCK, _C.POLICY)),  # ISP block for content or blocklisting
        "DMARCPolicy": (100009, specific(_B.BLOCK, _C.AUTH_FAILURE)),
        "SpamComplaint": (100001, EventType.COMPLAINT),
        "Unsubscribe": (16, EventType.UNSUBSCRIBE),  # an unsubscribe or remove request
        "Subscribe": (32, None),
        "AutoResponder": (64, None),
        "AddressChange": (128, None),
        "OpenRelayTest": (1024, None),
        "VirusNotification": (8192, None),
        "ChallengeVerification": (16384, None),
        "ManuallyDeactivated": (100002, None),
        "Unconfirmed": (100003, None),
        "SMTPApiError": (100007, None),
        "InboundError": (100008, None),
        "TemplateRenderingFailed": (100010, None),
    }
)
_BOUNCE_TYPE_BY_CODE: Final = MappingProxyType(
    {code: name for name, (code, _) in _BOUNCE_TYPES.items()}
)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one record maps: what happened, to whom (which field), when (which field)."""

    event_type: EventType
    bounce: Bounce | None
    address_key: str
    time_key: str
    id_keys: tuple[str, ...]


def normalize(payload: Any, ctx: Context) -> list[Outcome]:
    """The record(s) of a Postmark webhook post (one object; an array is accepted too)."""
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


def _bounce_plan(obj: Mapping[str, Any], path: str, index: int | None) -> _Plan | Ignored:
    name = optional_str(obj, "Type", path)
    if name is None:
        code = obj.get("TypeCode")
        name = _BOUNCE_TYPE_BY_CODE.get(code) if type(code) is int else None
        if name is None:
            raise FieldError(
                child(path, "Type"), "missing, and TypeCode is not a known bounce type"
            )
    if name not in _BOUNCE_TYPES:
        raise FieldError(child(path, "Type"), f"unknown bounce type {short(name)}")
    outcome = _BOUNCE_TYPES[name][1]
    if outcome is None:
        return Ignored(
            index, child(path, "Type"), f"bounce type {short(name)} is not a delivery signal"
        )
    if isinstance(outcome, Label):
        # Details holds the receiving server's answer; Description only explains the type.
        bounce = resolve_text(outcome, joined_text(obj.get("Details")))
        return _Plan(EventType.BOUNCE, bounce, "Email", "BouncedAt", ("ID",))
    return _Plan(outcome, None, "Email", "BouncedAt", ("ID",))


def _subscription_plan(obj: Mapping[str, Any], path: str, index: int | None) -> _Plan | Ignored:
    suppress = required(obj, "SuppressSending", path)
    if suppress is False:
        return Ignored(
            index, child(path, "SuppressSending"), "a reactivation is not a reputation signal"
        )
    if suppress is not True:
        raise FieldError(child(path, "SuppressSending"), "expected true or false")
    reason = required_str(obj, "SuppressionReason", path)
    origin = optional_str(obj, "Origin", path)
    if reason != "ManualSuppression":
        # HardBounce and SpamComplaint suppressions repeat what the Bounce and SpamComplaint
        # webhooks already reported; counting them again would be a second, wrong event.
        problem = f"suppression for {short(reason)} is reported by its own webhook"
        return Ignored(index, child(path, "SuppressionReason"), problem)
    if origin != "Recipient":
        problem = (
            f"a suppression made by {short(origin or 'nobody')} is not the recipient's opt-out"
        )
        return Ignored(index, child(path, "Origin"), problem)
    return _Plan(EventType.UNSUBSCRIBE, None, "Recipient", "ChangedAt", ("ChangedAt",))


_SIMPLE_PLANS: Final = MappingProxyType(
    {
        "Delivery": _Plan(EventType.DELIVERED, None, "Recipient", "DeliveredAt", ()),
        # Postmark reports a complaint in the shape of a bounce, its time in BouncedAt.
        "SpamComplaint": _Plan(EventType.COMPLAINT, None, "Email", "BouncedAt", ("ID",)),
        "Open": _Plan(EventType.OPEN, None, "Recipient", "ReceivedAt", ("ReceivedAt",)),
        "Click": _Plan(
            EventType.CLICK, None, "Recipient", "ReceivedAt", ("ReceivedAt", "OriginalLink")
        ),
    }
)


def _plan(obj: Mapping[str, Any], path: str, index: int | None) -> _Plan | Ignored:
    record_type = required_str(obj, "RecordType", path)
    if record_type in _SIMPLE_PLANS:
        return _SIMPLE_PLANS[record_type]
    if record_type == "Bounce":
        return _bounce_plan(obj, path, index)
    if record_type == "SubscriptionChange":
        return _subscription_plan(obj, path, index)
    return Ignored(index, child(path, "RecordType"), f"unknown record type {short(record_type)}")


def _record(raw: Any, path: str, index: int | None, ctx: Context) -> Outcome:
    obj = as_object(raw, path)
    plan = _plan(obj, path, index)
    if isinstance(plan, Ignored):
        return plan
    address = Found(child(path, plan.address_key), required_str(obj, plan.address_key, path))
    occurred_at = parse_timestamp(obj.get(plan.time_key), child(path, plan.time_key))
    metadata = [(child(path, "Metadata"), optional_object(obj, "Metadata", path))]
    native = [
        Found(child(path, "Tag"), obj.get("Tag")),
        Found(child(path, "MessageStream"), obj.get("MessageStream")),
    ]
    campaign = resolve_campaign(ctx, metadata, native)
    contact = resolve_contact(ctx, metadata, address)
    message_id = required_str(obj, "MessageID", path)
    # Parts that tell repeated records of one message apart (bounce ID, open/click time).
    extra = [
        "" if obj.get(key) is None else scalar_text(obj[key], child(path, key))
        for key in plan.id_keys
    ]
    record_type = required_str(obj, "RecordType", path)
    event_id = stable_event_id(
        Provider.POSTMARK, message_id, record_type, address.value.lower(), *extra
    )
    bounce_id = obj.get("ID")
    return make_event(
        ctx,
        event_id=event_id,
        event_type=plan.event_type,
        bounce_class=None if plan.bounce is None else plan.bounce.bounce_class,
        bounce_category=None if plan.bounce is None else plan.bounce.category,
        campaign=campaign,
        contact=contact,
        address=address,
        occurred_at=occurred_at,
        message_id=Found(child(path, "MessageID"), message_id),
        provider_event_id=None if bounce_id is None else scalar_text(bounce_id, child(path, "ID")),
    )
