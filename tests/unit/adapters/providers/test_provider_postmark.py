"""Tests of the Postmark webhook adapter on Postmark's documented webhook examples."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.providers import AttributionConfig, Provider, normalize
from processor.adapters.providers.base import stable_event_id
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.adapters.providers import NormalizeResult

NOV_2019 = datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)
"""2019-11-05T16:33:54.9070259Z: Postmark's 7 fractional digits, cut to microseconds."""
MESSAGE = "883953f4-6105-42a2-a16a-77a8eac79483"
ZERO_MESSAGE = "00000000-0000-0000-0000-000000000000"
JOHN = "john@example.com"


def postmark(payload: Any, attribution: AttributionConfig | None = None) -> NormalizeResult:
    """Normalize a Postmark payload for tenant `acme`."""
    return normalize(Provider.POSTMARK, payload, tenant_id="acme", attribution=attribution)


# file, type, bounce class, occurred_at, message id, provider event id (bounce ID), campaign (Tag),
# event-id parts after the message id
Row = tuple[str, EventType, BounceClass | None, datetime, str, str | None, str, tuple[str, ...]]
SAMPLES: list[Row] = [
    ("bounce_hard.json", EventType.BOUNCE, BounceClass.HARD, NOV_2019, MESSAGE,
     "4323372036854775807", "Test", ("Bounce", JOHN, "4323372036854775807")),
    ("spam_complaint.json", EventType.COMPLAINT, None, NOV_2019, ZERO_MESSAGE, "42", "Test",
     ("SpamComplaint", JOHN, "42")),
    ("delivery.json", EventType.DELIVERED, None, NOV_2019, MESSAGE, None, "welcome-email",
     ("Delivery", JOHN)),
    ("open.json", EventType.OPEN, None, NOV_2019, MESSAGE, None, "welcome-email",
     ("Open", JOHN, "2019-11-05T16:33:54.9070259Z")),
    ("click.json", EventType.CLICK, None, datetime(2017, 10, 25, 15, 21, 11, 906561, tzinfo=UTC),
     ZERO_MESSAGE, None, "welcome-email",
     ("Click", JOHN, "2017-10-25T15:21:11.9065619Z", "https://example.com")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "event_type", "bounce_class", "occurred", "message_id", "bounce_id", "campaign",
     "id_parts"),
    SAMPLES,
    ids=[row[0] for row in SAMPLES],
)  # fmt: skip
def test_each_sample_becomes_its_one_correct_event(
    shared_sample: Callable[[str, str], Any],
    *,
    name: str,
    event_type: EventType,
    bounce_class: BounceClass | None,
    occurred: datetime,
    message_id: str,
    bounce_id: str | None,
    campaign: str,
    id_parts: tuple[str, ...],
) -> None:
    """Every documented Postmark record maps to its type, class, recipient, time and ids."""
    result = postmark(shared_sample("postmark", name))

    assert result.rejected == ()
    assert result.ignored == ()
    [event] = result.events
    assert event.type is event_type
    assert event.bounce_class is bounce_class
    assert event.recipient.address == JOHN
    assert event.recipient.contact_id == JOHN
    assert event.occurred_at == occurred
    assert event.provider == "postmark"
    assert event.provider_message_id == message_id
    assert event.provider_event_id == bounce_id
    assert event.campaign_id == campaign
    assert event.event_id == stable_event_id(Provider.POSTMARK, message_id, *id_parts)


def test_a_suppression_for_a_hard_bounce_is_not_counted_again_as_an_unsubscribe(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """The documented SubscriptionChange (reason HardBounce) repeats the Bounce webhook: ignored."""
    result = postmark(shared_sample("postmark", "subscription_change.json"))

    assert result.events == ()
    assert result.rejected == ()
    [ignored] = result.ignored
    assert ignored.field == "postmark.SuppressionReason"


def _subscription_change(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "RecordType": "SubscriptionChange",
        "MessageID": MESSAGE,
        "MessageStream": "broadcast",
        "ChangedAt": "2020-02-01T10:53:34.416071Z",
        "Recipient": "ana@example.com",
        "Origin": "Recipient",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "Tag": "newsletter-42",
        "Metadata": {},
    }
    record.update(fields)
    return record


def test_a_recipient_opting_out_is_an_unsubscribe() -> None:
    """SuppressSending true, ManualSuppression by the Recipient: Postmark's unsubscribe."""
    [event] = postmark(_subscription_change()).events

    assert event.type is EventType.UNSUBSCRIBE
    assert event.occurred_at == datetime(2020, 2, 1, 10, 53, 34, 416071, tzinfo=UTC)
    assert event.campaign_id == "newsletter-42"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"SuppressSending": False, "SuppressionReason": None}, "postmark.SuppressSending"),
        ({"SuppressionReason": "SpamComplaint"}, "postmark.SuppressionReason"),
        ({"Origin": "Customer"}, "postmark.Origin"),
        ({"Origin": "Admin"}, "postmark.Origin"),
    ],
)
def test_other_subscription_changes_are_ignored(fields: dict[str, Any], field: str) -> None:
    """Reactivations, complaint suppressions and the sender's own suppressions are no opt-out."""
    result = postmark(_subscription_change(**fields))

    assert result.events == ()
    assert [i.field for i in result.ignored] == [field]


def _bounce(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "RecordType": "Bounce",
        "ID": 7,
        "Type": "HardBounce",
        "TypeCode": 1,
        "MessageID": MESSAGE,
        "Email": "ana@example.com",
        "BouncedAt": "2019-11-05T16:33:54Z",
        "MessageStream": "outbound",
        "Metadata": {"campaign_id": "spring-sale"},
    }
    record.update(fields)
    return record


@pytest.mark.parametrize(
    ("bounce_type", "code", "event_type", "bounce_class"),
    [
        ("HardBounce", 1, EventType.BOUNCE, BounceClass.HARD),
        ("BadEmailAddress", 100000, EventType.BOUNCE, BounceClass.HARD),
        ("Transient", 2, EventType.BOUNCE, BounceClass.SOFT),
        ("SoftBounce", 4096, EventType.BOUNCE, BounceClass.SOFT),
        ("DnsError", 256, EventType.BOUNCE, BounceClass.SOFT),
        ("Unknown", 2048, EventType.BOUNCE, BounceClass.SOFT),
        ("Blocked", 100006, EventType.BOUNCE, BounceClass.BLOCK),
        ("SpamNotification", 512, EventType.BOUNCE, BounceClass.BLOCK),
        ("DMARCPolicy", 100009, EventType.BOUNCE, BounceClass.BLOCK),
        ("SpamComplaint", 100001, EventType.COMPLAINT, None),
        ("Unsubscribe", 16, EventType.UNSUBSCRIBE, None),
    ],
)
def test_bounce_types_map_to_postmarks_meaning(
    bounce_type: str, code: int, event_type: EventType, bounce_class: BounceClass | None
) -> None:
    """Each Postmark bounce type, by name or by TypeCode alone, maps to the same event."""
    [by_name] = postmark(_bounce(Type=bounce_type, TypeCode=code)).events
    [by_code] = postmark(_bounce(Type=None, TypeCode=code)).events

    assert (by_name.type, by_name.bounce_class) == (event_type, bounce_class)
    assert (by_code.type, by_code.bounce_class) == (event_type, bounce_class)
    assert by_name.campaign_id == "spring-sale"


@pytest.mark.parametrize("bounce_type", ["AutoResponder", "ChallengeVerification", "SMTPApiError"])
def test_bounce_types_that_say_nothing_about_the_address_are_ignored(bounce_type: str) -> None:
    """Auto-replies, challenges and the sender's own API errors are no delivery signal."""
    result = postmark(_bounce(Type=bounce_type))

    assert result.events == ()
    assert [i.field for i in result.ignored] == ["postmark.Type"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"Type": "Boomerang"}, "postmark.Type: unknown bounce type 'Boomerang'"),
        ({"Type": None, "TypeCode": 3}, "postmark.Type: missing, and TypeCode is not a known"),
        ({"Email": None}, "postmark.Email: missing"),
        ({"BouncedAt": "2019-11-05T16:33:54"}, "postmark.BouncedAt: timestamp has no UTC offset"),
        ({"MessageID": None}, "postmark.MessageID: missing"),
        ({"Metadata": "campaign"}, "postmark.Metadata: expected an object, got string"),
    ],
)
def test_unmappable_bounces_are_rejected_naming_the_field(
    fields: dict[str, Any], reason: str
) -> None:
    """A Postmark record that cannot be mapped is rejected with the offending field's path."""
    result = postmark(_bounce(**fields))

    assert result.events == ()
    [rejection] = result.rejected
    assert rejection.reason.startswith(reason)


def test_campaign_falls_back_from_tag_to_message_stream() -> None:
    """Without metadata campaign and Tag, the message stream names the campaign."""
    [event] = postmark(_bounce(Metadata={}, Tag=None, MessageStream="broadcast-may")).events

    assert event.campaign_id == "broadcast-may"


def test_a_redelivered_record_maps_to_the_identical_event_id(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """The same Postmark webhook delivered twice yields the same event id."""
    [first] = postmark(shared_sample("postmark", "open.json")).events
    [again] = postmark(shared_sample("postmark", "open.json")).events

    assert first.event_id == again.event_id


def test_an_unknown_record_type_is_ignored() -> None:
    """A record type Postmark may add (e.g. inbound) is ignored with its name."""
    [ignored] = postmark({"RecordType": "Inbound"}).ignored

    assert ignored.reason == "postmark.RecordType: unknown record type 'Inbound'"
