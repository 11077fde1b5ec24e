"""Delivery status notifications (RFC 3464) and the common non-standard bounce formats -> events.

A standard DSN gives one event per recipient block: `failed` a bounce classified from its
Status and Diagnostic-Code, `delayed` a deferral. Other bounce formats (Exim, old Postfix,
Exchange, qmail...) are recognised by flufl.bounce, their reason read from the text around
each address.
"""

from __future__ import annotations

import logging
import re
from email.parser import HeaderParser
from typing import TYPE_CHECKING, Final

from flufl.bounce import all_failures

from processor.adapters.mail.message import (
    Origin,
    Report,
    attribute,
    event_id,
    header_block,
    make_event,
    plain_address,
    report_parts,
    report_time,
    returned_original,
    unfolded,
)
from processor.adapters.providers.base import FieldError, Ignored, Outcome, Rejection
from processor.adapters.providers.bounces import generic, resolve_text
from schemas.events import BounceCategory, BounceClass, EventType

if TYPE_CHECKING:
    from email.message import Message

log = logging.getLogger(__name__)

DSN_PROVIDER: Final = "rfc3464"
NON_STANDARD_PROVIDER: Final = "bounce-mail"
_CODE_NEAR: Final = re.compile(r"\b[245]\d\d\b|\b[245]\.\d{1,3}\.\d{1,3}\b", re.ASCII)
_EXCERPT_CHARS: Final = 600
_COPY_MARKER: Final = re.compile(
    r"^[ \t]*-{2,}.*(?:copy of the message|original message|returned message|message follows)"
    r".*$|^[ \t]*-{2,}\s*(?:original message|below this line).*$",
    re.IGNORECASE | re.MULTILINE,
)
_MAX_TEXT_BYTES: Final = 256 * 1024
"""Only this much of a non-standard bounce's text is searched for a recipient's reason."""


def dsn_parts(report: Report) -> tuple[list[Message], Message | None] | None:
    """The header blocks of a standard DSN and its returned original; None when not a DSN."""
    found = report_parts(report.message, "delivery-status", "message/delivery-status")
    if found is None:
        return None
    part, original = found
    return header_block(part), original


def standard(report: Report, blocks: list[Message]) -> list[Outcome]:
    """The events of a standard DSN's recipient blocks."""
    per_message = blocks[0] if blocks and not _is_recipient(blocks[0]) else None
    recipients = [b for b in blocks if _is_recipient(b)]
    if not recipients:
        return [Rejection(None, "dsn", "a delivery-status part without a recipient block")]
    origin = _origin(report, per_message)
    arrival = unfolded(per_message.get("Arrival-Date")) if per_message is not None else None
    outcomes: list[Outcome] = []
    for index, block in enumerate(recipients):
        path = f"dsn.recipients[{index}]"
        try:
            outcomes.append(
                _recipient(
                    report,
                    block,
                    path=path,
                    index=index,
                    origin=origin,
                    arrival=arrival,
                    single=len(recipients) == 1,
                )
            )
        except FieldError as exc:
            outcomes.append(exc.rejection(index))
    return outcomes


def _is_recipient(block: Message) -> bool:
    return any(block.get(name) for name in ("Final-Recipient", "Original-Recipient", "Action"))


def _origin(report: Report, per_message: Message | None) -> Origin:
    message, original = report.message, report.original
    inside = [
        (unfolded(message.get(name)), f"dsn.{name}")
        for name in ("To", "X-Original-To", "Delivered-To")
    ]
    if original is not None:
        inside.append((unfolded(original.get("Return-Path")), "original.Return-Path"))
    if per_message is not None:  # Postfix names the original's envelope sender here
        inside.append((unfolded(per_message.get("X-Postfix-Sender")), "dsn.X-Postfix-Sender"))
    return attribute(report, inside)


def _recipient(
    report: Report,
    block: Message,
    *,
    path: str,
    index: int,
    origin: Origin,
    arrival: str | None,
    single: bool,
) -> Outcome:
    status = unfolded(block.get("Status")) or ""
    action = (unfolded(block.get("Action")) or "").lower()
    if not action:  # a block without Action: its Status class says what happened
        action = {"5": "failed", "4": "delayed"}.get(status[:1], "")
    if action not in {"failed", "delayed"}:
        return Ignored(index, f"{path}.Action", f"action {action or 'missing'!r} is no failure")
    address = _address(block, path)
    diagnostic = unfolded(block.get("Diagnostic-Code"))
    text = diagnostic.partition(";")[2] if diagnostic and ";" in diagnostic[:12] else diagnostic
    occurred_at = report_time([unfolded(block.get("Last-Attempt-Date")), arrival], report.envelope)
    status_code = status.split(" ", 1)[0]
    common = {
        "provider": DSN_PROVIDER,
        "event_id": event_id(DSN_PROVIDER, report, address[0].lower(), action, status_code),
        "address": address,
        "occurred_at": occurred_at,
        "single_recipient": single,
        "message_id": _original_message_id(report),
    }
    if action == "delayed":
        return make_event(origin, event_type=EventType.DEFERRED, **common)  # type: ignore[arg-type]
    # A failure whose status is only temporary (4.x.x) was given up on: never a hard bounce.
    label = generic(BounceClass.SOFT, BounceCategory.OTHER, temporary=status.startswith("4"))
    bounce = resolve_text(label, text, enhanced_code=status_code or None)
    return make_event(
        origin,
        event_type=EventType.BOUNCE,
        bounce_class=bounce.bounce_class,
        bounce_category=bounce.category,
        **common,  # type: ignore[arg-type]
    )


def _address(block: Message, path: str) -> tuple[str, str]:
    for name in ("Original-Recipient", "Final-Recipient"):
        value = unfolded(block.get(name))
        address = plain_address(value)
        if address is not None:
            return address, f"{path}.{name}"
    field = f"{path}.Final-Recipient"
    raise FieldError(field, "missing" if not block.get("Final-Recipient") else "not an address")


def _original_message_id(report: Report) -> str | None:
    original = report.original
    return None if original is None else unfolded(original.get("Message-ID"))


# --- non-standard bounces ---------------------------------------------------------------------


def non_standard(report: Report) -> list[Outcome] | None:
    """The events of a bounce flufl.bounce recognises; None when it recognises none."""
    try:
        temporary, permanent = all_failures(report.message)
    except Exception:  # a heuristic detector's bug on odd input is "not a bounce"
        log.warning("a bounce detector failed on a message; taken as not a bounce", exc_info=True)
        return None
    failures = [(a, EventType.BOUNCE) for a in sorted(permanent)]
    failures += [(a, EventType.DEFERRED) for a in sorted(temporary - permanent)]
    if not failures:
        return None
    text = _text_of(report.message)
    report.original = returned_original(list(report.message.walk())) or _embedded_original(text)
    inside = [(unfolded(report.message.get(n)), f"mail.{n}") for n in ("To", "X-Original-To")]
    if report.original is not None:
        inside.append((unfolded(report.original.get("Return-Path")), "original.Return-Path"))
    origin = attribute(report, inside)
    outcomes: list[Outcome] = []
    for index, (raw, event_type) in enumerate(failures):
        path = f"bounce.recipients[{index}]"
        address = plain_address(raw.decode("ascii", "replace"))
        if address is None:
            outcomes.append(Rejection(index, path, "not an address"))
            continue
        try:
            outcomes.append(
                _heuristic_event(
                    report, origin, (address, path), event_type, text=text, count=len(failures)
                )
            )
        except FieldError as exc:
            outcomes.append(exc.rejection(index))
    return outcomes


def _heuristic_event(
    report: Report,
    origin: Origin,
    address: tuple[str, str],
    event_type: EventType,
    *,
    text: str,
    count: int,
) -> Outcome:
    excerpt = _reason_near(text, address[0])
    common = {
        "provider": NON_STANDARD_PROVIDER,
        "event_id": event_id(NON_STANDARD_PROVIDER, report, address[0].lower(), event_type),
        "address": address,
        "occurred_at": report_time([unfolded(report.message.get("Date"))], report.envelope),
        "single_recipient": count == 1,
        "message_id": _original_message_id(report),
    }
    if event_type is EventType.DEFERRED:
        return make_event(origin, event_type=event_type, **common)  # type: ignore[arg-type]
    bounce = resolve_text(generic(BounceClass.SOFT, BounceCategory.OTHER), excerpt)
    return make_event(
        origin,
        event_type=event_type,
        bounce_class=bounce.bounce_class,
        bounce_category=bounce.category,
        **common,  # type: ignore[arg-type]
    )


def _text_of(message: Message) -> str:
    """The decoded text/plain parts of a message, up to _MAX_TEXT_BYTES."""
    chunks: list[str] = []
    size = 0
    for part in message.walk():
        if part.get_content_type() != "text/plain":
            continue
        raw = part.get_payload(decode=True)
        if not isinstance(raw, bytes):
            continue
        charset = part.get_content_charset() or "utf-8"
        try:
            chunk = raw.decode(charset, "replace")
        except LookupError:  # an unknown charset name
            chunk = raw.decode("utf-8", "replace")
        chunks.append(chunk)
        size += len(raw)
        if size > _MAX_TEXT_BYTES:
            break
    return "\n".join(chunks)[:_MAX_TEXT_BYTES]


def _embedded_original(text: str) -> Message | None:
    """The headers of an original message quoted in a bounce's text (Exim, qmail, Sendmail)."""
    marker = _COPY_MARKER.search(text)
    if marker is None:
        return None
    rest = text[marker.end() :].lstrip("\r\n")
    return HeaderParser().parsestr(rest, headersonly=True) if rest else None


def _reason_near(text: str, address: str) -> str | None:
    """The text after the address's mention that holds an SMTP code, else after its first."""
    lowered, needle = text.lower(), address.lower()
    first: str | None = None
    start = lowered.find(needle)
    while start != -1:
        excerpt = text[start + len(needle) : start + len(needle) + _EXCERPT_CHARS]
        if first is None:
            first = excerpt
        if _CODE_NEAR.search(excerpt):
            return excerpt
        start = lowered.find(needle, start + 1)
    return first
