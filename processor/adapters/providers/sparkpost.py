"""SparkPost webhook batches (`[{"msys": {"<class>_event": {...}}}]`) -> delivery events.

Numbers often arrive as strings ("bounce_class": "10"), timestamps as epoch strings or ISO.
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
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Mapping

ROOT: Final = "sparkpost"

_EVENT_TYPES: Final = MappingProxyType(
    {
        "injection": EventType.SENT,
        "delivery": EventType.DELIVERED,
        "delay": EventType.DEFERRED,
        "spam_complaint": EventType.COMPLAINT,
        "open": EventType.OPEN,
        "initial_open": EventType.OPEN,
        "amp_open": EventType.OPEN,
        "amp_initial_open": EventType.OPEN,
        "click": EventType.CLICK,
        "amp_click": EventType.CLICK,
        "list_unsubscribe": EventType.UNSUBSCRIBE,
        "link_unsubscribe": EventType.UNSUBSCRIBE,
    }
)
_BOUNCES: Final = frozenset({"bounce", "out_of_band"})
_REJECTIONS: Final = frozenset({"policy_rejection", "generation_rejection"})
"""SparkPost refused to send: a suppressed recipient when the reason says so, else policy."""

# SparkPost's bounce classification codes and their category. Admin (25 policy failure,
# 80 subscribe request) is no verdict of the receiver on the address: None, ignored.
_BOUNCE_CLASSES: Final = MappingProxyType(
    {
        1: BounceClass.SOFT,  # Undetermined
        10: BounceClass.HARD,  # Invalid Recipient
        20: BounceClass.SOFT,  # Soft Bounce
        21: BounceClass.SOFT,  # DNS Failure
        22: BounceClass.SOFT,  # Mailbox Full
        23: BounceClass.SOFT,  # Too Large
        24: BounceClass.SOFT,  # Timeout
        25: None,  # Admin Failure
        30: BounceClass.HARD,  # Generic Bounce: No RCPT
        40: BounceClass.SOFT,  # Generic Bounce
        50: BounceClass.BLOCK,  # Mail Block
        51: BounceClass.BLOCK,  # Spam Block
        52: BounceClass.BLOCK,  # Spam Content
        53: BounceClass.BLOCK,  # Prohibited Attachment
        54: BounceClass.BLOCK,  # Relaying Denied
        60: BounceClass.SOFT,  # Auto-Reply
        70: BounceClass.SOFT,  # Transient Failure
        80: None,  # Subscribe
        90: BounceClass.HARD,  # Unsubscribe
        100: BounceClass.SOFT,  # Challenge-Response
    }
)


def normalize(payload: Any, ctx: Context) -> list[Outcome]:
    """Every event of a SparkPost webhook batch, in order."""
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


def _suppressed(event: Mapping[str, Any], path: str) -> bool:
    reasons = (optional_str(event, "reason", path), optional_str(event, "raw_reason", path))
    return any(reason is not None and "suppress" in reason.casefold() for reason in reasons)


def _not_spam(event: Mapping[str, Any], path: str) -> bool:
    return (optional_str(event, "fbtype", path) or "").casefold() == "not-spam"


def _bounce_class(event: Mapping[str, Any], path: str) -> BounceClass | None:
    field = child(path, "bounce_class")
    text = scalar_text(required(event, "bounce_class", path), field)
    if not text.isdigit() or int(text) not in _BOUNCE_CLASSES:
        raise FieldError(field, f"unknown bounce class {short(text)}")
    return _BOUNCE_CLASSES[int(text)]


def _bounce(
    event: Mapping[str, Any], path: str, index: int | None
) -> tuple[EventType, BounceClass | None] | Ignored:
    bounce_class = _bounce_class(event, path)
    if bounce_class is not None:
        return EventType.BOUNCE, bounce_class
    if _suppressed(event, path):
        return EventType.DROPPED_SUPPRESSED, None
    problem = "an admin-class bounce (SparkPost policy) is not the receiver's verdict"
    return Ignored(index, child(path, "bounce_class"), problem)


def _classify(
    event: Mapping[str, Any], path: str, index: int | None
) -> tuple[EventType, BounceClass | None] | Ignored:
    kind = required_str(event, "type", path)
    if kind in _BOUNCES:
        return _bounce(event, path, index)
    if kind in _REJECTIONS:
        if _suppressed(event, path):
            return EventType.DROPPED_SUPPRESSED, None
        return Ignored(index, child(path, "reason"), f"{short(kind)} not for a suppressed address")
    if kind == "spam_complaint" and _not_spam(event, path):
        return Ignored(index, child(path, "fbtype"), "a not-spam report is not a complaint")
    if kind not in _EVENT_TYPES:
        problem = f"event type {short(kind)} is not a delivery signal"
        return Ignored(index, child(path, "type"), problem)
    return _EVENT_TYPES[kind], None


def _unwrap(raw: Any, path: str, index: int | None) -> tuple[Mapping[str, Any], str] | Ignored:
    msys = as_object(required(as_object(raw, path), "msys", path), child(path, "msys"))
    msys_path = child(path, "msys")
    if not msys:
        return Ignored(index, msys_path, "empty: SparkPost's webhook test batch")
    if len(msys) != 1:
        raise FieldError(msys_path, f"expected one event class, got {len(msys)}")
    event_class = next(iter(msys))
    event_path = child(msys_path, event_class)
    return as_object(msys[event_class], event_path), event_path


def _record(raw: Any, item_path: str, index: int | None, ctx: Context) -> Outcome:
    unwrapped = _unwrap(raw, item_path, index)
    if isinstance(unwrapped, Ignored):
        return unwrapped
    event, path = unwrapped
    classified = _classify(event, path, index)
    if isinstance(classified, Ignored):
        return classified
    event_type, bounce_class = classified
    address_key = "rcpt_to" if "rcpt_to" in event else "raw_rcpt_to"
    address = Found(child(path, address_key), required_str(event, address_key, path))
    occurred_at = parse_timestamp(event.get("timestamp"), child(path, "timestamp"))
    metadata = [(child(path, "rcpt_meta"), optional_object(event, "rcpt_meta", path))]
    native = [Found(child(path, "campaign_id"), event.get("campaign_id"))]
    campaign = resolve_campaign(ctx, metadata, native)
    contact = resolve_contact(ctx, metadata, address)
    kind = required_str(event, "type", path)
    sparkpost_id = event.get("event_id")
    event_id_text = (
        None if sparkpost_id is None else scalar_text(sparkpost_id, child(path, "event_id"))
    )
    message_id = optional_str(event, "message_id", path)
    if event_id_text is not None:
        event_id = stable_event_id(Provider.SPARKPOST, kind, event_id_text)
    else:
        event_id = stable_event_id(
            Provider.SPARKPOST,
            kind,
            message_id or "",
            address.value.lower(),
            occurred_at.isoformat(),
        )
    return make_event(
        ctx,
        event_id=event_id,
        event_type=event_type,
        bounce_class=bounce_class,
        campaign=campaign,
        contact=contact,
        address=address,
        occurred_at=occurred_at,
        message_id=None if message_id is None else Found(child(path, "message_id"), message_id),
        provider_event_id=event_id_text,
    )
