"""Tests of the Amazon SES adapter on AWS's documented notifications and SNS envelopes."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.providers import AttributionConfig, Provider, normalize
from processor.adapters.providers.base import stable_event_id
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.adapters.providers import NormalizeResult

UNATTRIBUTED = AttributionConfig(fallback_campaign_id="unattributed")
PUBLISHED_MESSAGE = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
PUBLISHED_FEEDBACK = "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000"
RECIPIENT = "recipient@example.com"


def ses(payload: Any, attribution: AttributionConfig = UNATTRIBUTED) -> NormalizeResult:
    """Normalize an SES payload for tenant `acme`."""
    return normalize(Provider.SES, payload, tenant_id="acme", attribution=attribution)


def at(text: str) -> datetime:
    """An ISO 8601 UTC time."""
    return datetime.fromisoformat(text).astimezone(UTC)


# file, type, bounce class, recipient, occurred_at, message id, provider event id, campaign,
# event-id parts after the message id (record kind, recipient, then the kind's own parts)
DSN_FEEDBACK = "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000"
ABUSE_FEEDBACK = "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"
PLAIN_FEEDBACK = "0000013786031775-fea503bc-7497-49e1-881b-a0379bb037d3-000000"
Row = tuple[str, EventType, BounceClass | None, str, str, str, str | None, str, tuple[str, ...]]
SAMPLES: list[Row] = [
    (
        "event_publishing_bounce.json", EventType.BOUNCE, BounceClass.HARD, RECIPIENT,
        "2017-08-05T00:41:02.669Z", PUBLISHED_MESSAGE, PUBLISHED_FEEDBACK, "ConfigSet",
        ("Bounce", RECIPIENT, PUBLISHED_FEEDBACK),
    ),
    (
        "event_publishing_click.json", EventType.CLICK, None, RECIPIENT,
        "2017-08-09T23:51:25.570Z", PUBLISHED_MESSAGE, None, "ConfigSet",
        (
            "Click", RECIPIENT, "2017-08-09T23:51:25.570000+00:00",
            "http://docs.aws.amazon.com/ses/latest/DeveloperGuide/send-email-smtp.html",
        ),
    ),
    (
        "event_publishing_complaint.json", EventType.COMPLAINT, None, RECIPIENT,
        "2017-08-05T00:41:02.669Z", PUBLISHED_MESSAGE, PUBLISHED_FEEDBACK, "ConfigSet",
        ("Complaint", RECIPIENT, PUBLISHED_FEEDBACK),
    ),
    (
        "event_publishing_delivery.json", EventType.DELIVERED, None, RECIPIENT,
        "2016-10-19T23:21:04.133Z", PUBLISHED_MESSAGE, None, "ConfigSet",
        ("Delivery", RECIPIENT),
    ),
    (
        "event_publishing_delivery_delay.json", EventType.DEFERRED, None, RECIPIENT,
        "2020-06-16T00:25:40.095Z", PUBLISHED_MESSAGE, None, "ConfigSet",
        ("DeliveryDelay", RECIPIENT, "2020-06-16T00:25:40.095000+00:00"),
    ),
    (
        "event_publishing_open.json", EventType.OPEN, None, RECIPIENT,
        "2017-08-09T22:00:19.652Z", PUBLISHED_MESSAGE, None, "ConfigSet",
        ("Open", RECIPIENT, "2017-08-09T22:00:19.652000+00:00"),
    ),
    (
        "event_publishing_send.json", EventType.SENT, None, RECIPIENT,
        "2016-10-14T05:02:16.645Z", PUBLISHED_MESSAGE, None, "ConfigSet",
        ("Send", RECIPIENT),
    ),
    (
        "event_publishing_subscription.json", EventType.UNSUBSCRIBE, None, RECIPIENT,
        "2022-01-12T01:00:17.910Z", "EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000",
        None, "ConfigSet", ("Subscription", RECIPIENT, "2022-01-12T01:00:17.910000+00:00"),
    ),
    (
        "sns_notification_bounce_with_dsn.json", EventType.BOUNCE, BounceClass.HARD,
        "jane@example.com", "2016-01-27T14:59:38.237Z",
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        DSN_FEEDBACK, "unattributed", ("Bounce", "jane@example.com", DSN_FEEDBACK),
    ),
    (
        "sns_notification_complaint_with_feedback.json", EventType.COMPLAINT, None,
        "richard@example.com", "2016-01-27T14:59:38.237Z",
        "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
        ABUSE_FEEDBACK, "unattributed", ("Complaint", "richard@example.com", ABUSE_FEEDBACK),
    ),
    (
        "sns_notification_complaint_without_feedback.json", EventType.COMPLAINT, None,
        "richard@example.com", "2016-01-27T14:59:38.237Z",
        "0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000",
        PLAIN_FEEDBACK, "unattributed", ("Complaint", "richard@example.com", PLAIN_FEEDBACK),
    ),
    (
        "sns_notification_delivery.json", EventType.DELIVERED, None, "jane@example.com",
        "2016-01-27T14:59:38.237Z", "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        None, "unattributed", ("Delivery", "jane@example.com"),
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "event_type", "bounce_class", "address", "occurred", "message_id", "feedback_id",
     "campaign", "id_parts"),
    SAMPLES,
    ids=[row[0] for row in SAMPLES],
)  # fmt: skip
def test_each_single_recipient_sample_becomes_its_one_correct_event(
    shared_sample: Callable[[str, str], Any],
    *,
    name: str,
    event_type: EventType,
    bounce_class: BounceClass | None,
    address: str,
    occurred: str,
    message_id: str,
    feedback_id: str | None,
    campaign: str,
    id_parts: tuple[str, ...],
) -> None:
    """Every documented single-recipient SES record maps to its type, class, recipient and ids."""
    result = ses(shared_sample("ses", name))

    assert result.rejected == ()
    assert result.ignored == ()
    [event] = result.events
    assert event.type is event_type
    assert event.bounce_class is bounce_class
    assert event.recipient.address == address
    assert event.recipient.contact_id == address
    assert event.occurred_at == at(occurred)
    assert event.provider == "ses"
    assert event.provider_message_id == message_id
    assert event.provider_event_id == feedback_id
    assert event.tenant_id == "acme"
    assert event.campaign_id == campaign
    assert event.event_id == stable_event_id(Provider.SES, message_id, *id_parts)
    assert event.event_id.startswith("ses:sha256:")


def test_a_bounce_of_two_recipients_becomes_one_hard_bounce_each(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """A bounce listing two bounced recipients yields two hard bounces, not one per destination."""
    result = ses(shared_sample("ses", "sns_notification_bounce_without_dsn.json"))

    assert [(e.recipient.address, e.bounce_class) for e in result.events] == [
        ("jane@example.com", BounceClass.HARD),
        ("richard@example.com", BounceClass.HARD),
    ]
    assert len({e.event_id for e in result.events}) == 2
    assert {e.provider_event_id for e in result.events} == {
        "00000137860315fd-869464a4-8680-4114-98d3-716fe35851f9-000000"
    }


@pytest.mark.parametrize(
    ("name", "field", "reason"),
    [
        ("event_publishing_reject.json", "ses.eventType", "SES refused to send"),
        ("event_publishing_rendering_failure.json", "ses.eventType", "failed to render"),
    ],
)
def test_reject_and_rendering_failure_are_ignored_not_delivery_signals(
    shared_sample: Callable[[str, str], Any], name: str, field: str, reason: str
) -> None:
    """SES refusing to send and a template failure are fine input but no reputation signal."""
    result = ses(shared_sample("ses", name))

    assert result.events == ()
    assert result.rejected == ()
    [ignored] = result.ignored
    assert ignored.field == field
    assert reason in ignored.reason


def test_sns_subscription_confirmation_is_returned_for_the_receiver_to_confirm(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """An SNS SubscriptionConfirmation is a distinct result with its token and URL, not an event."""
    envelope = shared_sample("ses", "sns_http_envelope_subscription_confirmation.json")

    result = ses(envelope)

    assert result.events == ()
    assert result.rejected == ()
    [confirmation] = result.subscription_confirmations
    assert confirmation.kind == "SubscriptionConfirmation"
    assert confirmation.message_id == "165545c9-2a5c-472c-8df2-7ff2be2b3b1b"
    assert confirmation.topic_arn == "arn:aws:sns:us-west-2:123456789012:MyTopic"
    assert confirmation.token == envelope["Token"]
    assert confirmation.subscribe_url is not None
    assert confirmation.subscribe_url.startswith("https://sns.us-west-2.amazonaws.com/?Action=")
    assert confirmation.timestamp == at("2012-04-26T20:45:04.751Z")


def test_sns_unsubscribe_confirmation_is_returned_too(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """An SNS UnsubscribeConfirmation is recognized as such, not mistaken for a notification."""
    envelope = shared_sample("ses", "sns_http_envelope_subscription_confirmation.json")
    envelope["Type"] = "UnsubscribeConfirmation"

    [confirmation] = ses(envelope).subscription_confirmations

    assert confirmation.kind == "UnsubscribeConfirmation"


def test_an_sns_notification_whose_message_is_not_ses_json_is_rejected(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """The documented SNS envelope carrying "Hello world!" is rejected, naming ses.Message."""
    result = ses(shared_sample("ses", "sns_http_envelope_notification.json"))

    assert result.events == ()
    [rejection] = result.rejected
    assert rejection.field == "ses.Message"
    assert rejection.reason.startswith("ses.Message: not an SES record")


def test_a_record_in_an_sns_envelope_maps_like_the_bare_record(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """SES JSON serialized into an SNS envelope's Message yields the same events as bare."""
    record = shared_sample("ses", "event_publishing_bounce.json")
    envelope = shared_sample("ses", "sns_http_envelope_notification.json")
    envelope["Message"] = json.dumps(record)

    assert ses(envelope).events == ses(record).events
    assert len(ses(envelope).events) == 1


def test_a_redelivered_record_maps_to_identical_event_ids(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """Normalizing the same SES record twice gives the same event ids."""
    first = ses(shared_sample("ses", "sns_notification_bounce_without_dsn.json"))
    again = ses(shared_sample("ses", "sns_notification_bounce_without_dsn.json"))

    assert [e.event_id for e in first.events] == [e.event_id for e in again.events]


def test_classic_notification_and_published_event_of_one_bounce_share_the_event_id(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """The same bounce via notificationType and eventType is one event (one id), not two."""
    published = shared_sample("ses", "event_publishing_bounce.json")
    classic = copy.deepcopy(published)
    classic["notificationType"] = classic.pop("eventType")

    assert ses(classic).events[0].event_id == ses(published).events[0].event_id


def _bounce(bounce_type: str, subtype: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": subtype,
            "bouncedRecipients": [{"emailAddress": "jane@example.com"}],
            "timestamp": "2016-01-27T14:59:38.237Z",
            "feedbackId": "feedback-1",
        },
        "mail": {"messageId": "message-1", "destination": ["jane@example.com"]},
    }
    return record


@pytest.mark.parametrize(
    ("bounce_type", "subtype", "event_type", "bounce_class"),
    [
        ("Permanent", "General", EventType.BOUNCE, BounceClass.HARD),
        ("Permanent", "NoEmail", EventType.BOUNCE, BounceClass.HARD),
        ("Permanent", "Suppressed", EventType.DROPPED_SUPPRESSED, None),
        ("Permanent", "OnAccountSuppressionList", EventType.DROPPED_SUPPRESSED, None),
        ("Transient", "General", EventType.BOUNCE, BounceClass.SOFT),
        ("Transient", "MailboxFull", EventType.BOUNCE, BounceClass.SOFT),
        ("Transient", "ContentRejected", EventType.BOUNCE, BounceClass.BLOCK),
        ("Transient", "AttachmentRejected", EventType.BOUNCE, BounceClass.BLOCK),
        ("Undetermined", "Undetermined", EventType.BOUNCE, BounceClass.SOFT),
    ],
)
def test_bounce_type_and_subtype_decide_the_bounce_class(
    bounce_type: str, subtype: str, event_type: EventType, bounce_class: BounceClass | None
) -> None:
    """Permanent is hard, Transient and Undetermined soft, suppression-list bounces are drops."""
    [event] = ses(_bounce(bounce_type, subtype)).events

    assert (event.type, event.bounce_class) == (event_type, bounce_class)


def test_an_unknown_bounce_type_is_rejected_naming_the_field() -> None:
    """A bounceType SES does not document is rejected, never guessed."""
    [rejection] = ses(_bounce("Sideways", "General")).rejected

    assert rejection.reason == "ses.bounce.bounceType: unknown bounce type 'Sideways'"


def test_one_malformed_recipient_is_rejected_and_the_others_still_map() -> None:
    """A bad address among bounced recipients rejects that recipient alone, naming its field."""
    record = _bounce("Permanent", "General")
    record["bounce"]["bouncedRecipients"].append({"emailAddress": "not-an-address"})

    result = ses(record)

    assert [e.recipient.address for e in result.events] == ["jane@example.com"]
    [rejection] = result.rejected
    assert rejection.field == "ses.bounce.bouncedRecipients[1].emailAddress"
    assert "not-an-address" not in rejection.reason


def test_a_not_spam_feedback_report_is_ignored_not_a_complaint(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """A complaint whose feedback type is not-spam is the opposite of a complaint: ignored."""
    record = shared_sample("ses", "sns_notification_complaint_with_feedback.json")
    record["complaint"]["complaintFeedbackType"] = "not-spam"

    result = ses(record)

    assert result.events == ()
    [ignored] = result.ignored
    assert ignored.field == "ses.complaint.complaintFeedbackType"


def test_a_complaint_suppressed_by_the_account_list_is_a_suppressed_drop(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """A complaint subtype OnAccountSuppressionList means SES did not send: a suppressed drop."""
    record = shared_sample("ses", "sns_notification_complaint_without_feedback.json")
    record["complaint"]["complaintSubType"] = "OnAccountSuppressionList"

    [event] = ses(record).events

    assert event.type is EventType.DROPPED_SUPPRESSED


def test_an_open_of_a_message_to_several_recipients_cannot_be_attributed(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """An open carries no recipient; with several destinations it is rejected, not guessed."""
    record = shared_sample("ses", "event_publishing_open.json")
    record["mail"]["destination"].append("other@example.com")

    result = ses(record)

    assert result.events == ()
    [rejection] = result.rejected
    assert rejection.field == "ses.mail.destination"
    assert "one of 2 recipients" in rejection.reason


def test_a_subscription_change_without_a_new_opt_out_is_ignored(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """A Subscription event that opts the contact back in is not an unsubscribe."""
    record = shared_sample("ses", "event_publishing_subscription.json")
    record["subscription"]["newTopicPreferences"] = {
        "unsubscribeAll": False,
        "topicSubscriptionStatus": [
            {"topicName": "ExampleTopicName", "subscriptionStatus": "OptIn"}
        ],
    }

    result = ses(record)

    assert result.events == ()
    assert [i.field for i in result.ignored] == ["ses.subscription.newTopicPreferences"]


def test_a_topic_opt_out_is_an_unsubscribe(shared_sample: Callable[[str, str], Any]) -> None:
    """Opting out of one topic one was in is an unsubscribe even without unsubscribeAll."""
    record = shared_sample("ses", "event_publishing_subscription.json")
    record["subscription"]["newTopicPreferences"]["unsubscribeAll"] = False
    record["subscription"]["oldTopicPreferences"]["topicSubscriptionStatus"][0][
        "subscriptionStatus"
    ] = "OptIn"

    [event] = ses(record).events

    assert event.type is EventType.UNSUBSCRIBE


def test_message_tags_attribute_campaign_and_contact_of_a_single_recipient_message(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """Tags campaign_id and contact_id win over the configuration set for a one-recipient mail."""
    record = shared_sample("ses", "event_publishing_delivery.json")
    record["mail"]["tags"]["campaign_id"] = ["spring-sale"]
    record["mail"]["tags"]["contact_id"] = ["c-42"]

    [event] = ses(record).events

    assert (event.campaign_id, event.recipient.contact_id) == ("spring-sale", "c-42")


def test_a_contact_tag_is_not_applied_to_every_recipient_of_a_shared_message(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """With several destinations a message-wide contact tag names no one: addresses are used."""
    record = shared_sample("ses", "sns_notification_bounce_without_dsn.json")
    record["mail"]["tags"] = {"contact_id": ["c-42"], "campaign_id": ["spring-sale"]}

    result = ses(record)

    assert [e.recipient.contact_id for e in result.events] == [
        "jane@example.com",
        "richard@example.com",
    ]


def test_a_classic_notification_without_tags_is_rejected_when_no_fallback_is_configured(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """Without tags, configuration set or tenant fallback, the campaign is missing: rejected."""
    result = ses(shared_sample("ses", "sns_notification_delivery.json"), AttributionConfig())

    assert result.events == ()
    [rejection] = result.rejected
    assert rejection.field == "ses.mail.tags.campaign_id"
    assert "ses.mail.tags.ses:configuration-set" in rejection.reason
