"""Returned mail to events: the shared samples, invented MTA variants, autoreplies, attribution.

Attribution by VERP token, by headers of the returned original, and by fallbacks.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from processor.adapters.mail import (
    Envelope,
    MailAttribution,
    MailFormat,
    MailKind,
    MailResult,
    normalize_mail,
)
from processor.domain.signed_tokens import VerpToken, verp_address
from schemas.events import BounceCategory, BounceClass, EventType
from tests.unit.adapters.mail import samples

SHARED = Path(__file__).resolve().parents[5] / "shared" / "mta-samples" / "kumomta"
KEY = b"s" * 32
NOW = datetime(2026, 3, 13, 18, 30, tzinfo=UTC)
FALLBACK = MailAttribution(fallback_tenant_id="acme", fallback_campaign_id="c1")
SIGNED = MailAttribution(keys=(KEY,), verp_prefix="b", bounce_domains=("bounce.sender.example",))
RETURN_PATH = verp_address(
    VerpToken("beta", "launch", "contact-7"), KEY, prefix="b", domain="bounce.sender.example"
)


def run(data: bytes, attribution: MailAttribution = FALLBACK, **kwargs: object) -> MailResult:
    """Normalize `data` as if it arrived at NOW (with `recipients` as its envelope)."""
    recipients = kwargs.pop("recipients", ())
    envelope = Envelope(received_at=NOW, recipients=recipients)  # type: ignore[arg-type]
    return normalize_mail(data, envelope, attribution, **kwargs)  # type: ignore[arg-type]


def summary(result: MailResult) -> list[tuple[str, str, str | None, str | None]]:
    """Address, type, class and category of each event."""
    return [
        (
            e.recipient.address,
            e.type.value,
            e.bounce_class and e.bounce_class.value,
            e.bounce_category and e.bounce_category.value,
        )
        for e in result.result.events
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("1.eml", [("louisl@larry.slip.umd.edu", "bounce", "soft", "transient")]),
        (
            "2.eml",
            [
                ("arathib@vnet.ibm.com", "bounce", "hard", "bad_mailbox"),
                ("johnh@hpnjld.njd.hp.com", "deferred", None, None),
                ("wsnell@sdcc13.ucsd.edu", "bounce", "hard", "bad_mailbox"),
            ],
        ),
        ("3.eml", []),
        ("4.eml", [("thomas@de-montfort.ac.uk", "deferred", None, None)]),
        ("5.eml", [("recipient@domain.com", "bounce", "soft", "mailbox_full")]),
        ("6.eml", [("redacted@example.com", "bounce", "hard", "bad_mailbox")]),
        ("obsolete_arrival_date.eml", [("user@example.com", "bounce", "hard", "bad_mailbox")]),
    ],
)
def test_each_shared_dsn_gives_one_event_per_failed_or_delayed_recipient(
    name: str, expected: list[tuple[str, str, str | None, str | None]]
) -> None:
    """Failed recipients are bounces classified from Status and Diagnostic-Code.

    Delayed ones are deferrals; a 4.x.x failure (given up after retries) is never hard.
    """
    result = run((SHARED / "rfc3464" / name).read_bytes(), expect=MailFormat.RFC3464)
    assert result.kind is MailKind.DSN
    assert summary(result) == expected
    assert {e.provider for e in result.result.events} <= {"rfc3464"}


def test_a_dsn_recipient_without_an_address_is_rejected_naming_the_field() -> None:
    """`Final-Recipient: unknown; nair_s` cannot become an event: a rejection says where."""
    result = run((SHARED / "rfc3464" / "3.eml").read_bytes())
    assert [r.reason for r in result.result.rejected] == [
        "dsn.recipients[0].Final-Recipient: not an address"
    ]


def test_the_same_dsn_gives_the_same_event_ids() -> None:
    """Event ids come from the report and the recipient: a redelivered DSN dedups."""
    data = (SHARED / "rfc3464" / "2.eml").read_bytes()
    first = [e.event_id for e in run(data).result.events]
    assert first == [e.event_id for e in run(data).result.events]
    assert len(set(first)) == 3


def test_a_report_date_far_from_arrival_gives_way_to_the_arrival_time() -> None:
    """The 1994 samples are stamped when they arrived; a plausible date is kept."""
    old = run((SHARED / "rfc3464" / "1.eml").read_bytes())
    assert old.result.events[0].occurred_at == NOW
    recent = run((SHARED / "rfc3464" / "6.eml").read_bytes())  # 2026-03-13T18:10:48-04:00
    assert recent.result.events[0].occurred_at == NOW


@pytest.mark.parametrize(
    ("name", "recipient"),
    [
        ("2.eml", "user@example.com"),
        ("3.eml", "user@example.com"),
        ("4.eml", "cb4a01a48251d4765f489076aa81e2a4@comcast.net"),
    ],
)
def test_each_shared_abuse_report_gives_a_complaint(name: str, recipient: str) -> None:
    """An ARF abuse report with an original recipient is one complaint for that recipient."""
    result = run((SHARED / "rfc5965" / name).read_bytes(), expect=MailFormat.ARF)
    assert result.kind is MailKind.FEEDBACK
    assert summary(result) == [(recipient, "complaint", None, None)]
    assert result.result.events[0].provider == "arf"


def test_an_abuse_report_naming_no_recipient_is_rejected() -> None:
    """RFC 5965 sample 1 names no original recipient anywhere: rejected, not guessed."""
    result = run((SHARED / "rfc5965" / "1.eml").read_bytes())
    assert result.result.events == ()
    assert result.result.rejected[0].field == "arf.Original-Rcpt-To"


def test_an_abuse_report_without_original_headers_uses_its_kumoref_trace() -> None:
    """Without Original-Rcpt-To, KumoMTA's X-KumoRef trace in the original names the recipient."""
    data = (
        (SHARED / "rfc5965" / "2.eml")
        .read_bytes()
        .replace(b"Original-Rcpt-To: <user@example.com>\n", b"")
    )
    assert summary(run(data)) == [("test@example.com", "complaint", None, None)]


def test_a_not_spam_report_is_ignored() -> None:
    """Feedback types other than abuse and fraud say nothing about the recipient's will."""
    data = samples.ARF_NOT_SPAM.replace(b"{return_path}", RETURN_PATH.encode()).replace(
        b"{arrival}", b"Fri, 13 Mar 2026 18:00:00 +0000"
    )
    result = run(data, SIGNED)
    assert result.result.events == ()
    assert "not-spam" in result.result.ignored[0].problem


def test_an_abuse_report_is_attributed_by_the_verp_token_of_original_mail_from() -> None:
    """Original-Mail-From (the original's return path) names tenant, campaign and contact.

    The report's Arrival-Date is the complaint's time.
    """
    data = samples.ARF_WITH_VERP.replace(b"{return_path}", RETURN_PATH.encode()).replace(
        b"{arrival}", b"Fri, 13 Mar 2026 18:00:00 +0000"
    )
    [event] = run(data, SIGNED).result.events
    assert (event.tenant_id, event.campaign_id, event.recipient.contact_id) == (
        "beta",
        "launch",
        "contact-7",
    )
    assert event.recipient.address == "ivan@isp.example"
    assert event.occurred_at == datetime(2026, 3, 13, 18, 0, tzinfo=UTC)


def test_a_postfix_dsn_to_a_verp_address_is_attributed_by_its_token() -> None:
    """The envelope recipient's token wins over the returned headers (acme/spring)."""
    data = samples.POSTFIX_DSN.replace(b"{return_path}", RETURN_PATH.encode())
    result = run(data, SIGNED, recipients=(RETURN_PATH,))
    [event] = result.result.events
    assert (event.tenant_id, event.campaign_id, event.recipient.contact_id) == (
        "beta",
        "launch",
        "contact-7",
    )
    assert (event.bounce_class, event.bounce_category) == (
        BounceClass.HARD,
        BounceCategory.BAD_MAILBOX,
    )
    assert event.provider_message_id == "<orig-1@sender.example>"


def test_a_forged_verp_token_is_rejected_not_trusted() -> None:
    """A return path under the bounce domain whose signature fails is a rejection."""
    forged = RETURN_PATH.replace("b+", "b+a", 1)
    data = samples.POSTFIX_DSN.replace(b"{return_path}", forged.encode())
    result = run(data, SIGNED, recipients=(forged,))
    assert result.result.events == ()
    assert result.result.rejected[0].field == "envelope.rcpt_to[0]"


def test_without_a_token_the_returned_headers_attribute_the_bounce() -> None:
    """X-Tenant-ID and X-Campaign-ID of the returned original are the fallback."""
    data = samples.POSTFIX_DSN.replace(b"{return_path}", b"news@sender.example")
    [event] = run(data, SIGNED).result.events
    assert (event.tenant_id, event.campaign_id, event.recipient.contact_id) == (
        "acme",
        "spring",
        "gone@example.org",
    )


def test_a_bounce_naming_no_tenant_is_rejected() -> None:
    """No token, no header, no fallback: every recipient is rejected, naming the tenant."""
    result = run((SHARED / "rfc3464" / "5.eml").read_bytes(), SIGNED)
    assert result.result.events == ()
    assert result.result.rejected[0].field == "tenant"


@pytest.mark.parametrize(
    ("data", "kind", "expected"),
    [
        (
            samples.EXIM_BOUNCE,
            MailKind.BOUNCE,
            [("bob@example.net", "bounce", "hard", "bad_mailbox")],
        ),
        (
            samples.EXCHANGE_DSN,
            MailKind.DSN,
            [("carol@contoso.example", "bounce", "hard", "bad_mailbox")],
        ),
        (
            samples.GMAIL_DSN,
            MailKind.DSN,
            [
                ("dave@gmail.example", "bounce", "hard", "bad_mailbox"),
                ("erin@gmail.example", "bounce", "soft", "mailbox_full"),
            ],
        ),
    ],
    ids=["exim", "exchange", "gmail"],
)
def test_common_mta_formats_give_classified_bounces(
    data: bytes, kind: MailKind, expected: list[tuple[str, str, str | None, str | None]]
) -> None:
    """Exim's plain-text bounce (via flufl.bounce), Exchange's and Gmail's DSNs."""
    result = run(data, SIGNED)
    assert result.kind is kind
    assert summary(result) == expected
    assert {(e.tenant_id, e.campaign_id) for e in result.result.events} <= {
        ("acme", "autumn"),
        ("acme", "spring"),
    }


@pytest.mark.parametrize(
    "data", [samples.VACATION, samples.VACATION_WITHOUT_HEADER], ids=["rfc3834", "x-autoreply"]
)
def test_autoreplies_are_recognised_and_ignored(data: bytes) -> None:
    """An automatic reply is no bounce, even when it mentions 'user unknown'."""
    result = run(data)
    assert result.kind is MailKind.AUTOREPLY
    assert result.result.events == ()
    assert result.result.rejected == ()


def test_a_human_reply_is_ignored_as_unrecognised() -> None:
    """Mail that is neither a report nor a bounce is ignored with a reason."""
    result = run(samples.PLAIN_MAIL)
    assert result.kind is MailKind.OTHER
    assert result.result.events == ()
    assert "not a recognised" in result.result.ignored[0].problem


def test_a_file_of_the_other_format_is_refused() -> None:
    """`--provider arf` given a DSN says what the file is."""
    result = run((SHARED / "rfc3464" / "2.eml").read_bytes(), expect=MailFormat.ARF)
    assert result.result.events == ()
    assert "dsn message, not arf" in result.result.rejected[0].problem


def test_garbage_never_raises() -> None:
    """Bytes that are no mail at all are ignored, not an exception."""
    result = run(b"\x00\xff" * 100)
    assert result.result.events == ()


def test_event_types_are_bounce_deferred_or_complaint_only() -> None:
    """Every shared sample yields only bounce, deferred or complaint events."""
    kinds = {
        e.type
        for folder in ("rfc3464", "rfc5965")
        for path in sorted((SHARED / folder).glob("*.eml"))
        for e in run(path.read_bytes()).result.events
    }
    assert kinds <= {EventType.BOUNCE, EventType.DEFERRED, EventType.COMPLAINT}
