"""The one SMTP-answer classifier: reply code, enhanced status code and text -> class, category.

Pure and deterministic. The rules are data (`smtp_provider_rules`, `smtp_rules`); this module
parses answers and applies the tables in a fixed order, first match wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from processor.domain.smtp_provider_rules import PROVIDER_TEXT_RULES, TextRule
from processor.domain.smtp_rules import (
    COMMON_TEXT_RULES,
    ENHANCED_SUBJECT,
    ENHANCED_SUBJECT_DETAIL,
    REPLY_CODES,
    WEAK_TEXT_RULES,
)
from processor.domain.text_patterns import PatternSet
from schemas.events import BounceCategory, BounceClass

MAX_TEXT_CHARS: Final = 1_000
"""Only this much of a diagnostic text is read: answers are short, request bodies may not be."""

_ADDRESS_CATEGORIES: Final = frozenset(
    {BounceCategory.BAD_MAILBOX, BounceCategory.BAD_DOMAIN, BounceCategory.INACTIVE_MAILBOX}
)
"""Hard when the answer is permanent (5xx), soft when it was only a temporary refusal (4xx)."""
_BLOCK_CATEGORIES: Final = frozenset(
    {
        BounceCategory.POLICY,
        BounceCategory.SPAM_BLOCK,
        BounceCategory.CONTENT,
        BounceCategory.AUTH_FAILURE,
    }
)
"""Blocks whatever the permanence: a 421 for the sender's reputation is a reputation signal."""


class Basis(StrEnum):
    """What decided a verdict."""

    TEXT = "text"
    ENHANCED_CODE = "enhanced_code"
    REPLY_CODE = "reply_code"
    NONE = "none"
    """Nothing known: category `other`, class soft. Callers keep their own label then."""


@dataclass(frozen=True, slots=True)
class EnhancedCode:
    """An RFC 3463 enhanced status code, class.subject.detail (e.g. 5.1.1)."""

    klass: int
    subject: int
    detail: int

    def __str__(self) -> str:
        return f"{self.klass}.{self.subject}.{self.detail}"


@dataclass(frozen=True, slots=True)
class SmtpAnswer:
    """What a receiving server answered, as far as it is known."""

    reply_code: int | None = None
    enhanced_code: EnhancedCode | None = None
    text: str = ""

    @property
    def permanent(self) -> bool | None:
        """True for 5xx, False for 4xx; from the enhanced class without a reply code."""
        if self.reply_code is not None:
            return self.reply_code >= 500  # noqa: PLR2004  # RFC 5321: 5yz is a permanent failure
        if self.enhanced_code is not None:
            return self.enhanced_code.klass == 5  # noqa: PLR2004  # RFC 3463: class 5 is permanent
        return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classifier's answer, with the rule that decided it (for tests and explanations)."""

    bounce_class: BounceClass
    category: BounceCategory
    basis: Basis
    rule: str

    @property
    def informative(self) -> bool:
        """Whether the answer said anything beyond 'it failed'."""
        return self.category is not BounceCategory.OTHER


_REPLY: Final = re.compile(r"(?:^|[\s;:#(\[=\"'])([245][0-5]\d)(?=[ \-]|$)", re.ASCII)
_ENHANCED: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])", re.ASCII)
_CONTINUATION: Final = re.compile(r"\n\s*[245]\d\d[ \-](?:[245]\.\d{1,3}\.\d{1,3}\s)?", re.ASCII)
"""The `550-5.1.1 ` prefix repeated on each line of a multi-line answer: dropped, so a phrase
split over two lines still matches."""
_BLANKS: Final = re.compile(r"\s+")


def _compiled(rules: tuple[TextRule, ...]) -> tuple[tuple[str, BounceCategory, PatternSet], ...]:
    return tuple(
        (name, category, PatternSet(alternatives)) for name, category, alternatives in rules
    )


_STRONG_TEXT: Final = _compiled(PROVIDER_TEXT_RULES + COMMON_TEXT_RULES)
_WEAK_TEXT: Final = _compiled(WEAK_TEXT_RULES)


def parse_enhanced_code(text: str | None) -> EnhancedCode | None:
    """The first enhanced status code in `text` (`5.1.1`, `#5.1.1`), or None."""
    if not text:
        return None
    match = _ENHANCED.search(text[:MAX_TEXT_CHARS])
    if match is None:
        return None
    klass, subject, detail = (int(group) for group in match.groups())
    return EnhancedCode(klass, subject, detail)


def parse_reply_code(value: int | str | None) -> int | None:
    """An SMTP reply code (2xx, 4xx, 5xx) from a number or numeric text; None otherwise.

    Only ASCII digits count: `int()` also reads other scripts' digits, no mail server sends
    them.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit() and len(text) == 3):  # noqa: PLR2004  # RFC 5321 codes have three digits
            return None
        value = int(text)
    if isinstance(value, int) and 200 <= value <= 599:  # noqa: PLR2004  # RFC 5321 code range
        return value
    return None


def parse_answer(
    text: str | None,
    *,
    reply_code: int | str | None = None,
    enhanced_code: str | None = None,
) -> SmtpAnswer:
    """An answer from a diagnostic text (`smtp; 550 5.1.1 user unknown`) and separate fields.

    Codes given separately win over codes found in the text; the text is read for whatever the
    separate fields leave out. Only the first `MAX_TEXT_CHARS` characters of the text are read.
    """
    raw = (text or "")[:MAX_TEXT_CHARS]
    joined = _BLANKS.sub(" ", _CONTINUATION.sub(" ", raw)).strip()
    code = parse_reply_code(reply_code)
    if code is None:
        found = _REPLY.search(raw)
        code = None if found is None else int(found.group(1))
    enhanced = parse_enhanced_code(enhanced_code) or parse_enhanced_code(raw)
    return SmtpAnswer(reply_code=code, enhanced_code=enhanced, text=joined)


def class_of(category: BounceCategory, *, permanent: bool | None) -> BounceClass:
    """The bounce class of a category: address categories are hard unless only temporary."""
    if category in _ADDRESS_CATEGORIES:
        return BounceClass.SOFT if permanent is False else BounceClass.HARD
    if category in _BLOCK_CATEGORIES:
        return BounceClass.BLOCK
    return BounceClass.SOFT


def _verdict(category: BounceCategory, basis: Basis, rule: str, answer: SmtpAnswer) -> Verdict:
    return Verdict(class_of(category, permanent=answer.permanent), category, basis, rule)


def _by_text(
    rules: tuple[tuple[str, BounceCategory, PatternSet], ...], answer: SmtpAnswer
) -> Verdict | None:
    if not answer.text:
        return None
    lowered = answer.text.lower()
    for name, category, patterns in rules:
        if patterns.search(lowered):
            return _verdict(category, Basis.TEXT, name, answer)
    return None


def _by_enhanced_code(answer: SmtpAnswer) -> Verdict | None:
    code = answer.enhanced_code
    if code is None or code.klass == 2:  # noqa: PLR2004  # 2.x.x is a success, no verdict
        return None
    category = ENHANCED_SUBJECT_DETAIL.get((code.subject, code.detail)) or ENHANCED_SUBJECT.get(
        code.subject
    )
    if category is None or category is BounceCategory.OTHER:
        return None
    return _verdict(category, Basis.ENHANCED_CODE, f"enhanced:{code}", answer)


def _by_reply_code(answer: SmtpAnswer) -> Verdict | None:
    code = answer.reply_code
    if code is None:
        return None
    enhanced = answer.enhanced_code
    if enhanced is not None and enhanced.subject != 0 and code >= 500:  # noqa: PLR2004  # 5yz
        # An enhanced code more specific than x.0.x already said what the failure is about
        # (e.g. 553 5.5.4 is a protocol error, not a bad mailbox); the reply code adds nothing.
        return None
    category = REPLY_CODES.get(code)
    if category is None and 400 <= code < 500:  # noqa: PLR2004  # RFC 5321: 4yz is transient
        category = BounceCategory.TRANSIENT
    if category is None:
        return None
    return _verdict(category, Basis.REPLY_CODE, f"reply:{code}", answer)


def classify(answer: SmtpAnswer) -> Verdict:
    """Classify one answer, first match wins.

    In order: the providers' exact texts and common wording, the enhanced code, vague policy
    words, the basic reply code; `other` (soft) when none of them says anything.
    """
    verdict = (
        _by_text(_STRONG_TEXT, answer)
        or _by_enhanced_code(answer)
        or _by_text(_WEAK_TEXT, answer)
        or _by_reply_code(answer)
    )
    if verdict is not None:
        return verdict
    return _verdict(BounceCategory.OTHER, Basis.NONE, "none", answer)


def classify_text(
    text: str | None,
    *,
    reply_code: int | str | None = None,
    enhanced_code: str | None = None,
) -> Verdict:
    """`classify(parse_answer(...))`: the usual entry point of the provider adapters."""
    return classify(parse_answer(text, reply_code=reply_code, enhanced_code=enhanced_code))
