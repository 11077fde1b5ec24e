"""Amazon SES notifications and event-publishing records, bare or in an SNS envelope -> events.

One event per recipient; SNS (un)subscription confirmations are returned, never events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    SnsMessageKind,
    SnsSubscription,
    as_object,
    child,
    item,
    json_type,
    optional_object,
    optional_str,
    parse_json,
    parse_timestamp,
    required_list,
    required_object,
    required_str,
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
    from datetime import datetime

ROOT: Final = "ses"
_CONFIGURATION_SET_TAG: Final = "ses:configuration-set"
_SUPPRESSED_BOUNCE_SUBTYPES: Final = frozenset({"Suppressed", "OnAccountSuppressionList"})
"""Permanent bounces SES generated itself because the address is on a suppression list."""
_B, _C = BounceClass, BounceCategory
_BOUNCE_LABELS: Final[Mapping[tuple[str, str | None], Label]] = MappingProxyType(
    {
        # General (or no subtype) is SES's "no specific reason": the recipient's answer decides,
        # a permanent bounce that says nothing more stays hard.
        ("Permanent", "General"): generic(_B.HARD, _C.BAD_MAILBOX),
        ("Permanent", None): generic(_B.HARD, _C.BAD_MAILBOX),
        ("Permanent", "NoEmail"): specific(_B.HARD, _C.BAD_MAILBOX),
        ("Permanent", "UnsubscribedRecipient"): specific(_B.HARD, _C.OTHER),
        ("Transient", "General"): generic(_B.SOFT, _C.OTHER, temporary=True),
        ("Transient", None): generic(_B.SOFT, _C.OTHER, temporary=True),
        ("Transient", "MailboxFull"): specific(_B.SOFT, _C.MAILBOX_FULL),
        ("Transient", "MessageTooLarge"): specific(_B.SOFT, _C.MAILBOX_FULL),
        ("Transient", "ContentRejected"): specific(_B.BLOCK, _C.CONTENT),
        ("Transient", "AttachmentRejected"): specific(_B.BLOCK, _C.CONTENT),
    }
)
"""(bounceType, bounceSubType) -> label. Other subtypes of a known type take these defaults:"""
_TYPE_DEFAULTS: Final[Mapping[str, Label]] = MappingProxyType(
    {
        "Permanent": specific(_B.HARD, _C.BAD_MAILBOX),
        "Transient": specific(_B.SOFT, _C.TRANSIENT),
        "Undetermined": generic(_B.SOFT, _C.OTHER),
    }
)
_NOT_SIGNALS: Final = MappingProxyType(
    {
        "Reject": "SES refused to send the message (e.g. a virus); no recipient was tried",
        "Rendering Failure": "the template failed to render; nothing was sent",
        "AmazonSnsSubscriptionSucceeded": "SES's notice that the SNS topic is set up",
    }
)


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one SES record maps: what happened, to which recipients, when."""

    event_type: EventType
    recipients: list[tuple[str, Any]]
    """(path, raw address) of each recipient concerned."""
    occurred_at: datetime
    id_parts: tuple[str, ...] = ()
    provider_event_id: str | None = None
    bounces: tuple[Bounce, ...] = ()
    """For bounces: each recipient's class and category, in the order of `recipients`."""


def normalize(payload: Any, ctx: Context) -> list[Outcome]:
    """The events of one SES record or SNS message; a confirmation for SNS control messages."""
    try:
        body = as_object(payload, ROOT)
        if "Type" in body and "TopicArn" in body:
            return _envelope(body, ctx)
        return _record(body, ROOT, ctx)
    except FieldError as exc:
        return [exc.rejection(None)]


def _envelope(envelope: Mapping[str, Any], ctx: Context) -> list[Outcome]:
    kind = required_str(envelope, "Type", ROOT)
    if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        timestamp = envelope.get("Timestamp")
        sns_kind: SnsMessageKind = (
            "SubscriptionConfirmation"
            if kind == "SubscriptionConfirmation"
            else "UnsubscribeConfirmation"
        )
        return [
            SnsSubscription(
                kind=sns_kind,
                message_id=required_str(envelope, "MessageId", ROOT),
                topic_arn=required_str(envelope, "TopicArn", ROOT),
                token=optional_str(envelope, "Token", ROOT),
                subscribe_url=optional_str(envelope, "SubscribeURL", ROOT),
                timestamp=None
                if timestamp is None
                else parse_timestamp(timestamp, child(ROOT, "Timestamp")),
            )
        ]
    if kind != "Notification":
        raise FieldError(child(ROOT, "Type"), f"unknown SNS message type {short(kind)}")
    path = child(ROOT, "Message")
    message = required_str(envelope, "Message", ROOT)
    if not message.startswith("{"):
        raise FieldError(path, "not an SES record: the SNS message is not a JSON object")
    return _record(as_object(parse_json(message, path), path), path, ctx)


def _record(record: Mapping[str, Any], path: str, ctx: Context) -> list[Outcome]:
    key = "eventType" if "eventType" in record else "notificationType"
    if key not in record:
        raise FieldError(
            child(path, "eventType"), "missing (an SES record has eventType or notificationType)"
        )
    kind = required_str(record, key, path)
    kind_path = child(path, key)
    if kind in _NOT_SIGNALS:
        return [Ignored(None, kind_path, f"{short(kind)}: {_NOT_SIGNALS[kind]}")]
    mail_path = child(path, "mail")
    mail = required_object(record, "mail", path)
    handler = _HANDLERS.get(kind)
    if handler is None:
        return [Ignored(None, kind_path, f"unknown record type {short(kind)}")]
    plan = handler(record, path, mail, mail_path)
    if isinstance(plan, Ignored):
        return [plan]
    message_id = required_str(mail, "messageId", mail_path)
    tags_path = child(mail_path, "tags")
    tags = optional_object(mail, "tags", mail_path)
    native = [
        Found(child(tags_path, _CONFIGURATION_SET_TAG), (tags or {}).get(_CONFIGURATION_SET_TAG))
    ]
    campaign = resolve_campaign(ctx, [(tags_path, tags)], native)
    destination = mail.get("destination")
    sole = (
        str(destination[0]).strip().lower()
        if isinstance(destination, list) and len(destination) == 1
        else None
    )
    outcomes: list[Outcome] = []
    for position, (address_path, raw_address) in enumerate(plan.recipients):
        bounce = plan.bounces[position] if plan.bounces else None
        try:
            address = Found(address_path, _address(raw_address, address_path))
            # Message tags describe the whole message: a contact tag names the contact only
            # when the message went to this one recipient.
            own = sole == address.value.lower()
            contact = resolve_contact(ctx, [(tags_path, tags if own else None)], address)
            event_id = stable_event_id(
                Provider.SES, message_id, kind, address.value.lower(), *plan.id_parts
            )
            outcomes.append(
                make_event(
                    ctx,
                    event_id=event_id,
                    event_type=plan.event_type,
                    bounce_class=None if bounce is None else bounce.bounce_class,
                    bounce_category=None if bounce is None else bounce.category,
                    campaign=campaign,
                    contact=contact,
                    address=address,
                    occurred_at=plan.occurred_at,
                    message_id=Found(child(mail_path, "messageId"), message_id),
                    provider_event_id=plan.provider_event_id,
                )
            )
        except FieldError as exc:
            outcomes.append(exc.rejection(None))
    return outcomes


def _address(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise FieldError(
            path, "missing" if raw is None else f"expected an address, got {json_type(raw)}"
        )
    return raw.strip()


def _listed(
    obj: Mapping[str, Any], key: str, path: str, address_key: str | None
) -> list[tuple[str, Any]]:
    """The recipients listed in `key`: strings, or objects with the address at `address_key`."""
    entries = required_list(obj, key, path)
    recipients: list[tuple[str, Any]] = []
    for index, entry in enumerate(entries):
        entry_path = item(child(path, key), index)
        if address_key is None:
            recipients.append((entry_path, entry))
        else:
            recipients.append(
                (child(entry_path, address_key), as_object(entry, entry_path).get(address_key))
            )
    return recipients


def _sole_recipient(mail: Mapping[str, Any], mail_path: str, kind: str) -> list[tuple[str, Any]]:
    recipients = _listed(mail, "destination", mail_path, None)
    if len(recipients) != 1:
        problem = f"{short(kind)} cannot be attributed to one of {len(recipients)} recipients"
        raise FieldError(child(mail_path, "destination"), problem)
    return recipients


def _time(obj: Mapping[str, Any], path: str) -> datetime:
    return parse_timestamp(obj.get("timestamp"), child(path, "timestamp"))


def _send(record: Mapping[str, Any], path: str, mail: Mapping[str, Any], mail_path: str) -> _Plan:
    del record, path  # a Send record says no more than its mail object
    recipients = _listed(mail, "destination", mail_path, None)
    return _Plan(EventType.SENT, recipients, _time(mail, mail_path))


def _delivery(
    record: Mapping[str, Any], path: str, mail: Mapping[str, Any], mail_path: str
) -> _Plan:
    del mail, mail_path
    delivery, section = required_object(record, "delivery", path), child(path, "delivery")
    recipients = _listed(delivery, "recipients", section, None)
    return _Plan(EventType.DELIVERED, recipients, _time(delivery, section))


def _delay(record: Mapping[str, Any], path: str, mail: Mapping[str, Any], mail_path: str) -> _Plan:
    del mail, mail_path
    delay, section = required_object(record, "deliveryDelay", path), child(path, "deliveryDelay")
    at = _time(delay, section)
    recipients = _listed(delay, "delayedRecipients", section, "emailAddress")
    return _Plan(EventType.DEFERRED, recipients, at, (at.isoformat(),))


def _open(record: Mapping[str, Any], path: str, mail: Mapping[str, Any], mail_path: str) -> _Plan:
    opened = required_object(record, "open", path)
    at = _time(opened, child(path, "open"))
    recipients = _sole_recipient(mail, mail_path, "Open")
    return _Plan(EventType.OPEN, recipients, at, (at.isoformat(),))


def _click(record: Mapping[str, Any], path: str, mail: Mapping[str, Any], mail_path: str) -> _Plan:
    click, section = required_object(record, "click", path), child(path, "click")
    at = _time(click, section)
    link = optional_str(click, "link", section) or ""
    recipients = _sole_recipient(mail, mail_path, "Click")
    return _Plan(EventType.CLICK, recipients, at, (at.isoformat(), link))


def _bounce_label(bounce: Mapping[str, Any], path: str) -> Label | None:
    """The label of SES's bounce type and subtype; None for a send to a suppressed address."""
    bounce_type = required_str(bounce, "bounceType", path)
    subtype = optional_str(bounce, "bounceSubType", path)
    if bounce_type == "Permanent" and subtype in _SUPPRESSED_BOUNCE_SUBTYPES:
        return None
    label = _BOUNCE_LABELS.get((bounce_type, subtype)) or _TYPE_DEFAULTS.get(bounce_type)
    if label is None:
        raise FieldError(child(path, "bounceType"), f"unknown bounce type {short(bounce_type)}")
    return label


def _recipient_bounce(label: Label, entry: Any) -> Bounce:
    """One bounced recipient's class: its own DSN status and diagnostic code, when SES has them."""
    fields = entry if isinstance(entry, dict) else {}
    return resolve_text(
        label,
        joined_text(fields.get("diagnosticCode")),
        enhanced_code=joined_text(fields.get("status")),
    )


def _bounce(
    record: Mapping[str, Any], record_path: str, mail: Mapping[str, Any], mail_path: str
) -> _Plan:
    del mail, mail_path
    bounce, path = required_object(record, "bounce", record_path), child(record_path, "bounce")
    label = _bounce_label(bounce, path)
    at = _time(bounce, path)
    feedback_id = optional_str(bounce, "feedbackId", path)
    recipients = _listed(bounce, "bouncedRecipients", path, "emailAddress")
    id_parts = (feedback_id or at.isoformat(),)
    if label is None:
        return _Plan(EventType.DROPPED_SUPPRESSED, recipients, at, id_parts, feedback_id)
    entries = required_list(bounce, "bouncedRecipients", path)
    bounces = tuple(_recipient_bounce(label, entry) for entry in entries)
    return _Plan(EventType.BOUNCE, recipients, at, id_parts, feedback_id, bounces)


def _complaint(
    record: Mapping[str, Any], record_path: str, mail: Mapping[str, Any], mail_path: str
) -> _Plan | Ignored:
    del mail, mail_path
    complaint = required_object(record, "complaint", record_path)
    path = child(record_path, "complaint")
    feedback_type = optional_str(complaint, "complaintFeedbackType", path)
    if feedback_type is not None and feedback_type.casefold() == "not-spam":
        return Ignored(
            None, child(path, "complaintFeedbackType"), "a not-spam report is not a complaint"
        )
    suppressed = optional_str(complaint, "complaintSubType", path) == "OnAccountSuppressionList"
    event_type = EventType.DROPPED_SUPPRESSED if suppressed else EventType.COMPLAINT
    at = _time(complaint, path)
    feedback_id = optional_str(complaint, "feedbackId", path)
    recipients = _listed(complaint, "complainedRecipients", path, "emailAddress")
    return _Plan(event_type, recipients, at, (feedback_id or at.isoformat(),), feedback_id)


def _topic_statuses(preferences: Mapping[str, Any] | None) -> dict[str, Any]:
    """Topic name -> subscription status of a preferences object; malformed entries skipped."""
    statuses = None if preferences is None else preferences.get("topicSubscriptionStatus")
    if not isinstance(statuses, list):
        return {}
    return {
        status["topicName"]: status.get("subscriptionStatus")
        for status in statuses
        if isinstance(status, dict) and isinstance(status.get("topicName"), str)
    }


def _opted_out(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> bool:
    """Whether the change opts the contact out of all mail or of a topic it was not out of."""
    was_out_of_all = old is not None and old.get("unsubscribeAll") is True
    if new.get("unsubscribeAll") is True and not was_out_of_all:
        return True
    before = _topic_statuses(old)
    return any(
        status == "OptOut" and before.get(topic) != "OptOut"
        for topic, status in _topic_statuses(new).items()
    )


def _subscription(
    record: Mapping[str, Any], record_path: str, mail: Mapping[str, Any], mail_path: str
) -> _Plan | Ignored:
    subscription = required_object(record, "subscription", record_path)
    path = child(record_path, "subscription")
    new = required_object(subscription, "newTopicPreferences", path)
    old = optional_object(subscription, "oldTopicPreferences", path)
    if not _opted_out(new, old):
        return Ignored(
            None, child(path, "newTopicPreferences"), "no new opt-out (a resubscribe or no change)"
        )
    at = _time(subscription, path)
    recipients = _sole_recipient(mail, mail_path, "Subscription")
    return _Plan(EventType.UNSUBSCRIBE, recipients, at, (at.isoformat(),))


_Handler = Callable[[Mapping[str, Any], str, Mapping[str, Any], str], _Plan | Ignored]
_HANDLERS: Final[Mapping[str, _Handler]] = MappingProxyType(
    {
        "Send": _send,
        "Delivery": _delivery,
        "DeliveryDelay": _delay,
        "Bounce": _bounce,
        "Complaint": _complaint,
        "Open": _open,
        "Click": _click,
        "Subscription": _subscription,
    }
)
"""How each record type (classic notificationType or published eventType) maps."""
