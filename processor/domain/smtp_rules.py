"""The SMTP-answer classifier's common rule tables: server wording, enhanced and reply codes.

Data only, in priority order; `smtp_classifier` compiles and applies them (first match wins).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from schemas.events import BounceCategory as C

if TYPE_CHECKING:
    from processor.domain.smtp_provider_rules import TextRule

COMMON_TEXT_RULES: Final[tuple[TextRule, ...]] = (
    (
        "text:sender-rejected",
        C.POLICY,
        (
            r"sender (?:address )?(?:rejected|refused|not allowed|denied)",
            r"sender domain",
            r"invalid sender",
            r"sender verify failed",
        ),
    ),
    ("text:greylisted", C.TRANSIENT, (r"gr[ae]y-?list",)),
    (
        "text:blocklisted",
        C.SPAM_BLOCK,
        (
            r"spamhaus",
            r"spamcop",
            r"barracuda",
            r"\bsorbs\b",
            r"\bsurbl\b",
            r"\buribl\b",
            r"proofpoint",
            r"cloudmark",
            r"\bdnsbl\b",
            r"\brbl\b",
            r"bl\.spamcop",
            r"black ?list",
            r"block ?list",
            r"blocked using",
            r"(?<!not )listed (?:at|in|on|by)\b",
            r"\bspam\b",
            r"unsolicited",
            r"bulk mail",
            r"reputation",
        ),
    ),
    (
        "text:authentication",
        C.AUTH_FAILURE,
        (
            r"\bdmarc\b",
            r"\bspf\b",
            r"\bdkim\b",
            r"unauthenticated",
            r"not authenticated",
            r"authentication (?:failed|failure|required|checks?)",
            r"reverse dns",
            r"\bptr\b",
            r"\brdns\b",
            r"requiretls",
            r"tls (?:is )?required",
            r"must use (?:starttls|tls)",
        ),
    ),
    (
        "text:content",
        C.CONTENT,
        (
            r"virus",
            r"malware",
            r"phishing",
            r"infected",
            r"attachment",
            r"content (?:rejected|filter|policy)",
            r"message content",
            r"prohibited content",
            r"forbidden content",
        ),
    ),
    (
        "text:inactive",
        C.INACTIVE_MAILBOX,
        (
            r"(?:account|mailbox|user|address|recipient)(?: has been| is)? disabled",
            r"(?:account|mailbox|user|address|recipient)(?: has been| is)? deactivated",
            r"(?:account|mailbox|user|address|recipient)(?: has been| is)? inactive",
            r"(?:account|mailbox|user|address|recipient)(?: has been| is)? suspended",
            r"(?:account|mailbox|user|address|recipient)(?: has been| is)? closed",
            r"(?:account|mailbox|user|address|recipient)(?: has been| is)? expired",
            r"no longer (?:active|in use|available|valid)",
            r"has been (?:disabled|deactivated)",
            r"mailbox has moved",
            r"inactive (?:account|mailbox|user)",
            r"dormant",
        ),
    ),
    (
        "text:mailbox-full",
        C.MAILBOX_FULL,
        (
            r"over ?quota",
            r"quota exceeded",
            r"exceeded (?:its|their|the)? ?(?:storage|quota)",
            r"(?:mailbox|inbox|mail box|mailfolder) (?:is )?full",
            r"insufficient (?:storage|space)",
            r"out of (?:storage|space)",
            r"storage allocation",
            r"message (?:is )?too (?:large|big)",
            r"(?:message )?size (?:limit|exceeds)",
            r"exceeds? (?:the )?(?:maximum |max )?(?:message )?size",
            r"message length exceeds",
        ),
    ),
    (
        "text:bad-domain",
        C.BAD_DOMAIN,
        (
            r"domain (?:name )?(?:does not exist|doesn't exist|not found|unknown|is invalid)",
            r"(?:unknown|no such|invalid|non-?existent) domain",
            r"host (?:or domain name )?not found",
            r"host unknown",
            r"null mx",
            r"\bno mx\b",
            r"nxdomain",
            r"domain (?:has )?no (?:mx|mail)",
            r"does not accept mail",
        ),
    ),
    (
        "text:bad-mailbox",
        C.BAD_MAILBOX,
        (
            r"user ?unknown",
            r"unknown (?:user|recipient|mailbox|address|local part)",
            r"no such (?:user|mailbox|recipient|address|person|account)",
            r"(?:user|recipient|mailbox|address|account)s? (?:does not|doesn't|do not) exist",
            r"does not exist",
            r"user not found",
            r"(?:recipient|mailbox|address|account) not found",
            r"invalid (?:recipient|mailbox|address|user|e-?mail)",
            r"mailbox unavailable",
            r"not a valid (?:mailbox|recipient|user|address)",
            r"bad destination mailbox",
            r"undeliverable address",
            r"no mailbox",
            r"not a registered",
            r"not a known user",
            r"addressee unknown",
            r"unknown or illegal alias",
            r"not listed in",
            r"no account by that name",
        ),
    ),
    (
        "text:routing",
        C.ROUTING,
        (
            r"relay(?:ing)? (?:access )?(?:denied|not permitted|prohibited|not allowed)",
            r"unable to relay",
            r"not permitted to relay",
            r"we do not relay",
            r"routing loop",
            r"mail loop",
            r"too many hops",
            r"unable to route",
            r"unrouteable",
            r"no route to host",
            r"dns (?:failure|error)",
            r"lookup fail",
        ),
    ),
    (
        "text:transient",
        C.TRANSIENT,
        (
            r"try (?:again )?later",
            r"try again",
            r"temporar(?:y|ily)",
            r"rate.?limit",
            r"too many (?:connections|messages|recipients|concurrent)",
            r"throttl",
            r"timed? ?out",
            r"connection (?:lost|dropped|reset|refused)",
            r"deferr",
            r"server busy",
            r"resources? temporarily",
            r"local error",
            r"expired",
            r"delivery time",
            r"retry",
        ),
    ),
)
"""Common wording of mail servers (Postfix, Exim, Exchange, Sendmail...): before the codes,
after the providers' exact phrases. Block signals come before mailbox ones on purpose: a
refusal that mentions the mailbox and a blocklist is a block."""

WEAK_TEXT_RULES: Final[tuple[TextRule, ...]] = (
    (
        "text:policy",
        C.POLICY,
        (
            r"polic(?:y|ies)",
            r"not allowed",
            r"prohibited",
            r"refused",
            r"administrative",
            r"access denied",
            r"not authori[sz]ed",
            r"blocked",
            r"rejected",
            r"denied",
        ),
    ),
)
"""Vague words: they only decide when no enhanced code more specific than x.0.0 does."""

ENHANCED_SUBJECT_DETAIL: Final[MappingProxyType[tuple[int, int], C]] = MappingProxyType(
    {
        # X.1 addressing (RFC 3463 3.2, IANA registry)
        (1, 1): C.BAD_MAILBOX,  # bad destination mailbox address
        (1, 2): C.BAD_DOMAIN,  # bad destination system address
        (1, 3): C.BAD_MAILBOX,  # bad destination mailbox address syntax
        (1, 4): C.BAD_MAILBOX,  # destination mailbox address ambiguous
        (1, 6): C.INACTIVE_MAILBOX,  # destination mailbox has moved, no forwarding address
        (1, 7): C.POLICY,  # bad sender's mailbox address syntax: the sender's problem
        (1, 8): C.POLICY,  # bad sender's system address
        (1, 10): C.BAD_DOMAIN,  # recipient address has null MX (RFC 7505)
        # X.2 mailbox status
        (2, 1): C.INACTIVE_MAILBOX,  # mailbox disabled, not accepting messages
        (2, 2): C.MAILBOX_FULL,  # mailbox full
        (2, 3): C.MAILBOX_FULL,  # message length exceeds administrative limit
        (2, 4): C.OTHER,  # mailing list expansion problem
        # X.3 mail system status
        (3, 1): C.TRANSIENT,  # mail system full
        (3, 2): C.TRANSIENT,  # system not accepting network messages
        (3, 4): C.MAILBOX_FULL,  # message too big for system
        # X.4 network and routing status
        (4, 1): C.TRANSIENT,  # no answer from host
        (4, 2): C.TRANSIENT,  # bad connection
        (4, 3): C.ROUTING,  # directory server (DNS) failure
        (4, 4): C.ROUTING,  # unable to route
        (4, 5): C.TRANSIENT,  # mail system congestion
        (4, 6): C.ROUTING,  # routing loop detected
        (4, 7): C.TRANSIENT,  # delivery time expired
        # X.5 mail delivery protocol status
        (5, 3): C.TRANSIENT,  # too many recipients
        # X.7 security or policy status
        (7, 0): C.POLICY,  # other or undefined security status
        (7, 1): C.POLICY,  # delivery not authorized, message refused
        (7, 2): C.POLICY,  # mailing list expansion prohibited
        (7, 4): C.POLICY,  # security features not supported
        (7, 5): C.AUTH_FAILURE,  # cryptographic failure
        (7, 6): C.AUTH_FAILURE,  # cryptographic algorithm not supported
        (7, 7): C.CONTENT,  # message integrity failure
        (7, 8): C.AUTH_FAILURE,  # authentication credentials invalid
        (7, 9): C.AUTH_FAILURE,  # authentication mechanism is too weak
        (7, 10): C.AUTH_FAILURE,  # encryption needed
        (7, 11): C.AUTH_FAILURE,  # encryption required for requested authentication mechanism
        (7, 12): C.AUTH_FAILURE,  # a password transition is needed
        (7, 13): C.INACTIVE_MAILBOX,  # user account disabled
        (7, 14): C.AUTH_FAILURE,  # trust relationship required
        (7, 15): C.POLICY,  # priority level is too low
        (7, 16): C.POLICY,  # message is too big for the specified priority
        (7, 17): C.INACTIVE_MAILBOX,  # mailbox owner has changed (RRVS)
        (7, 18): C.BAD_DOMAIN,  # domain owner has changed (RRVS)
        (7, 20): C.AUTH_FAILURE,  # no passing DKIM signature found
        (7, 21): C.AUTH_FAILURE,  # no acceptable DKIM signature found
        (7, 22): C.AUTH_FAILURE,  # no valid author-matched DKIM signature found
        (7, 23): C.AUTH_FAILURE,  # SPF validation failed
        (7, 24): C.AUTH_FAILURE,  # SPF validation error
        (7, 25): C.AUTH_FAILURE,  # reverse DNS validation failed
        (7, 26): C.AUTH_FAILURE,  # multiple authentication checks failed
        (7, 27): C.POLICY,  # sender address has null MX
        (7, 28): C.SPAM_BLOCK,  # mail flood detected (Gmail: unusual rate of unsolicited mail)
        (7, 29): C.AUTH_FAILURE,  # ARC validation failure
        (7, 30): C.AUTH_FAILURE,  # REQUIRETLS support required
    }
)
"""Enhanced status codes (subject, detail) -> category; the class digit only sets permanence."""

ENHANCED_SUBJECT: Final[MappingProxyType[int, C]] = MappingProxyType(
    {
        1: C.BAD_MAILBOX,  # other address status (x.1.0 and unlisted details)
        3: C.OTHER,  # mail system status
        4: C.TRANSIENT,  # network and routing
        5: C.OTHER,  # protocol
        6: C.CONTENT,  # message content or media
        7: C.POLICY,  # security or policy
    }
)
"""Subjects whose unlisted details still say something. X.0.x and X.2.0 say nothing: the text
or the reply code decides."""

REPLY_CODES: Final[MappingProxyType[int, C]] = MappingProxyType(
    {
        421: C.TRANSIENT,  # service not available, closing transmission channel
        450: C.TRANSIENT,  # mailbox unavailable (busy or temporarily blocked)
        451: C.TRANSIENT,  # local error in processing
        452: C.TRANSIENT,  # insufficient system storage
        551: C.BAD_MAILBOX,  # user not local
        552: C.MAILBOX_FULL,  # exceeded storage allocation
        553: C.BAD_MAILBOX,  # mailbox name not allowed
    }
)
"""Basic reply codes (RFC 5321 4.2.3) that say something; 550 and 554 are used for everything
and decide nothing alone. Any other 4xx is transient."""
