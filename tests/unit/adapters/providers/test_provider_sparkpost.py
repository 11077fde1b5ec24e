"""Tests of the SparkPost webhook adapter on payloads as SparkPost documents them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.providers import AttributionConfig, Provider, normalize
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.adapters.providers import NormalizeResult

# Origin of fixtures/sparkpost/ (written for these tests; the shared samples have no SparkPost):
# - event_samples_batch.json: every event of SparkPost's "Event Samples" endpoint
#   (GET /api/v1/webhooks/events/samples, as published in SparkPost/developers.sparkpost.com,
#   samples.json), each wrapped in `{"msys": {"<class>_event": ...}}` as webhook batches carry
#   them. All fifteen share event_id 92356927693813856 and campaign "Example Campaign Name".
# - injection_epoch_string_timestamp.json: the older documented injection sample, whose
#   timestamp is the string "1454442600".
# - webhook_validation_ping.json: the sample batch SparkPost posts to validate a webhook.
CUSTOM_KEY = AttributionConfig(campaign_keys=("customKey",))
"""A tenant whose campaign lives in the rcpt_meta key `customKey` of SparkPost's samples."""
APRIL_2016 = datetime(2016, 4, 18, 14, 25, 7, tzinfo=UTC)


def sparkpost(payload: Any, attribution: AttributionConfig | None = None) -> NormalizeResult:
    """Normalize a SparkPost payload for tenant `acme`."""
    return normalize(Provider.SPARKPOST, payload, tenant_id="acme", attribution=attribution)


def test_every_documented_sample_event_maps_or_is_ignored_by_type(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """The samples batch gives one event per delivery signal and ignores the rest, by index."""
    result = sparkpost(fixture_payload("sparkpost", "event_samples_batch.json"), CUSTOM_KEY)

    # The two bounces are class 1 (Undetermined): their answer, 554 "MAIL REFUSED - IP ... is in
    # black list", makes them spam blocks.
    assert [(e.event_id, e.type, e.bounce_class) for e in result.events] == [
        ("sparkpost:bounce:92356927693813856", EventType.BOUNCE, BounceClass.BLOCK),
        ("sparkpost:delivery:92356927693813856", EventType.DELIVERED, None),
        ("sparkpost:injection:92356927693813856", EventType.SENT, None),
        ("sparkpost:spam_complaint:92356927693813856", EventType.COMPLAINT, None),
        ("sparkpost:out_of_band:92356927693813856", EventType.BOUNCE, BounceClass.BLOCK),
        ("sparkpost:delay:92356927693813856", EventType.DEFERRED, None),
        ("sparkpost:click:92356927693813856", EventType.CLICK, None),
        ("sparkpost:open:92356927693813856", EventType.OPEN, None),
        ("sparkpost:initial_open:92356927693813856", EventType.OPEN, None),
        ("sparkpost:list_unsubscribe:92356927693813856", EventType.UNSUBSCRIBE, None),
        ("sparkpost:link_unsubscribe:92356927693813856", EventType.UNSUBSCRIBE, None),
    ]
    for event in result.events:
        assert event.recipient.address == "recipient@example.com"
        assert event.occurred_at == APRIL_2016
        assert event.provider_message_id == "000443ee14578172be22"
        assert event.provider_event_id == "92356927693813856"
        assert event.campaign_id == "customValue"
    assert [(i.index, i.field) for i in result.ignored] == [
        (3, "sparkpost[3].msys.message_event.type"),  # sms_status
        (6, "sparkpost[6].msys.message_event.reason"),  # policy_rejection for a blacklisted IP
        (11, "sparkpost[11].msys.gen_event.type"),  # generation_failure
        (12, "sparkpost[12].msys.gen_event.reason"),  # generation_rejection, not suppression
    ]
    assert result.rejected == ()


def test_the_samples_campaign_name_with_spaces_is_kept_as_it_is(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """campaign_id "Example Campaign Name" names the campaign unchanged (inner spaces are fine)."""
    payload = fixture_payload("sparkpost", "event_samples_batch.json")[:1]

    result = sparkpost(payload, AttributionConfig())

    assert result.rejected == ()
    assert [e.campaign_id for e in result.events] == ["Example Campaign Name"]


def test_a_campaign_id_with_the_key_separator_is_rejected_naming_the_field(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """A ':' would corrupt the `tenant:campaign` key, so such a campaign id is rejected."""
    payload = fixture_payload("sparkpost", "event_samples_batch.json")[:1]
    payload[0]["msys"]["message_event"]["campaign_id"] = "spring:sale"

    [rejection] = sparkpost(payload, AttributionConfig()).rejected

    assert rejection.field == "sparkpost[0].msys.message_event.campaign_id"
    assert rejection.problem.startswith("not a valid campaign_id")


def test_an_epoch_timestamp_sent_as_a_string_is_read(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """The older sample's "timestamp": "1454442600" is 2016-02-02T19:50:00Z."""
    [event] = sparkpost(
        fixture_payload("sparkpost", "injection_epoch_string_timestamp.json"), CUSTOM_KEY
    ).events

    assert event.type is EventType.SENT
    assert event.occurred_at == datetime(2016, 2, 2, 19, 50, tzinfo=UTC)


def test_the_webhook_validation_ping_is_ignored(fixture_payload: Callable[[str, str], Any]) -> None:
    """SparkPost's `[{"msys": {}}]` validation batch is ignored, not rejected."""
    result = sparkpost(fixture_payload("sparkpost", "webhook_validation_ping.json"), CUSTOM_KEY)

    assert result.events == ()
    assert result.rejected == ()
    assert [i.field for i in result.ignored] == ["sparkpost[0].msys"]


def test_a_redelivered_batch_maps_to_identical_event_ids(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """The same batch delivered twice yields the same event ids."""
    first = sparkpost(fixture_payload("sparkpost", "event_samples_batch.json"), CUSTOM_KEY)
    again = sparkpost(fixture_payload("sparkpost", "event_samples_batch.json"), CUSTOM_KEY)

    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]


def _bounce(bounce_class: Any, **fields: Any) -> list[dict[str, Any]]:
    event: dict[str, Any] = {
        "type": "bounce",
        "bounce_class": bounce_class,
        "event_id": "84345317653491230",
        "message_id": "0004e3724f57753a3561",
        "rcpt_to": "bounce@example.com",
        "rcpt_meta": {"campaign_id": "spring-sale"},
        "reason": "550 5.1.1 ...@... Recipient address rejected: ...",
        "timestamp": "1464824548",
    }
    event.update(fields)
    return [{"msys": {"message_event": event}}]


@pytest.mark.parametrize(
    ("bounce_class", "expected"),
    [
        ("10", BounceClass.HARD),
        (10, BounceClass.HARD),
        ("30", BounceClass.HARD),
        ("90", BounceClass.HARD),
        ("20", BounceClass.SOFT),
        ("21", BounceClass.SOFT),
        ("22", BounceClass.SOFT),
        ("23", BounceClass.SOFT),
        ("24", BounceClass.SOFT),
        ("60", BounceClass.SOFT),
        ("70", BounceClass.SOFT),
        ("100", BounceClass.SOFT),
        ("50", BounceClass.BLOCK),
        ("51", BounceClass.BLOCK),
        ("52", BounceClass.BLOCK),
        ("53", BounceClass.BLOCK),
        ("54", BounceClass.BLOCK),
    ],
)
def test_bounce_classes_follow_sparkposts_classification_table(
    bounce_class: Any, expected: BounceClass
) -> None:
    """Each bounce classification code, as a string or a number, maps to its category."""
    [event] = sparkpost(_bounce(bounce_class)).events

    assert (event.type, event.bounce_class) == (EventType.BOUNCE, expected)
    assert event.occurred_at == datetime(2016, 6, 1, 23, 42, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bounce_class", "reason", "expected", "category"),
    [
        ("1", "550 5.1.1 <a@b.example>: Recipient address rejected: User unknown", "hard",
         "bad_mailbox"),
        ("40", "552 5.2.2 Mailbox full", "soft", "mailbox_full"),
        ("40", "554 5.7.1 Service unavailable; Client host [1.2.3.4] blocked using Spamhaus",
         "block", "spam_block"),
        ("1", "421 4.4.2 Connection dropped", "soft", "transient"),
        ("1", "no text a classifier could read", "soft", "other"),
    ],
)  # fmt: skip
def test_undetermined_and_generic_classes_are_decided_by_the_smtp_answer(
    bounce_class: str, reason: str, expected: str, category: str
) -> None:
    """Classes 1 (Undetermined) and 40 (Generic Bounce) are no verdict: raw_reason decides."""
    [event] = sparkpost(_bounce(bounce_class, raw_reason=reason)).events

    assert (event.bounce_class, event.bounce_category) == (expected, category)


def test_a_specific_class_keeps_its_class_whatever_the_answer_says() -> None:
    """Class 10 (Invalid Recipient) stays hard even when the answer reads like a block."""
    [event] = sparkpost(_bounce("10", raw_reason="554 5.7.1 blocked using Spamhaus")).events

    assert (event.bounce_class, event.bounce_category) == ("hard", "bad_mailbox")


@pytest.mark.parametrize("digits", ["\u0661\u0660", "\uff11\uff10", "\u09e7\u09e6", " 1O"])
def test_bounce_classes_in_other_scripts_digits_are_rejected(digits: str) -> None:
    """Arabic-Indic, full-width or Bengali digits are not SparkPost's class 10."""
    [rejection] = sparkpost(_bounce(digits)).rejected

    assert rejection.field == "sparkpost[0].msys.message_event.bounce_class"


@pytest.mark.parametrize(("kind", "event_type"), [("inband", "bounce"), ("outofband", "bounce")])
def test_momentum_in_band_and_out_of_band_bounces_are_bounces(kind: str, event_type: str) -> None:
    """Momentum names its bounce events `inband` and `outofband`: they are bounces too."""
    [event] = sparkpost(
        _bounce("1", type=kind, raw_reason="550 5.1.1 user unknown", error_code="550")
    ).events

    assert (event.type, event.bounce_class, event.bounce_category) == (
        event_type,
        "hard",
        "bad_mailbox",
    )
    assert event.event_id == f"sparkpost:{kind}:84345317653491230"


@pytest.mark.parametrize("bounce_class", ["25", "80"])
def test_admin_class_bounces_are_ignored(bounce_class: str) -> None:
    """Admin failures (25) and subscribe requests (80) are no verdict on the address."""
    result = sparkpost(_bounce(bounce_class))

    assert result.events == ()
    assert [i.field for i in result.ignored] == ["sparkpost[0].msys.message_event.bounce_class"]


def test_an_admin_bounce_for_a_suppressed_recipient_is_a_suppressed_drop() -> None:
    """Class 25 with a suppression reason is a send to a suppressed address."""
    reason = "554 5.7.1 recipient address suppressed due to customer policy"

    [event] = sparkpost(_bounce("25", reason=reason)).events

    assert event.type is EventType.DROPPED_SUPPRESSED


def test_a_generation_rejection_for_a_suppressed_recipient_is_a_suppressed_drop() -> None:
    """SparkPost's documented rejection of a suppressed recipient is dropped-suppressed."""
    payload = [
        {
            "msys": {
                "gen_event": {
                    "type": "generation_rejection",
                    "error_code": "554",
                    "event_id": "102360394390563734",
                    "message_id": "0005c29950577c61695d",
                    "raw_rcpt_to": "suppressed@example.com",
                    "raw_reason": "554 5.7.1 recipient address suppressed due to customer policy",
                    "rcpt_to": "suppressed@example.com",
                    "reason": "554 5.7.1 recipient address suppressed due to customer policy",
                    "timestamp": "1464900034",
                    "transmission_id": "102360394387646691",
                    "rcpt_meta": {"campaign_id": "spring-sale"},
                }
            }
        }
    ]

    [event] = sparkpost(payload).events

    assert event.type is EventType.DROPPED_SUPPRESSED
    assert event.event_id == "sparkpost:generation_rejection:102360394390563734"


@pytest.mark.parametrize(
    ("bounce_class", "reason"),
    [
        ("11", "sparkpost[0].msys.message_event.bounce_class: unknown bounce class '11'"),
        ("hard", "sparkpost[0].msys.message_event.bounce_class: unknown bounce class 'hard'"),
        (None, "sparkpost[0].msys.message_event.bounce_class: missing"),
    ],
)
def test_an_unknown_bounce_class_is_rejected_naming_the_field(
    bounce_class: Any, reason: str
) -> None:
    """A bounce whose class is absent or not in SparkPost's table is rejected, not guessed."""
    [rejection] = sparkpost(_bounce(bounce_class)).rejected

    assert rejection.reason == reason


def test_a_not_spam_feedback_report_is_ignored() -> None:
    """A spam_complaint whose fbtype is not-spam is no complaint."""
    payload = _bounce("10", type="spam_complaint", fbtype="not-spam")

    result = sparkpost(payload)

    assert result.events == ()
    assert [i.field for i in result.ignored] == ["sparkpost[0].msys.message_event.fbtype"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([{}], "sparkpost[0].msys: missing"),
        ([{"msys": []}], "sparkpost[0].msys: expected an object, got array"),
        ([{"msys": {"a_event": {}, "b_event": {}}}], "sparkpost[0].msys: expected one event class"),
        (_bounce("10", rcpt_to=None, raw_rcpt_to=None),
         "sparkpost[0].msys.message_event.rcpt_to: missing"),
        (_bounce("10", timestamp="1464824548000000"), "sparkpost[0].msys.message_event.timestamp"),
    ],
)  # fmt: skip
def test_malformed_records_are_rejected_naming_the_field(payload: Any, reason: str) -> None:
    """Batches whose records lack their structure or fields are rejected by path."""
    [rejection] = sparkpost(payload).rejected

    assert rejection.reason.startswith(reason)


def test_the_rcpt_meta_campaign_wins_over_sparkposts_campaign_id() -> None:
    """A configured rcpt_meta key names the campaign even when campaign_id is set."""
    [event] = sparkpost(
        _bounce("10", campaign_id="Example Campaign Name"), AttributionConfig()
    ).events

    assert event.campaign_id == "spring-sale"
