"""Feedback reports (RFC 5965 ARF) -> complaint events; other feedback types are ignored.

Who complained: Original-Rcpt-To, else KumoMTA's trace header in the returned original, else
the returned original's sole To address. Whose message it was: the VERP token of
Original-Mail-From (the original's return path) or of its Return-Path, else its headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from processor.adapters.mail.message import (
    Report,
    attribute,
    event_id,
    header_block,
    kumo_ref,
    make_event,
    plain_address,
    report_parts,
    report_time,
    unfolded,
)
from processor.adapters.providers.base import FieldError, Ignored, Outcome, Rejection
from schemas.events import EventType

if TYPE_CHECKING:
    from email.message import Message

ARF_PROVIDER: Final = "arf"
COMPLAINT_TYPES: Final = frozenset({"abuse", "fraud"})
"""RFC 5965 feedback types that are a recipient's complaint; not-spam, virus, other and
auth-failure (RFC 6591) say nothing about the recipient's will."""


def feedback_parts(report: Report) -> tuple[Message, Message | None] | None:
    """The feedback fields and the returned original of an ARF report; None when not one."""
    found = report_parts(report.message, "feedback-report", "message/feedback-report")
    if found is None:
        return None
    part, original = found
    blocks = header_block(part)
    if not blocks:
        return None
    return blocks[0], original


def complaints(report: Report, fields: Message) -> list[Outcome]:
    """One complaint per original recipient of an abuse or fraud report."""
    feedback_type = (unfolded(fields.get("Feedback-Type")) or "").lower()
    if not feedback_type:
        return [Rejection(None, "arf.Feedback-Type", "missing")]
    if feedback_type not in COMPLAINT_TYPES:
        return [
            Ignored(None, "arf.Feedback-Type", f"feedback type {feedback_type!r} is no complaint")
        ]
    inside = [(unfolded(fields.get("Original-Mail-From")), "arf.Original-Mail-From")]
    if report.original is not None:
        inside.append((unfolded(report.original.get("Return-Path")), "original.Return-Path"))
    try:
        origin = attribute(report, inside)
        recipients = _recipients(report, fields)
    except FieldError as exc:
        return [exc.rejection(None)]
    occurred_at = report_time(
        [unfolded(fields.get("Arrival-Date")), unfolded(fields.get("Received-Date"))],
        report.envelope,
    )
    message_id = None if report.original is None else unfolded(report.original.get("Message-ID"))
    outcomes: list[Outcome] = []
    for index, address in enumerate(recipients):
        try:
            outcomes.append(
                make_event(
                    origin,
                    provider=ARF_PROVIDER,
                    event_id=event_id(ARF_PROVIDER, report, address[0].lower()),
                    event_type=EventType.COMPLAINT,
                    address=address,
                    occurred_at=occurred_at,
                    single_recipient=len(recipients) == 1,
                    message_id=message_id,
                )
            )
        except FieldError as exc:
            outcomes.append(exc.rejection(index))
    return outcomes


def _recipients(report: Report, fields: Message) -> list[tuple[str, str]]:
    named = fields.get_all("Original-Rcpt-To") or []
    found = [
        (address, f"arf.Original-Rcpt-To[{i}]")
        for i, value in enumerate(named)
        if (address := plain_address(unfolded(value))) is not None
    ]
    if found:
        return found
    traced = kumo_ref(report.original).get("recipient")
    if isinstance(traced, str) and plain_address(traced):
        return [(plain_address(traced) or traced, "original.X-KumoRef.recipient")]
    to = None if report.original is None else unfolded(report.original.get("To"))
    address = plain_address(to)
    if address is not None:
        return [(address, "original.To")]
    raise FieldError(
        "arf.Original-Rcpt-To",
        "missing: the report names no original recipient (nor does the returned message)",
    )
