"""Returned mail (bounces, feedback reports, autoreplies) -> normalized delivery events.

Pure: message bytes, the SMTP envelope and the attribution settings in, outcomes out. Order:
a standard DSN, an ARF report, an autoreply (ignored), a non-standard bounce, else ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

from processor.adapters.mail import arf, dsn
from processor.adapters.mail.message import (
    Envelope,
    MailAttribution,
    Report,
    parse_message,
    unfolded,
)
from processor.adapters.providers.base import FieldError, Ignored, NormalizeResult, Rejection

if TYPE_CHECKING:
    from email.message import Message

    from processor.adapters.providers.base import Outcome

__all__ = ["Envelope", "MailAttribution", "MailFormat", "MailKind", "MailResult", "normalize_mail"]


class MailFormat(StrEnum):
    """What a caller expects a message to be (`sendguard normalize --provider`)."""

    RFC3464 = "rfc3464"
    """A bounce: a standard DSN or a non-standard bounce format."""
    ARF = "arf"
    """A feedback report (RFC 5965)."""


class MailKind(StrEnum):
    """What a message turned out to be."""

    DSN = "dsn"
    BOUNCE = "bounce"
    """A non-standard bounce (recognised by flufl.bounce)."""
    FEEDBACK = "feedback"
    AUTOREPLY = "autoreply"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class MailResult:
    """What one message was and what it gave."""

    kind: MailKind
    result: NormalizeResult


_DAEMON: Final = re.compile(r"mailer-?daemon|postmaster|mail delivery", re.IGNORECASE)
_AUTOREPLY_SUBJECT: Final = re.compile(
    r"^\s*(?:auto(?:matic)?[ -]?(?:reply|response|antwort)|out of (?:the )?office|"
    r"abwesenheit|vacation|away from|r[ée]ponse automatique|respuesta autom[aá]tica|"
    r"auto:)",
    re.IGNORECASE,
)
_AUTOREPLY_HEADERS: Final = ("X-Autoreply", "X-Autorespond", "X-Autoresponse")


def is_autoreply(message: Message) -> bool:
    """An RFC 3834 automatic response or a vacation message that is not a mailer daemon's.

    Bounces carry `Auto-Submitted: auto-replied` too; they come from a daemon.
    """
    sender = unfolded(message.get("From")) or ""
    if _DAEMON.search(sender):
        return False
    submitted = (unfolded(message.get("Auto-Submitted")) or "no").split(";")[0].strip().lower()
    precedence = (unfolded(message.get("Precedence")) or "").lower()
    return (
        submitted != "no"
        or precedence == "auto_reply"
        or any(message.get(name) for name in _AUTOREPLY_HEADERS)
        or bool(_AUTOREPLY_SUBJECT.match(unfolded(message.get("Subject")) or ""))
    )


def normalize_mail(
    data: bytes,
    envelope: Envelope,
    attribution: MailAttribution,
    *,
    expect: MailFormat | None = None,
) -> MailResult:
    """The events of one returned message; never raises for bad input.

    `expect` refuses a message of the other kind (a file given to the wrong `--provider`).
    """
    report = Report(parse_message(data), data, envelope, attribution)
    try:
        return _normalize(report, expect)
    except FieldError as exc:  # attribution shared by every recipient failed
        return MailResult(MailKind.OTHER, NormalizeResult(rejected=(exc.rejection(None),)))


def _normalize(report: Report, expect: MailFormat | None) -> MailResult:
    blocks = dsn.dsn_parts(report)
    if blocks is not None:
        report.original = blocks[1]
        return _result(MailKind.DSN, expect, MailFormat.RFC3464, dsn.standard(report, blocks[0]))
    feedback = arf.feedback_parts(report)
    if feedback is not None:
        report.original = feedback[1]
        return _result(
            MailKind.FEEDBACK, expect, MailFormat.ARF, arf.complaints(report, feedback[0])
        )
    if is_autoreply(report.message):
        reason = "an automatic reply (RFC 3834 or vacation message): not a delivery report"
        return MailResult(
            MailKind.AUTOREPLY, NormalizeResult(ignored=(Ignored(None, "mail", reason),))
        )
    if expect is not MailFormat.ARF:
        bounces = dsn.non_standard(report)
        if bounces is not None:
            return MailResult(MailKind.BOUNCE, NormalizeResult.collect(bounces))
    what = "feedback report" if expect is MailFormat.ARF else "bounce or feedback report"
    ignored = Ignored(None, "mail", f"not a recognised {what}")
    return MailResult(MailKind.OTHER, NormalizeResult(ignored=(ignored,)))


def _result(
    kind: MailKind, expect: MailFormat | None, fmt: MailFormat, outcomes: list[Outcome]
) -> MailResult:
    if expect is not None and expect is not fmt:
        problem = f"a {kind.value} message, not {expect.value}"
        return MailResult(kind, NormalizeResult(rejected=(Rejection(None, "mail", problem),)))
    return MailResult(kind, NormalizeResult.collect(outcomes))
