"""Agreement of the SMTP-answer classifier with the shared KumoMTA samples, read in place.

KumoMTA's enhanced-code rule file is a second opinion on every code it covers; the RFC 3464
delivery status notifications are real answers with the verdict a mail operator gives them.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import re
import tomllib
from email.message import Message
from pathlib import Path
from typing import Final

import pytest

from processor.domain.smtp_classifier import classify_text
from schemas.events import BounceClass

REPO_ROOT: Final = Path(__file__).resolve().parents[3]
KUMOMTA: Final = REPO_ROOT.parent / "shared" / "mta-samples" / "kumomta"
HARD, SOFT, BLOCK = BounceClass.HARD, BounceClass.SOFT, BounceClass.BLOCK

# KumoMTA's classification -> the class a permanent (5xx) answer of it gets here. 4xx answers
# of the address classifications are soft here (only temporary); KumoMTA keeps one name.
KUMO_CLASSES: Final = {
    "InvalidRecipient": HARD,
    "BadDomain": HARD,
    "InactiveMailbox": HARD,
    "InvalidSender": BLOCK,  # the sender's address is refused: a policy block for every mail
    "QuotaIssues": SOFT,
    "NoAnswerFromHost": SOFT,
    "BadConnection": SOFT,
    "DNSFailure": SOFT,
    "RoutingErrors": SOFT,
    "TransientFailure": SOFT,
    "MessageExpired": SOFT,
    "ProtocolErrors": SOFT,
    "AuthenticationFailed": BLOCK,
    "PolicyRelated": BLOCK,
    "TooManyRecipients": SOFT,
}
KNOWN_DISAGREEMENTS: Final = {
    # X.6.x is "message content or media status" in RFC 3463: a refusal for the content is a
    # block here; KumoMTA files it with protocol errors.
    "ProtocolErrors": re.compile(r"^\d{3} [45]\.6\.\d+ "),
}
REPLY_CODES: Final = (421, 450, 451, 452, 525, 550, 551, 552, 553, 554)


def _kumo_rules() -> dict[str, list[re.Pattern[str]]]:
    path = KUMOMTA / "bounce_classifier_iana.toml"
    if not path.is_file():
        pytest.fail(f"shared KumoMTA samples not found at {KUMOMTA}")
    rules = tomllib.loads(path.read_text(encoding="utf-8"))["rules"]
    return {name: [re.compile(pattern) for pattern in patterns] for name, patterns in rules.items()}


def _grid() -> list[str]:
    """Every `reply class.subject.detail ` line KumoMTA's rules could be asked about."""
    return [
        f"{reply} {klass}.{subject}.{detail} "
        for reply, klass, subject, detail in itertools.product(
            REPLY_CODES, (4, 5), range(8), range(31)
        )
    ]


def test_the_classifier_agrees_with_kumomtas_enhanced_code_rules() -> None:
    """Every line KumoMTA's IANA rules classify gets the same class here, bar one documented gap."""
    rules = _kumo_rules()
    assert set(rules) == set(KUMO_CLASSES), "KumoMTA's rule file has classifications we lack"
    compared, disagreements = 0, []
    for line in _grid():
        name = next(
            (n for n, patterns in rules.items() if any(p.search(line) for p in patterns)), None
        )
        if name is None or (name in KNOWN_DISAGREEMENTS and KNOWN_DISAGREEMENTS[name].search(line)):
            continue
        expected = KUMO_CLASSES[name]
        if line.startswith("4") and expected is HARD:
            expected = SOFT
        compared += 1
        verdict = classify_text(line)
        if verdict.bounce_class is not expected:
            disagreements.append((line, name, verdict.bounce_class, verdict.rule))

    assert compared > 1000
    assert disagreements == []


def _status_blocks(path: Path) -> list[Message]:
    """The per-recipient blocks of a DSN's message/delivery-status part."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.compat32)
    blocks: list[Message] = []
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            assert isinstance(payload, list)
            blocks += [
                block for block in payload if isinstance(block, Message) and block.get("Action")
            ]
    return blocks


def _unfolded(value: str | None) -> str:
    return re.sub(r"\s+", " ", value or "").strip()


# file, recipient index (blocks with an Action), expected class, category
DSN_VERDICTS: Final = [
    ("1.eml", 0, SOFT, "transient"),  # 4.0.0, 426 connection timed out
    ("2.eml", 0, HARD, "bad_mailbox"),  # 550 '...' is not a registered gateway user
    ("2.eml", 1, SOFT, "routing"),  # delayed, 4.0.0 (host name lookup failure)
    ("2.eml", 2, HARD, "bad_mailbox"),  # 550 user unknown
    ("3.eml", 0, SOFT, "other"),  # 5.0.0 (unknown permanent failure): nothing more known
    ("4.eml", 0, SOFT, "transient"),  # 4.0.0 (unknown temporary failure)
    ("5.eml", 0, SOFT, "mailbox_full"),  # 552 ... rejected: over quota
    ("6.eml", 0, HARD, "bad_mailbox"),  # Exchange Online 550 5.4.1 Recipient ... Access denied
    ("obsolete_arrival_date.eml", 0, HARD, "bad_mailbox"),  # 550 5.1.1 Mailbox does not exist
]


@pytest.mark.parametrize(
    ("name", "index", "bounce_class", "category"),
    DSN_VERDICTS,
    ids=[f"{row[0]}[{row[1]}]" for row in DSN_VERDICTS],
)
def test_each_shared_delivery_status_notification_gets_the_operators_verdict(
    name: str, index: int, bounce_class: BounceClass, category: str
) -> None:
    """Status and Diagnostic-Code of every recipient of the shared RFC 3464 samples classify."""
    block = _status_blocks(KUMOMTA / "rfc3464" / name)[index]
    status = _unfolded(block.get("Status"))
    diagnostic = _unfolded(block.get("Diagnostic-Code"))

    verdict = classify_text(f"{diagnostic} {status}", enhanced_code=status)

    assert (verdict.bounce_class, verdict.category) == (bounce_class, category)


def test_every_shared_dsn_recipient_is_in_the_verdict_table() -> None:
    """A new sample in the shared folder is noticed, not silently left untested."""
    listed = {(name, index) for name, index, _, _ in DSN_VERDICTS}
    found = {
        (path.name, index)
        for path in sorted((KUMOMTA / "rfc3464").glob("*.eml"))
        for index in range(len(_status_blocks(path)))
    }

    assert found == listed
