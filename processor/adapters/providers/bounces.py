"""A provider's bounce label and the SMTP answer it carries, made into one class and category.

The precedence every adapter follows (docs/WEBHOOKS.md, "Bounce classification"):
a specific label wins; a generic or missing one gives way to the SMTP-answer classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from processor.domain.smtp_classifier import classify, parse_answer
from schemas.events import BounceCategory, BounceClass

if TYPE_CHECKING:
    from processor.domain.smtp_classifier import SmtpAnswer


@dataclass(frozen=True, slots=True)
class Label:
    """What a provider says of one bounce, and how far that is to be trusted."""

    bounce_class: BounceClass
    category: BounceCategory
    """The category the label itself implies; used when the answer says nothing more."""
    generic: bool = False
    """The label is no verdict (Mailgun `generic`, SparkPost class 1 or 40, SES Undetermined...):
    the SMTP answer decides when it says anything."""
    temporary: bool = False
    """The provider calls the failure temporary: whatever the answer, never a hard bounce."""


@dataclass(frozen=True, slots=True)
class Bounce:
    """The class and category an event gets."""

    bounce_class: BounceClass
    category: BounceCategory


def specific(bounce_class: BounceClass, category: BounceCategory) -> Label:
    """A label that is the provider's verdict: it keeps its class."""
    return Label(bounce_class, category)


def generic(
    bounce_class: BounceClass, category: BounceCategory, *, temporary: bool = False
) -> Label:
    """A label that says little: the answer decides, the label is only the default."""
    return Label(bounce_class, category, generic=True, temporary=temporary)


def resolve(label: Label, answer: SmtpAnswer) -> Bounce:
    """One bounce's class and category from the provider's label and the SMTP answer.

    - Generic label and an answer that says something: the classifier's class and category
      (capped at soft when the provider called the failure temporary).
    - Specific label: its class; the classifier's finer category when it agrees on the class,
      else the label's own category.
    - An answer that says nothing: the label's class and category.
    """
    verdict = classify(answer)
    if not verdict.informative:
        return Bounce(label.bounce_class, label.category)
    if label.generic:
        bounce_class = verdict.bounce_class
        if label.temporary and bounce_class is BounceClass.HARD:
            bounce_class = BounceClass.SOFT
        return Bounce(bounce_class, verdict.category)
    if verdict.bounce_class is label.bounce_class:
        return Bounce(label.bounce_class, verdict.category)
    return Bounce(label.bounce_class, label.category)


def resolve_text(
    label: Label,
    text: str | None,
    *,
    reply_code: int | str | None = None,
    enhanced_code: str | None = None,
) -> Bounce:
    """`resolve` with the answer parsed from a diagnostic text and separate code fields."""
    return resolve(label, parse_answer(text, reply_code=reply_code, enhanced_code=enhanced_code))


def joined_text(*parts: object) -> str | None:
    """The non-empty string parts joined by a space (provider fields may be null or non-text)."""
    texts = [part.strip() for part in parts if isinstance(part, str) and part.strip()]
    return " ".join(texts) or None
