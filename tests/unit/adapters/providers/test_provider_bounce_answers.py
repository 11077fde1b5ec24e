"""Every provider adapter reads the SMTP answer where its own bounce label is generic or missing.

Precedence (docs/WEBHOOKS.md): a specific label keeps its class; a generic or missing one gives
way to the classifier; an answer that says nothing leaves the label's default.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.providers import AttributionConfig, Provider, normalize
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.adapters.providers import NormalizeResult

# fixtures/mailgun/payloads_page_permanent_failure.json: the shape of the Permanent Failure
# example of Mailgun's "Webhook Payloads" page (reason `generic`, Gmail's 550 5.1.1 NoSuchUser
# answer in delivery-status), written for these tests with invented ids and signature.
SPRING = AttributionConfig(fallback_campaign_id="spring-sale")
HARD, SOFT, BLOCK = BounceClass.HARD, BounceClass.SOFT, BounceClass.BLOCK
NO_SUCH_USER = "550 5.1.1 The email account that you tried to reach does not exist."


def run(provider: Provider, payload: Any) -> NormalizeResult:
    """Normalize for tenant `acme`, campaign `spring-sale` when the payload names none."""
    return normalize(provider, payload, tenant_id="acme", attribution=SPRING)


def bounce_of(provider: Provider, payload: Any) -> tuple[EventType, BounceClass | None, Any]:
    """The one event's type, class and category."""
    [event] = run(provider, payload).events
    return event.type, event.bounce_class, event.bounce_category


# --- Mailgun -----------------------------------------------------------------------------------


def test_mailguns_documented_generic_5_1_1_failure_is_a_hard_bounce(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """The motivating bug: `reason: generic` with Gmail's 550 5.1.1 was a soft bounce."""
    payload = fixture_payload("mailgun", "payloads_page_permanent_failure.json")

    assert bounce_of(Provider.MAILGUN, payload) == (EventType.BOUNCE, HARD, "bad_mailbox")


def _mailgun_failed(reason: str | None, status: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "event": "failed",
        "id": "evt-1",
        "severity": "permanent",
        "timestamp": 1770146799.8,
        "recipient": "ana@example.com",
        "delivery-status": status,
    }
    if reason is not None:
        data["reason"] = reason
    return data


@pytest.mark.parametrize(
    ("reason", "status", "expected"),
    [
        ("generic", {"code": 550, "enhanced-code": "5.1.1", "message": ""}, (HARD, "bad_mailbox")),
        ("generic", {"code": "550", "message": "Requested action not taken: mailbox unavailable"},
         (HARD, "bad_mailbox")),
        ("generic", {"code": 552, "enhanced-code": "5.2.2", "message": "Mailbox full"},
         (SOFT, "mailbox_full")),
        ("generic", {"code": 554, "message": "5.7.1 Message rejected under suspicion of SPAM"},
         (BLOCK, "spam_block")),
        ("generic", {"code": 421, "message": "4.4.2 Connection dropped"}, (SOFT, "transient")),
        ("generic", {"code": 550, "enhanced-code": "", "message": "", "description": ""},
         (SOFT, "other")),
        ("generic", "not an object", (SOFT, "other")),
        (None, {"code": 550, "enhanced-code": "5.1.1"}, (HARD, "bad_mailbox")),
        ("bounce", {"code": 550, "message": "5.1.1 user unknown"}, (HARD, "bad_mailbox")),
        ("bounce", {"code": 550, "message": "Relay Not Permitted"}, (HARD, "bad_mailbox")),
        ("espblock", {"code": 554, "message": "5.7.1 blocked using Spamhaus"},
         (BLOCK, "spam_block")),
        ("old", {"code": 550, "enhanced-code": "5.1.1"}, (SOFT, "transient")),
    ],
)  # fmt: skip
def test_mailgun_permanent_failures_follow_the_precedence(
    reason: str | None, status: Any, expected: tuple[BounceClass, str]
) -> None:
    """`generic` or no reason: delivery-status decides; specific reasons keep their class."""
    _, bounce_class, category = bounce_of(Provider.MAILGUN, _mailgun_failed(reason, status))

    assert (bounce_class, category) == expected


# --- SendGrid ----------------------------------------------------------------------------------


def _sendgrid_bounce(**fields: Any) -> list[dict[str, Any]]:
    record = {
        "email": "ana@example.com",
        "timestamp": 1513299569,
        "event": "bounce",
        "sg_event_id": "ev-1",
        "sg_message_id": "m-1",
    }
    return [record | fields]


@pytest.mark.parametrize("bounce_type", ["", None, "  "])
def test_a_sendgrid_bounce_with_an_empty_type_is_not_assumed_hard(bounce_type: str | None) -> None:
    """Issue 18: `type` "" or null gave a hard bounce; without status or reason it is soft."""
    payload = _sendgrid_bounce(type=bounce_type)

    assert bounce_of(Provider.SENDGRID, payload) == (EventType.BOUNCE, SOFT, "other")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"type": "", "status": "5.1.1", "reason": "550 5.1.1 user unknown"},
         (HARD, "bad_mailbox")),
        ({"type": None, "status": "5.7.1", "reason": "554 blocked using Spamhaus"},
         (BLOCK, "spam_block")),
        ({"status": "4.2.2", "reason": "452 4.2.2 over quota"}, (SOFT, "mailbox_full")),
        ({"status": "5.0.0", "reason": "500 unknown recipient"}, (HARD, "bad_mailbox")),
        ({"type": "bounce", "status": "5.2.2", "reason": "552 mailbox full"},
         (HARD, "bad_mailbox")),
        ({"type": "blocked", "status": "5.0.0", "reason": "500 unknown recipient"},
         (BLOCK, "policy")),
        ({"type": "blocked", "reason": "550 5.7.1 listed at zen.spamhaus.org"},
         (BLOCK, "spam_block")),
    ],
)  # fmt: skip
def test_sendgrid_bounces_without_a_type_are_classified_from_status_and_reason(
    fields: dict[str, Any], expected: tuple[BounceClass, str]
) -> None:
    """No type: status and reason decide. `bounce`/`blocked` keep their class, refine category."""
    _, bounce_class, category = bounce_of(Provider.SENDGRID, _sendgrid_bounce(**fields))

    assert (bounce_class, category) == expected


# --- Amazon SES --------------------------------------------------------------------------------


def _ses_bounce(
    bounce_type: str, subtype: str | None, recipients: list[dict[str, Any]]
) -> dict[str, Any]:
    bounce: dict[str, Any] = {
        "bounceType": bounce_type,
        "bouncedRecipients": recipients,
        "timestamp": "2017-08-05T00:41:02.669Z",
        "feedbackId": "fb-1",
    }
    if subtype is not None:
        bounce["bounceSubType"] = subtype
    return {
        "eventType": "Bounce",
        "bounce": bounce,
        "mail": {
            "timestamp": "2017-08-05T00:40:02.012Z",
            "messageId": "m-1",
            "destination": [r["emailAddress"] for r in recipients],
        },
    }


def test_ses_classifies_each_recipient_of_a_general_bounce_by_its_own_answer() -> None:
    """One Permanent/General bounce, three recipients, three answers: three classes."""
    payload = _ses_bounce(
        "Permanent",
        "General",
        [
            {"emailAddress": "a@example.com", "status": "5.1.1",
             "diagnosticCode": "smtp; 550 5.1.1 user unknown"},
            {"emailAddress": "b@example.com", "status": "5.7.1",
             "diagnosticCode": "smtp; 554 5.7.1 blocked using Spamhaus"},
            {"emailAddress": "c@example.com"},
        ],
    )  # fmt: skip

    events = run(Provider.SES, payload).events

    assert [(e.recipient.address, e.bounce_class, e.bounce_category) for e in events] == [
        ("a@example.com", HARD, "bad_mailbox"),
        ("b@example.com", BLOCK, "spam_block"),
        ("c@example.com", HARD, "bad_mailbox"),  # nothing more known: SES's permanent verdict
    ]


@pytest.mark.parametrize(
    ("bounce_type", "subtype", "status", "diagnostic", "expected"),
    [
        ("Transient", "General", "5.1.1", "smtp; 550 5.1.1 user unknown",
         (SOFT, "bad_mailbox")),
        ("Transient", "General", "4.7.0", "smtp; 421 4.7.0 [TSS04] deferred",
         (BLOCK, "spam_block")),
        ("Transient", "MailboxFull", "5.2.2", "smtp; 552 5.2.2 full", (SOFT, "mailbox_full")),
        ("Transient", "ContentRejected", None, None, (BLOCK, "content")),
        ("Undetermined", "Undetermined", "5.1.1", "smtp; 550 5.1.1 no such user",
         (HARD, "bad_mailbox")),
        ("Undetermined", None, None, None, (SOFT, "other")),
        ("Permanent", "NoEmail", "5.7.1", "smtp; 554 5.7.1 blocked", (HARD, "bad_mailbox")),
        ("Permanent", "General", "5.2.2", "smtp; 552 5.2.2 over quota", (SOFT, "mailbox_full")),
    ],
)  # fmt: skip
def test_ses_bounce_types_follow_the_precedence(
    bounce_type: str,
    subtype: str | None,
    status: str | None,
    diagnostic: str | None,
    expected: tuple[BounceClass, str],
) -> None:
    """General and Undetermined give way to the answer; Transient is never hard; others keep."""
    recipient: dict[str, Any] = {"emailAddress": "a@example.com"}
    if status is not None:
        recipient |= {"status": status, "diagnosticCode": diagnostic}

    _, bounce_class, category = bounce_of(
        Provider.SES, _ses_bounce(bounce_type, subtype, [recipient])
    )

    assert (bounce_class, category) == expected


# --- Postmark ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounce_type", "details", "expected"),
    [
        ("Unknown", "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
         (HARD, "bad_mailbox")),
        ("Unknown", "smtp;554 5.7.1 Service unavailable; blocked using Spamhaus",
         (BLOCK, "spam_block")),
        ("Unknown", "Test bounce details", (SOFT, "other")),
        ("HardBounce", "smtp;550 5.2.1 The email account that you tried to reach is disabled.",
         (HARD, "inactive_mailbox")),
        ("HardBounce", "smtp;554 5.7.1 blocked using Spamhaus", (HARD, "bad_mailbox")),
        ("SoftBounce", "smtp;550 5.1.1 user unknown", (SOFT, "transient")),
    ],
)  # fmt: skip
def test_postmark_unknown_bounces_are_classified_from_their_details(
    shared_sample: Callable[[str, str], Any],
    bounce_type: str,
    details: str,
    expected: tuple[BounceClass, str],
) -> None:
    """Type `Unknown` gives way to Details (the server's answer); other types keep their class."""
    payload = copy.deepcopy(shared_sample("postmark", "bounce_hard.json"))
    payload |= {"Type": bounce_type, "Details": details}
    del payload["TypeCode"]

    _, bounce_class, category = bounce_of(Provider.POSTMARK, payload)

    assert (bounce_class, category) == expected


# --- agreement on the shared samples ------------------------------------------------------------

# provider, shared sample, [(class, category) of each bounce event, in order]
SHARED_BOUNCES: list[tuple[Provider, str, list[tuple[BounceClass, str]]]] = [
    (Provider.SENDGRID, "bounce.json", [(HARD, "bad_mailbox")]),
    (Provider.SENDGRID, "blocked.json", [(BLOCK, "policy")]),  # "500 unknown recipient" aside
    (Provider.SENDGRID, "batch_all_event_types.json", [(HARD, "bad_mailbox")]),
    (Provider.SES, "event_publishing_bounce.json", [(HARD, "bad_mailbox")]),
    (Provider.SES, "sns_notification_bounce_with_dsn.json", [(HARD, "bad_mailbox")]),
    (Provider.SES, "sns_notification_bounce_without_dsn.json",
     [(HARD, "bad_mailbox"), (HARD, "bad_mailbox")]),
    (Provider.POSTMARK, "bounce_hard.json", [(HARD, "bad_mailbox")]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "name", "expected"),
    SHARED_BOUNCES,
    ids=[f"{row[0]}/{row[1]}" for row in SHARED_BOUNCES],
)
def test_the_shared_provider_samples_bounce_with_the_expected_class_and_category(
    shared_sample: Callable[[str, str], Any],
    provider: Provider,
    name: str,
    expected: list[tuple[BounceClass, str]],
) -> None:
    """Every bounce of the shared samples carries its class and a category."""
    result = run(provider, shared_sample(provider.value, name))

    bounces = [
        (event.bounce_class, event.bounce_category)
        for event in result.events
        if event.type is EventType.BOUNCE
    ]
    assert bounces == expected


def test_sparkposts_documented_undetermined_bounces_are_blocks_by_their_answer(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """SparkPost's samples: class 1 with 554 "MAIL REFUSED - IP ... is in black list"."""
    result = run(Provider.SPARKPOST, fixture_payload("sparkpost", "event_samples_batch.json"))

    bounces = [(e.bounce_class, e.bounce_category) for e in result.events if e.bounce_class]
    assert bounces == [(BLOCK, "spam_block"), (BLOCK, "spam_block")]


def test_only_bounces_carry_a_category(shared_sample: Callable[[str, str], Any]) -> None:
    """Deliveries, opens, complaints... carry neither a bounce class nor a category."""
    result = run(Provider.SENDGRID, shared_sample("sendgrid", "batch_all_event_types.json"))

    assert len(result.events) > 1
    for event in result.events:
        assert (event.bounce_category is None) is (event.type is not EventType.BOUNCE)
