"""Table-driven and property tests of the SMTP-answer classifier (processor.domain.smtp_classifier).

The texts are the big mailbox providers' published refusal texts and common server wording,
some as they arrive (multi-line, with `smtp;` prefixes), some varied (case, codes missing).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.domain.smtp_classifier import (
    MAX_TEXT_CHARS,
    Basis,
    EnhancedCode,
    SmtpAnswer,
    class_of,
    classify,
    classify_text,
    parse_answer,
    parse_enhanced_code,
    parse_reply_code,
)
from schemas.events import BounceCategory, BounceClass

HARD, SOFT, BLOCK = BounceClass.HARD, BounceClass.SOFT, BounceClass.BLOCK

# text, expected class, expected category
PROVIDER_TEXTS: list[tuple[str, BounceClass, str]] = [
    # Gmail
    (("550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
     "550-5.1.1 double-checking the recipient's email address for typos or\n"
     "550 5.1.1 https://support.google.com/mail/?p=NoSuchUser a1si - gsmtp"), HARD, "bad_mailbox"),
    ("550 5.2.1 The email account that you tried to reach is disabled. a1si - gsmtp", HARD,
     "inactive_mailbox"),
    ("552-5.2.2 The email account that you tried to reach is over quota.", SOFT, "mailbox_full"),
    ("452-4.2.2 The recipient's inbox is out of storage space.", SOFT, "mailbox_full"),
    ("550-5.7.1 Our system has detected that this message is likely unsolicited mail.", BLOCK,
     "spam_block"),
    (("421-4.7.28 Our system has detected an unusual rate of unsolicited mail originating from "
     "your IP address."), BLOCK, "spam_block"),
    (("550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's DMARC "
     "policy."), BLOCK, "auth_failure"),
    ("550-5.7.25 The IP address sending this message does not have a PTR record setup", BLOCK,
     "auth_failure"),
    (("552-5.7.0 This message was blocked because its content presents a potential security "
     "issue."), BLOCK, "content"),
    (("452-4.2.1 The user you are trying to contact is receiving mail at a rate that prevents "
     "additional messages from being delivered."), SOFT, "transient"),
    # Outlook.com / Microsoft 365
    ("550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)", HARD,
     "bad_mailbox"),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     HARD, "bad_mailbox"),
    ("550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", HARD, "bad_mailbox"),
    (("550 5.7.1 Unfortunately, messages from [192.0.2.1] weren't sent. Please contact your "
     "Internet service provider since part of their network is on our block list (S3150)."),
     BLOCK, "spam_block"),
    (("451 4.7.650 The mail server [192.0.2.1] has been temporarily rate limited due to IP "
     "reputation."), BLOCK, "spam_block"),
    (("550 5.7.515 Access denied, sending domain example.com doesn't meet the required "
     "authentication level."), BLOCK, "auth_failure"),
    ("552 5.2.2 STOREDRV.Deliver; QuotaExceededException", SOFT, "mailbox_full"),
    # Yahoo / AOL
    ("554 delivery error: dd This user doesn't have a yahoo.com account (x@yahoo.com) [0]",
     HARD, "bad_mailbox"),
    ("552 1 Requested mail action aborted, mailbox not found", HARD, "bad_mailbox"),
    (("554 30 Sorry, your message to x@aol.com cannot be delivered. This mailbox is disabled "
     "(554.30)"), HARD, "inactive_mailbox"),
    (("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume "
     "or user complaints"), BLOCK, "spam_block"),
    (("553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.1, because the ip is in "
     "Spamhaus's list"), BLOCK, "spam_block"),
    ("554 5.7.9 Message not accepted for policy reasons.", BLOCK, "policy"),
    (("550 5.7.9 This mail has been blocked because the sender is unauthenticated. Yahoo requires "
     "all senders to authenticate with either SPF or DKIM."), BLOCK, "auth_failure"),
    # iCloud
    ("554 5.7.1 [CS01] Message rejected due to local policy.", BLOCK, "policy"),
    ("550 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=192.0.2.1",
     BLOCK, "spam_block"),
    ("552 5.2.2 <x@icloud.com>: user is over quota", SOFT, "mailbox_full"),
    # GMX / WEB.DE
    ("550 Requested action not taken: mailbox unavailable", HARD, "bad_mailbox"),
    ("554-Transaction failed\n554-Reject due to policy restrictions.", BLOCK, "policy"),
    (("554-gmx.net (mxgmx) Nemesis ESMTP Service not available\n554-No SMTP service\n"
     "554 IP address is black listed."), BLOCK, "spam_block"),
    # Orange
    (("550 5.1.1 <x@orange.fr>: Adresse d au moins un destinataire invalide. Invalid recipient. "
     "OFR_416 [416]"), HARD, "bad_mailbox"),
    ("552 5.1.1 <x@orange.fr>: Boite du destinataire pleine. Recipient mailbox full. OFR_417",
     SOFT, "mailbox_full"),
    # Mail.ru / Yandex
    (("550 Message was not accepted -- invalid mailbox. Local mailbox x@mail.ru is unavailable: "
     "user not found"), HARD, "bad_mailbox"),
    (("550 Message was not accepted -- invalid mailbox. Local mailbox x@mail.ru is unavailable: "
     "account is disabled"), HARD, "inactive_mailbox"),
    ("550 spam message rejected. Please visit http://help.mail.ru/notspam-support/id?c=x", BLOCK,
     "spam_block"),
    ("550 5.7.1 No such user!", HARD, "bad_mailbox"),
    ("554 5.7.1 Message rejected under suspicion of SPAM", BLOCK, "spam_block"),
    # Comcast
    ("550 5.1.1 <x@comcast.net> Not our Customer", HARD, "bad_mailbox"),
    ("550 5.2.1 <x@comcast.net> Mailbox disabled for this recipient", HARD, "inactive_mailbox"),
    (("554 resimta-ch2-18v.sys.comcast.net comcast 192.0.2.1 Comcast block for spam. Please see "
     "http://postmaster.comcast.net/smtp-error-codes.php#BL000000"), BLOCK, "spam_block"),
]  # fmt: skip

COMMON_TEXTS: list[tuple[str, BounceClass, str]] = [
    ("smtp; 550 5.1.1 user unknown", HARD, "bad_mailbox"),
    ("550 5.1.1 <a@b.example>: Recipient address rejected: User unknown in virtual mailbox table",
     HARD, "bad_mailbox"),
    ("500 unknown recipient", HARD, "bad_mailbox"),
    ("550 No Such User Here", HARD, "bad_mailbox"),
    ("550 5.1.2 Host or domain name not found. Name service error for name=x.example type=MX",
     HARD, "bad_domain"),
    ("556 5.1.10 Recipient address has null MX", HARD, "bad_domain"),
    ("450 4.1.1 <a@b.example>: Recipient address rejected: User unknown", SOFT, "bad_mailbox"),
    ("550 5.7.1 Recipient address rejected: Greylisted, try again in 300 seconds", SOFT,
     "transient"),
    ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
     BLOCK, "spam_block"),
    ("550 5.7.1 Sender address rejected: Domain not found", BLOCK, "policy"),
    ("550 5.7.23 SPF validation failed", BLOCK, "auth_failure"),
    ("554 5.7.1 Relay access denied", SOFT, "routing"),
    ("552 5.3.4 Message size exceeds fixed maximum message size", SOFT, "mailbox_full"),
    ("554 5.6.0 Message contains a virus", BLOCK, "content"),
    ("421 4.4.2 Connection dropped", SOFT, "transient"),
    ("451 4.3.0 Temporary local problem", SOFT, "transient"),
    ("smtp; 426 connection timed out", SOFT, "transient"),
    ("MAIL REFUSED - IP (17.99.99.99) is in black list", BLOCK, "spam_block"),
    ("Recipient not listed in public Name & Address Book", HARD, "bad_mailbox"),
    ("554 5.7.1 Message refused", BLOCK, "policy"),
    ("550 5.0.0", SOFT, "other"),
    ("554 Transaction failed", SOFT, "other"),
    ("", SOFT, "other"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "bounce_class", "category"),
    PROVIDER_TEXTS + COMMON_TEXTS,
    ids=[f"{row[2]}:{row[0][:40]}" for row in PROVIDER_TEXTS + COMMON_TEXTS],
)
def test_each_known_answer_gets_its_class_and_category(
    text: str, bounce_class: BounceClass, category: str
) -> None:
    """The providers' and servers' usual answers are classified as a mail operator reads them."""
    verdict = classify_text(text)

    assert (verdict.bounce_class, verdict.category) == (bounce_class, category)


@pytest.mark.parametrize(
    ("reply_code", "enhanced_code", "bounce_class", "category", "basis"),
    [
        (550, "5.1.1", HARD, "bad_mailbox", Basis.ENHANCED_CODE),
        (None, "5.1.1", HARD, "bad_mailbox", Basis.ENHANCED_CODE),
        (None, "4.1.1", SOFT, "bad_mailbox", Basis.ENHANCED_CODE),
        (550, "5.1.2", HARD, "bad_domain", Basis.ENHANCED_CODE),
        (550, "5.2.1", HARD, "inactive_mailbox", Basis.ENHANCED_CODE),
        (552, "5.2.2", SOFT, "mailbox_full", Basis.ENHANCED_CODE),
        (554, "5.7.1", BLOCK, "policy", Basis.ENHANCED_CODE),
        (421, "4.7.0", BLOCK, "policy", Basis.ENHANCED_CODE),
        (550, "5.7.26", BLOCK, "auth_failure", Basis.ENHANCED_CODE),
        (451, "4.4.3", SOFT, "routing", Basis.ENHANCED_CODE),
        (550, "5.4.7", SOFT, "transient", Basis.ENHANCED_CODE),
        (525, "5.7.13", HARD, "inactive_mailbox", Basis.ENHANCED_CODE),
        (553, "5.5.4", SOFT, "other", Basis.NONE),  # a protocol error: not a bad mailbox
        (550, "5.0.0", SOFT, "other", Basis.NONE),
        (553, "5.0.0", HARD, "bad_mailbox", Basis.REPLY_CODE),
        (552, None, SOFT, "mailbox_full", Basis.REPLY_CODE),
        (551, None, HARD, "bad_mailbox", Basis.REPLY_CODE),
        (421, None, SOFT, "transient", Basis.REPLY_CODE),
        (499, None, SOFT, "transient", Basis.REPLY_CODE),
        (554, None, SOFT, "other", Basis.NONE),
        (None, None, SOFT, "other", Basis.NONE),
        (250, "2.0.0", SOFT, "other", Basis.NONE),
    ],
)
def test_codes_alone_are_classified_by_rfc_3463_then_rfc_5321(
    reply_code: int | None,
    enhanced_code: str | None,
    bounce_class: BounceClass,
    category: str,
    basis: Basis,
) -> None:
    """Without text the enhanced code decides, then the reply code; x.0.0, 550, 554 say nothing."""
    verdict = classify_text(None, reply_code=reply_code, enhanced_code=enhanced_code)

    assert (verdict.bounce_class, verdict.category, verdict.basis) == (
        bounce_class,
        category,
        basis,
    )


def test_a_providers_exact_text_wins_over_a_contradicting_enhanced_code() -> None:
    """Yandex answers 5.7.1 (policy) for a missing user; its text says what it means."""
    verdict = classify_text("550 5.7.1 No such user!")

    assert (verdict.category, verdict.basis, verdict.rule) == (
        "bad_mailbox",
        Basis.TEXT,
        "mailru:no-such-user",
    )


def test_vague_words_give_way_to_a_specific_enhanced_code() -> None:
    """'rejected' alone says policy; 5.1.1 says more and decides."""
    assert classify_text("550 5.1.1 rejected").category == "bad_mailbox"
    assert classify_text("550 5.0.0 rejected").category == "policy"


@pytest.mark.parametrize(
    ("text", "reply_code", "enhanced"),
    [
        ("smtp; 550 5.1.1 user unknown", 550, "5.1.1"),
        ("smtp;host mx.example:25 says:\n 550 5.4.1 Recipient address rejected", 550, "5.4.1"),
        ("#550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found ##", 550, "5.1.10"),
        ("550-5.7.26 This mail is unauthenticated", 550, "5.7.26"),
        ("MAIL REFUSED - IP (17.99.99.99) is in black list", None, None),
        ("IP 5.1.1.2 refused at 2026-03-13T18:10:42Z", None, None),
        ("554 delivery error (554.30)", 554, None),
        ("try again in 300 seconds", None, None),
    ],
)
def test_codes_are_found_in_diagnostic_texts_and_not_in_addresses_or_times(
    text: str, reply_code: int | None, enhanced: str | None
) -> None:
    """Reply and enhanced codes are read where servers put them; IPs, times, counts are not."""
    answer = parse_answer(text)

    assert answer.reply_code == reply_code
    assert (None if answer.enhanced_code is None else str(answer.enhanced_code)) == enhanced


def test_separate_code_fields_win_over_codes_in_the_text() -> None:
    """A provider's own code fields are taken first; the text fills in what they leave out."""
    answer = parse_answer("550 5.0.0 gone", reply_code="552", enhanced_code="5.2.2")

    assert (answer.reply_code, answer.enhanced_code) == (552, EnhancedCode(5, 2, 2))


@pytest.mark.parametrize(
    "value", ["\u0665\u0665\u0660", "\uff15\uff15\uff10", "55", "5500", True, 600, 199, "x"]
)
def test_reply_codes_are_three_ascii_digits_in_range(value: object) -> None:
    """Other scripts' digits, booleans and out-of-range numbers are no reply code."""
    assert parse_reply_code(value) is None  # type: ignore[arg-type]  # probing bad input


def test_enhanced_codes_with_other_scripts_digits_are_not_read() -> None:
    """An enhanced code is ASCII: Arabic-Indic digits are no 5.1.1."""
    assert parse_enhanced_code("\u0665.\u0661.\u0661 user unknown") is None


def test_only_the_first_part_of_a_huge_text_is_read() -> None:
    """A phrase past MAX_TEXT_CHARS is not seen: the work per answer is bounded."""
    text = "x" * MAX_TEXT_CHARS + " user unknown"

    assert classify_text(text).category == "other"


ANSWER_TEXT = st.one_of(
    st.text(max_size=300),
    st.sampled_from([row[0] for row in PROVIDER_TEXTS + COMMON_TEXTS]).flatmap(
        lambda base: st.builds(lambda pre, post: pre + base + post, st.text(max_size=20),
                               st.text(max_size=20))
    ),
)  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    text=ANSWER_TEXT,
    reply_code=st.one_of(st.none(), st.integers(-5, 1000), st.text(max_size=4)),
    enhanced=st.one_of(st.none(), st.text(max_size=12), st.from_regex(r"[245]\.\d{1,3}\.\d{1,3}")),
)
def test_any_answer_gets_a_verdict_consistent_with_its_category(
    text: str, reply_code: int | str | None, enhanced: str | None
) -> None:
    """Never raises; the class follows from the category and permanence; 4xx is never hard."""
    answer = parse_answer(text, reply_code=reply_code, enhanced_code=enhanced)
    verdict = classify(answer)

    assert verdict.bounce_class is class_of(verdict.category, permanent=answer.permanent)
    assert (verdict.basis is Basis.NONE) is (verdict.category is BounceCategory.OTHER)
    if answer.permanent is False:
        assert verdict.bounce_class is not BounceClass.HARD


@settings(max_examples=200, deadline=None)
@given(text=ANSWER_TEXT)
def test_case_does_not_change_the_verdict(text: str) -> None:
    """Servers shout or whisper the same answers: upper and lower case classify alike."""
    lower = classify_text(text.lower())
    upper = classify_text(text.upper())

    if text.lower().upper() == text.upper() and text.upper().lower() == text.lower():
        assert (lower.category, lower.bounce_class) == (upper.category, upper.bounce_class)


def test_the_permanence_comes_from_the_reply_code_before_the_enhanced_class() -> None:
    """A 4xx reply with a 5.x.x enhanced code is temporary: RFC 5321's code is the answer."""
    assert SmtpAnswer(reply_code=450, enhanced_code=EnhancedCode(5, 1, 1)).permanent is False
    assert SmtpAnswer(enhanced_code=EnhancedCode(5, 1, 1)).permanent is True
    assert SmtpAnswer().permanent is None
