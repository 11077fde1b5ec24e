"""The big mailbox providers' own refusal texts, for the SMTP-answer classifier.

Data only: Gmail, Outlook/Hotmail, Yahoo/AOL, iCloud, GMX/WEB.DE, Orange, Mail.ru/Yandex,
Comcast. Checked before everything else: these phrases name the case even under a generic code.
"""

from __future__ import annotations

from typing import Final

from schemas.events import BounceCategory as C

TextRule = tuple[str, C, tuple[str, ...]]
"""(rule name, category, alternatives): any of the case-insensitive regular expressions found
in the answer's text is a match."""

PROVIDER_TEXT_RULES: Final[tuple[TextRule, ...]] = (
    # Gmail / Google Workspace (support.google.com/a/answer/3726730).
    ("gmail:no-such-user", C.BAD_MAILBOX, (r"account that you tried to reach does not exist",)),
    ("gmail:disabled", C.INACTIVE_MAILBOX, (r"account that you tried to reach is disabled",)),
    (
        "gmail:over-quota",
        C.MAILBOX_FULL,
        (
            r"account that you tried to reach is over quota",
            r"inbox is out of storage space",
        ),
    ),
    (
        "gmail:rate",
        C.TRANSIENT,
        (
            r"receiving mail at a rate that prevents additional messages",
            r"receiving mail too quickly",
        ),
    ),
    (
        "gmail:unsolicited",
        C.SPAM_BLOCK,
        (
            r"likely unsolicited mail",
            r"unusual rate of unsolicited mail",
            r"very low reputation of the sending",
            r"likely suspicious due to",
        ),
    ),
    (
        "gmail:authentication",
        C.AUTH_FAILURE,
        (
            r"this mail (?:has been blocked because the sender )?is unauthenticated",
            r"not accepted due to domain's dmarc policy",
            r"does not have a ptr record",
            r"does not meet ipv6 sending guidelines",
            r"does not pass authentication checks",
        ),
    ),
    (
        "gmail:content",
        C.CONTENT,
        (
            r"content presents a potential security issue",
            r"blocked because its content",
            r"attachment (?:that )?(?:is|are) not allowed",
            r"contains an? (?:link|attachment)",
        ),
    ),
    ("gmail:policy", C.POLICY, (r"has a policy that prohibited the mail that you sent",)),
    # Outlook.com / Hotmail / Microsoft 365 (learn.microsoft.com, NDR codes; sender support).
    (
        "outlook:recipient-not-found",
        C.BAD_MAILBOX,
        (
            r"resolver\.adr\.(?:ex)?recip(?:ient)?notfound",
            r"not found by smtp address lookup",
            r"recipient address rejected: access denied",
        ),
    ),
    ("outlook:size", C.MAILBOX_FULL, (r"resolver\.rst\.recipsizelimit", r"quotaexceeded")),
    (
        "outlook:blocklist",
        C.SPAM_BLOCK,
        (
            r"on our block list",
            r"\(s3\d{3}\)",
            r"weren't sent\. please contact your internet service",
            r"rate limited due to ip reputation",
            r"banned send(?:er|ing ip)",
            r"traffic not accepted from this ip",
        ),
    ),
    (
        "outlook:authentication",
        C.AUTH_FAILURE,
        (r"doesn't meet the required authentication level",),
    ),
    (
        "outlook:mailbox-unavailable",
        C.BAD_MAILBOX,
        (r"requested action not taken: mailbox unavailable",),
    ),
    # Yahoo / AOL (senders.yahooinc.com/smtp-error-codes).
    (
        "yahoo:no-such-user",
        C.BAD_MAILBOX,
        (
            r"doesn't have an? (?:yahoo|aol|ymail|rocketmail|verizon|att)\S* account",
            r"requested mail action aborted, mailbox not found",
        ),
    ),
    ("yahoo:disabled", C.INACTIVE_MAILBOX, (r"this mailbox is disabled",)),
    (
        "yahoo:deferred-for-complaints",
        C.SPAM_BLOCK,
        (
            r"\[ts0\d\]",
            r"\btss0\d\b",
            r"\[bl2\d\]",
            r"unexpected volume or user complaints",
        ),
    ),
    ("yahoo:policy", C.POLICY, (r"message not accepted for policy reasons",)),
    ("yahoo:unauthenticated", C.AUTH_FAILURE, (r"requires all senders to authenticate",)),
    # iCloud (support.apple.com/102322): local policy codes, Proofpoint blocklist.
    ("icloud:local-policy", C.POLICY, (r"\[(?:cs|hm)0\d\] message rejected due to local policy",)),
    # GMX / WEB.DE (United Internet postmaster pages).
    ("gmx:policy", C.POLICY, (r"reject due to policy restrictions",)),
    (
        "gmx:nemesis",
        C.SPAM_BLOCK,
        (
            r"nemesis esmtp service not available",
            r"ip address is black listed",
        ),
    ),
    # Orange / Wanadoo (French and English texts, OFR codes).
    ("orange:invalid-recipient", C.BAD_MAILBOX, (r"destinataire invalide",)),
    ("orange:mailbox-full", C.MAILBOX_FULL, (r"bo[iî]te du destinataire pleine",)),
    ("orange:refused", C.POLICY, (r"service refus[eé]",)),
    # Mail.ru and Yandex.
    (
        "mailru:no-such-user",
        C.BAD_MAILBOX,
        (
            r"invalid mailbox\. local mailbox \S+ is unavailable: user not found",
            r"no such user!",
        ),
    ),
    ("mailru:disabled", C.INACTIVE_MAILBOX, (r"is unavailable: account is disabled",)),
    (
        "mailru:spam",
        C.SPAM_BLOCK,
        (
            r"spam message rejected",
            r"rejected under suspicion of spam",
            r"help\.mail\.ru/notspam",
        ),
    ),
    # Comcast / Xfinity (postmaster.comcast.net/smtp-error-codes).
    ("comcast:not-a-customer", C.BAD_MAILBOX, (r"not our customer",)),
    ("comcast:disabled", C.INACTIVE_MAILBOX, (r"mailbox disabled for this recipient",)),
    ("comcast:blocked", C.SPAM_BLOCK, (r"comcast block for spam", r"\bbl0000\d\d\b")),
    ("comcast:rate", C.TRANSIENT, (r"\brl0000\d\d\b",)),
)
"""Exact phrases of the big mailbox providers: they name the case even under a generic code."""
