"""SparkPost webhook batches (`[{"msys": {"<class>_event": {...}}}]`) -> delivery events.

Numbers often arrive as strings ("bounce_class": "10"), timestamps as epoch strings or ISO.
"""

from __future__ import annotations

import re
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
_BOUNCES: Final = frozenset({"bounce", "out_of_band", "inband", "outofband"})
"""Bounce event types: SparkPost's, and Momentum's names for the same in-band and out-of-band
bounces (Momentum, SparkPost's on-premises MTA, posts the same webhook format)."""
_REJECTIONS: Final = frozenset({"policy_rejection", "generation_rejection"})
"""SparkPost refused to send: a suppressed recipient when the reason says so, else policy."""

# SparkPost's bounce classification codes and their category. Admin (25 policy failure,
# 80 subscribe request) is no verdict of the receiver on the address: None, ignored.
# Undetermined (1) and Generic Bounce (40) are no verdict either: the SMTP answer decides.
_B, _C = BounceClass, BounceCategory
_BOUNCE_CLASSES: Final[Mapping[int, Label | None]] = MappingProxyType(
    {
        1: generic(_B.SOFT, _C.OTHER),  # Undetermined
        10: specific(_B.HARD, _C.BAD_MAILBOX),  # Invalid Recipient
        20: specific(_B.SOFT, _C.TRANSIENT),  # Soft Bounce
        21: specific(_B.SOFT, _C.ROUTING),  # DNS Failure
        22: specific(_B.SOFT, _C.MAILBOX_FULL),  # Mailbox Full
        23: specific(_B.SOFT, _C.MAILBOX_FULL),  # Too Large
        24: specific(_B.SOFT, _C.TRANSIENT),  # Timeout
        25: None,  # Admin Failure
        30: specific(_B.HARD, _C.BAD_MAILBOX),  # Generic Bounce: No RCPT
        40: generic(_B.SOFT, _C.OTHER),  # Generic Bounce
        50: specific(_B.BLOCK, _C.POLICY),  # Mail Block
        51: specific(_B.BLOCK, _C.SPAM_BLOCK),  # Spam Block
        52: specific(_B.BLOCK, _C.CONTENT),  # Spam Content
        53: specific(_B.BLOCK, _C.CONTENT),  # Prohibited Attachment
        54: specific(_B.BLOCK, _C.POLICY),  # Relaying Denied
        60: specific(_B.SOFT, _C.OTHER),  # Auto-Reply
        70: specific(_B.SOFT, _C.TRANSIENT),  # Transient Failure
        80: None,  # Subscribe
        90: specific(_B.HARD, _C.OTHER),  # Unsubscribe
        100: specific(_B.SOFT, _C.OTHER),  # Challenge-Response
    }
)
_ASCII_DIGITS: Final = re.compile(r"[0-9]{1,4}")
"""`str.isdigit` and `int` also take other scripts' digits (Arabic-Indic 1 0 would be class 10)."""


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


def _bounce_label(event: Mapping[str, Any], path: str) -> Label | None:
    field = child(path, "bounce_class")
    text = scalar_text(required(event, "bounce_class", path), field)
    if not _ASCII_DIGITS.fullmatch(text) or int(text) not in _BOUNCE_CLASSES:
        raise FieldError(field, f"unknown bounce class {short(text)}")
    return _BOUNCE_CLASSES[int(text)]


def _bounce(
    event: Mapping[str, Any], path: str, index: int | None
) -> tuple[EventType, Bounce | None] | Ignored:
    label = _bounce_label(event, path)
    if label is not None:
        # raw_reason is the receiver's answer verbatim; reason is the same, addresses redacted.
        raw_reason, reason = event.get("raw_reason"), event.get("reason")
        text = joined_text(raw_reason) or joined_text(reason)
        error_code = event.get("error_code")
        code = error_code if isinstance(error_code, str | int) else None
        return EventType.BOUNCE, resolve_text(label, text, reply_code=code)
    if _suppressed(event, path):
        return EventType.DROPPED_SUPPRESSED, None
    problem = "an admin-class bounce (SparkPost policy) is not the receiver's verdict"
    return Ignored(index, child(path, "bounce_class"), problem)


def _classify(
    event: Mapping[str, Any], path: str, index: int | None
) -> tuple[EventType, Bounce | None] | Ignored:
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
    event_type, bounce = classified
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
        bounce_class=None if bounce is None else bounce.bounce_class,
        bounce_category=None if bounce is None else bounce.category,
        campaign=campaign,
        contact=contact,
        address=address,
        occurred_at=occurred_at,
        message_id=None if message_id is None else Found(child(path, "message_id"), message_id),
        provider_event_id=event_id_text,
    )
