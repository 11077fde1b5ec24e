"""KumoMTA log records (one JSON object or an array, as its log hooks post them) -> events.

Tenant and campaign come from the record's `meta` (logger-configured meta fields) or its queue
name `campaign:tenant@domain`; the bounce class from `bounce_classification` when KumoMTA's
classifier named one, else from the SMTP answer in `response`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NamedTuple

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
    item,
    json_type,
    optional_object,
    optional_str,
    parse_timestamp,
    required_str,
    short,
    stable_event_id,
)
from processor.adapters.providers.bounces import Bounce, Label, generic, resolve_text, specific
from schemas.events import BounceCategory, BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

ROOT: Final = "kumomta"
_B, _C = BounceClass, BounceCategory

_EVENT_TYPES: Final = MappingProxyType(
    {
        "Reception": EventType.SENT,
        "Delivery": EventType.DELIVERED,
        "TransientFailure": EventType.DEFERRED,
    }
)
_NOT_SIGNALS: Final = MappingProxyType(
    {
        "AdminBounce": "an operator's bounce (/api/admin/bounce) is no verdict on the recipient",
        "Rejection": "KumoMTA refused an incoming SMTP command; nothing was sent",
        "AdminRebind": "a message moved between queues",
        "DeferredInjectionRebind": "a message moved between queues",
        "Delayed": "a message waits in the scheduled queue",
        "XferOut": "a message moved to another KumoMTA node",
        "XferIn": "a message moved from another KumoMTA node",
    }
)
_BOUNCE_LABELS: Final[Mapping[str, Label]] = MappingProxyType(
    {
        "InvalidRecipient": specific(_B.HARD, _C.BAD_MAILBOX),
        "BadDomain": specific(_B.HARD, _C.BAD_DOMAIN),
        "InactiveMailbox": specific(_B.HARD, _C.INACTIVE_MAILBOX),
        "InvalidSender": specific(_B.BLOCK, _C.POLICY),
        "QuotaIssues": specific(_B.SOFT, _C.MAILBOX_FULL),
        "NoAnswerFromHost": specific(_B.SOFT, _C.TRANSIENT),
        "BadConnection": specific(_B.SOFT, _C.TRANSIENT),
        "DNSFailure": specific(_B.SOFT, _C.ROUTING),
        "RoutingErrors": specific(_B.SOFT, _C.ROUTING),
        "RelayingDenied": specific(_B.SOFT, _C.ROUTING),
        "TransientFailure": specific(_B.SOFT, _C.TRANSIENT),
        "MessageExpired": specific(_B.SOFT, _C.TRANSIENT),
        "TooManyRecipients": specific(_B.SOFT, _C.TRANSIENT),
        "ProtocolErrors": specific(_B.SOFT, _C.OTHER),
        "AuthenticationFailed": specific(_B.BLOCK, _C.AUTH_FAILURE),
        "PolicyRelated": specific(_B.BLOCK, _C.POLICY),
        "SpamBlock": specific(_B.BLOCK, _C.SPAM_BLOCK),
        "SpamContent": specific(_B.BLOCK, _C.CONTENT),
        "ContentRelated": specific(_B.BLOCK, _C.CONTENT),
        "VirusRelated": specific(_B.BLOCK, _C.CONTENT),
        "SecurityIssue": specific(_B.BLOCK, _C.POLICY),
    }
)
"""KumoMTA's predefined bounce classifications. `Uncategorized`, a missing one or an operator's
own name: the SMTP answer decides."""
_UNCLASSIFIED: Final = generic(_B.SOFT, _C.OTHER)
_EXPIRED: Final = generic(_B.SOFT, _C.TRANSIENT, temporary=True)
"""Expiration: retried until the queue lifetime ran out after temporary failures; never hard."""
_COMPLAINT_TYPES: Final = frozenset({"abuse", "fraud"})


class _Queue(NamedTuple):
    """The parts of a KumoMTA queue name (`campaign:tenant@domain!routing_domain`)."""

    campaign: str | None
    tenant: str | None


def parse_queue(name: str) -> _Queue:
    """Campaign and tenant of a queue name; both None for names without `@` (`null`, hooks)."""
    head, at, _domain = name.rpartition("@")
    if not at:
        return _Queue(None, None)
    campaign, colon, tenant = head.partition(":")
    if not colon:
        return _Queue(None, head or None)
    return _Queue(campaign or None, tenant or None)


def normalize(payload: Any, ctx: Context) -> list[Outcome]:
    """Every log record of a KumoMTA log hook post (one record, or a batch array), in order."""
    try:
        records = batch_items(payload, ROOT)
    except FieldError as exc:
        return [exc.rejection(None)]
    outcomes: list[Outcome] = []
    for index, path, raw in records:
        try:
            outcomes += _record(as_object(raw, path), path, index, ctx)
        except FieldError as exc:
            outcomes.append(exc.rejection(index))
    return outcomes


def _answer_bounce(record: Mapping[str, Any], label: Label) -> Bounce:
    response = record.get("response")
    fields = response if isinstance(response, dict) else {}
    enhanced = fields.get("enhanced_code")
    code_text = None
    if isinstance(enhanced, dict):
        parts = [enhanced.get(key) for key in ("class", "subject", "detail")]
        if all(type(part) is int for part in parts):
            code_text = ".".join(str(part) for part in parts)
    content = fields.get("content")
    code = fields.get("code")
    return resolve_text(
        label,
        content if isinstance(content, str) else None,
        reply_code=code if type(code) is int else None,
        enhanced_code=code_text,
    )


def _bounce(record: Mapping[str, Any], kind: str) -> Bounce:
    if kind == "Expiration":
        return _answer_bounce(record, _EXPIRED)
    name = record.get("bounce_classification")
    label = _BOUNCE_LABELS.get(name, _UNCLASSIFIED) if isinstance(name, str) else _UNCLASSIFIED
    return _answer_bounce(record, label)


def _check_tenant(tenant: Found, ctx: Context) -> None:
    """A record names its KumoMTA tenant: it must be the tenant the request authenticated as."""
    if tenant.value is not None and tenant.value != ctx.tenant_id:
        problem = f"KumoMTA tenant {short(str(tenant.value))} is not this credential's tenant"
        raise FieldError(tenant.path, problem)


def _recipients(record: Mapping[str, Any], path: str) -> list[Found]:
    """The envelope recipient(s): a string, or an array for a multi-recipient record."""
    value = record.get("recipient")
    field = child(path, "recipient")
    if isinstance(value, list) and value:
        return [
            Found(item(field, i), _address(entry, item(field, i))) for i, entry in enumerate(value)
        ]
    return [Found(field, _address(value, field))]


def _address(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(
            path, "missing" if value is None else f"expected an address, got {json_type(value)}"
        )
    return value.strip().strip("<>")


def _time(record: Mapping[str, Any], path: str) -> datetime:
    if record.get("event_time") is not None:
        return parse_timestamp(record["event_time"], child(path, "event_time"))
    return parse_timestamp(record.get("timestamp"), child(path, "timestamp"))


def _record(record: Mapping[str, Any], path: str, index: int | None, ctx: Context) -> list[Outcome]:
    kind = required_str(record, "type", path)
    if kind in _NOT_SIGNALS:
        return [Ignored(index, child(path, "type"), f"{short(kind)}: {_NOT_SIGNALS[kind]}")]
    if kind == "Feedback":
        return [_feedback(record, path, index, ctx)]
    bounce: Bounce | None = None
    if kind in ("Bounce", "OOB", "Expiration"):
        event_type, bounce = EventType.BOUNCE, _bounce(record, kind)
    elif kind in _EVENT_TYPES:
        if kind == "Reception" and record.get("reception_protocol") == "LogRecord":
            problem = "a log record KumoMTA captured for its own log hook"
            return [Ignored(index, child(path, "reception_protocol"), problem)]
        event_type = _EVENT_TYPES[kind]
    else:
        return [Ignored(index, child(path, "type"), f"unknown record type {short(kind)}")]
    meta = optional_object(record, "meta", path)
    headers = optional_object(record, "headers", path)
    queue_name = optional_str(record, "queue", path)
    queue = parse_queue(queue_name or "")
    meta_path = child(path, "meta")
    tenant_in_meta = None if meta is None else meta.get("tenant")
    _check_tenant(
        Found(child(meta_path, "tenant"), tenant_in_meta)
        if isinstance(tenant_in_meta, str) and tenant_in_meta
        else Found(child(path, "queue"), queue.tenant),
        ctx,
    )
    metadata = [(meta_path, meta), (child(path, "headers"), headers)]
    native = [
        Found(child(meta_path, "campaign"), None if meta is None else meta.get("campaign")),
        Found(child(path, "queue"), queue.campaign),
    ]
    campaign = resolve_campaign(ctx, metadata, native)
    spool_id = required_str(record, "id", path)
    occurred_at = _time(record, path)
    attempts = record.get("num_attempts")
    outcomes: list[Outcome] = []
    for address in _recipients(record, path):
        contact = resolve_contact(ctx, metadata, address)
        event_id = stable_event_id(
            Provider.KUMOMTA,
            kind,
            spool_id,
            str(address.value).lower(),
            occurred_at.isoformat(),
            str(attempts if type(attempts) is int else ""),
        )
        outcomes.append(
            make_event(
                ctx,
                event_id=event_id,
                event_type=event_type,
                bounce_class=None if bounce is None else bounce.bounce_class,
                bounce_category=None if bounce is None else bounce.category,
                campaign=campaign,
                contact=contact,
                address=address,
                occurred_at=occurred_at,
                message_id=Found(child(path, "id"), spool_id),
                provider_event_id=None,
            )
        )
    return outcomes


def _original_recipient(report: Mapping[str, Any], path: str) -> Found:
    """Who complained: the decoded X-KumoRef trace, else the report's sole original recipient."""
    trace = optional_object(report, "supplemental_trace", path)
    if trace is not None and isinstance(trace.get("recipient"), str):
        return Found(child(child(path, "supplemental_trace"), "recipient"), trace["recipient"])
    for key in ("original_rcpto_to", "original_rcpt_to"):  # KumoMTA spells it the first way
        value = report.get(key)
        if isinstance(value, list) and len(value) == 1:
            field = item(child(path, key), 0)
            return Found(field, _address(value[0], field))
    raise FieldError(
        child(path, "supplemental_trace"),
        "missing: the report names no original recipient (enable KumoMTA's trace headers)",
    )


def _feedback(record: Mapping[str, Any], path: str, index: int | None, ctx: Context) -> Outcome:
    report_path = child(path, "feedback_report")
    report = as_object(record.get("feedback_report"), report_path)
    feedback_type = (optional_str(report, "feedback_type", report_path) or "").casefold()
    if feedback_type not in _COMPLAINT_TYPES:
        problem = f"feedback type {short(feedback_type)} is not a complaint"
        return Ignored(index, child(report_path, "feedback_type"), problem)
    address = _original_recipient(report, report_path)
    # The record's own queue, meta and recipient are those of the report message; the original
    # message's tenant and campaign travel in its trace header (include_meta_names).
    trace_path = child(report_path, "supplemental_trace")
    trace = optional_object(report, "supplemental_trace", report_path)
    tenant = None if trace is None else trace.get("tenant")
    _check_tenant(
        Found(child(trace_path, "tenant"), tenant if isinstance(tenant, str) else None), ctx
    )
    metadata = [(trace_path, trace)]
    native = [
        Found(child(trace_path, "campaign"), None if trace is None else trace.get("campaign"))
    ]
    campaign = resolve_campaign(ctx, metadata, native)
    contact = resolve_contact(ctx, metadata, address)
    spool_id = required_str(record, "id", path)
    occurred_at = _time(record, path)
    return make_event(
        ctx,
        event_id=stable_event_id(
            Provider.KUMOMTA, "Feedback", spool_id, str(address.value).lower()
        ),
        event_type=EventType.COMPLAINT,
        bounce_class=None,
        campaign=campaign,
        contact=contact,
        address=Found(address.path, str(address.value).strip().strip("<>")),
        occurred_at=occurred_at,
        message_id=Found(child(path, "id"), spool_id),
        provider_event_id=None,
    )
