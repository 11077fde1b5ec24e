"""Tests of the Mailgun webhook adapter on payloads as Mailgun documents them."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.providers import AttributionConfig, Provider, normalize
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.adapters.providers import NormalizeResult

# Origin of fixtures/mailgun/ (written for these tests; the shared samples have no Mailgun):
# - webhook_*.json: Mailgun's sample webhook bodies, the ones its docs show and the control
#   panel's "Test webhook" button posts ("Test delivered webhook", "Test permanent_fail
#   webhook", ...), reproduced from public copies with `samples.mailgun.org` as the sending
#   domain. The tracking samples (opened, clicked, unsubscribed) share one `id`, as Mailgun's do.
# - payloads_page_accepted.json: the Accepted event of the "Webhook Payloads" page of Mailgun's
#   current documentation (note `"user-variables": []`, an array, and a single tag).
# - events_api_*.json: the Failed examples of Mailgun's Events API reference (api-events.rst,
#   "Per Event Result"); that older shape has no `id`.
MY_VAR_2 = AttributionConfig(campaign_keys=("my-var-2",))
"""A tenant whose campaign lives in the user variable `my-var-2` of Mailgun's samples."""
UNATTRIBUTED = AttributionConfig(fallback_campaign_id="unattributed")


def mailgun(payload: Any, attribution: AttributionConfig | None = None) -> NormalizeResult:
    """Normalize a Mailgun payload for tenant `acme`."""
    return normalize(Provider.MAILGUN, payload, tenant_id="acme", attribution=attribution)


def utc(seconds: int, micros: int) -> datetime:
    """A UTC time from epoch seconds and microseconds."""
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


TRACKING_MESSAGE = "20130503182626.18666.16540@samples.mailgun.org"

# file, type, bounce class, recipient, occurred_at, message id, event id, campaign
SAMPLES: list[tuple[str, EventType, BounceClass | None, str, datetime, str, str, str]] = [
    ("webhook_delivered.json", EventType.DELIVERED, None, "alice@example.com",
     utc(1521472262, 908181), TRACKING_MESSAGE,
     "mailgun:delivered:CPgfbmQMTCKtHW6uIWtuVe:1521472262", "awesome"),
    ("webhook_permanent_fail_suppress_bounce.json", EventType.DROPPED_SUPPRESSED, None,
     "alice@example.com", utc(1521233195, 375624),
     "20130503192659.13651.20287@samples.mailgun.org",
     "mailgun:failed:G9Bn5sl1TC6nu79C8C0bwg:1521233195", "awesome"),
    ("webhook_opened.json", EventType.OPEN, None, "alice@example.com", utc(1521243339, 873676),
     TRACKING_MESSAGE, "mailgun:opened:Ase7i2zsRYeDXztHGENqRA:1521243339", "awesome"),
    ("webhook_clicked.json", EventType.CLICK, None, "alice@example.com", utc(1521243339, 873676),
     TRACKING_MESSAGE, "mailgun:clicked:Ase7i2zsRYeDXztHGENqRA:1521243339", "awesome"),
    ("webhook_unsubscribed.json", EventType.UNSUBSCRIBE, None, "alice@example.com",
     utc(1521243339, 873676), TRACKING_MESSAGE,
     "mailgun:unsubscribed:Ase7i2zsRYeDXztHGENqRA:1521243339", "awesome"),
    ("webhook_complained.json", EventType.COMPLAINT, None, "alice@example.com",
     utc(1521233123, 501324), "20110215055645.25246.63817@samples.mailgun.org",
     "mailgun:complained:-Agny091SquKnsrW2NEKUA:1521233123", "awesome"),
    ("payloads_page_accepted.json", EventType.SENT, None, "recipient@sample.mailgun.com",
     utc(1770146798, 372891), "20260203192638.000be97f99f8cea1@sample.mailgun.com",
     "mailgun:accepted:CCXMjJ7nQi2N3BPigGOdgQ:1770146798", "webhook_payload"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "event_type", "bounce_class", "address", "occurred", "message_id", "event_id",
     "campaign"),
    SAMPLES,
    ids=[row[0] for row in SAMPLES],
)  # fmt: skip
def test_each_documented_webhook_becomes_its_one_correct_event(
    fixture_payload: Callable[[str, str], Any],
    *,
    name: str,
    event_type: EventType,
    bounce_class: BounceClass | None,
    address: str,
    occurred: datetime,
    message_id: str,
    event_id: str,
    campaign: str,
) -> None:
    """Every documented Mailgun payload maps to its type, class, recipient, time and ids."""
    result = mailgun(fixture_payload("mailgun", name), MY_VAR_2)

    assert result.rejected == ()
    assert result.ignored == ()
    [event] = result.events
    assert event.type is event_type
    assert event.bounce_class is bounce_class
    assert event.recipient.address == address
    assert event.recipient.contact_id == address
    assert event.occurred_at == occurred
    assert event.provider == "mailgun"
    assert event.provider_message_id == message_id
    assert event.event_id == event_id
    assert event.campaign_id == campaign


@pytest.mark.parametrize(
    ("name", "event_type", "bounce_class", "address", "occurred"),
    [
        ("events_api_failed_permanent_bounce.json", EventType.BOUNCE, BounceClass.HARD,
         "recipient@example.com", utc(1377198389, 769129)),
        ("events_api_failed_temporary.json", EventType.DEFERRED, None, "bar@example.com",
         utc(1376435471, 107440)),
    ],
)  # fmt: skip
def test_failures_map_by_severity_and_reason(
    fixture_payload: Callable[[str, str], Any],
    *,
    name: str,
    event_type: EventType,
    bounce_class: BounceClass | None,
    address: str,
    occurred: datetime,
) -> None:
    """A permanent `bounce` failure is a hard bounce; a temporary one is retried: deferred."""
    [event] = mailgun(fixture_payload("mailgun", name), UNATTRIBUTED).events

    assert (event.type, event.bounce_class) == (event_type, bounce_class)
    assert (event.recipient.address, event.occurred_at) == (address, occurred)
    assert event.provider_event_id is None
    assert event.event_id.startswith("mailgun:sha256:")


def test_the_samples_two_tags_name_no_campaign_so_the_record_is_rejected(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """With the default keys and two tags there is no campaign: rejected, naming where it looked."""
    result = mailgun(fixture_payload("mailgun", "webhook_delivered.json"), AttributionConfig())

    [rejection] = result.rejected
    assert rejection.field == "mailgun.event-data.user-variables.campaign_id"
    assert "mailgun.event-data.tags[0]" in rejection.reason


def test_the_signed_body_and_the_bare_event_data_map_to_the_same_event(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """Mailgun's signed webhook body and its bare event-data give the identical event."""
    body = fixture_payload("mailgun", "webhook_delivered.json")

    assert mailgun(body, MY_VAR_2).events == mailgun(body["event-data"], MY_VAR_2).events
    assert len(mailgun(body, MY_VAR_2).events) == 1


def test_a_redelivered_webhook_maps_to_the_identical_event_id(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """Mailgun retrying a webhook (new signature, same event-data) yields the same event id."""
    first = fixture_payload("mailgun", "webhook_opened.json")
    retry = copy.deepcopy(first)
    retry["signature"] = {"timestamp": "1705376999", "token": "other", "signature": "other"}

    assert (
        mailgun(first, MY_VAR_2).events[0].event_id == mailgun(retry, MY_VAR_2).events[0].event_id
    )


def _failed(severity: str, reason: str) -> dict[str, Any]:
    return {
        "event": "failed",
        "id": "evt-1",
        "severity": severity,
        "reason": reason,
        "timestamp": 1521233195.375624,
        "recipient": "ana@example.com",
        "user-variables": {"campaign_id": "spring-sale", "contact_id": "c-42"},
    }


@pytest.mark.parametrize(
    ("severity", "reason", "event_type", "bounce_class"),
    [
        ("permanent", "bounce", EventType.BOUNCE, BounceClass.HARD),
        ("permanent", "espblock", EventType.BOUNCE, BounceClass.BLOCK),
        ("permanent", "old", EventType.BOUNCE, BounceClass.SOFT),
        ("permanent", "generic", EventType.BOUNCE, BounceClass.SOFT),
        ("permanent", "suppress-bounce", EventType.DROPPED_SUPPRESSED, None),
        ("permanent", "suppress-unsubscribe", EventType.DROPPED_SUPPRESSED, None),
        ("permanent", "suppress-complaint", EventType.DROPPED_SUPPRESSED, None),
        ("temporary", "generic", EventType.DEFERRED, None),
        ("temporary", "greylisted", EventType.DEFERRED, None),
    ],
)
def test_failed_events_map_by_severity_and_reason(
    severity: str, reason: str, event_type: EventType, bounce_class: BounceClass | None
) -> None:
    """Suppressed sends are drops, not new bounces; temporary failures are deferrals."""
    [event] = mailgun(_failed(severity, reason)).events

    assert (event.type, event.bounce_class) == (event_type, bounce_class)
    assert (event.campaign_id, event.recipient.contact_id) == ("spring-sale", "c-42")


@pytest.mark.parametrize(
    ("severity", "reason", "field"),
    [
        ("permanent", "cosmic-rays", "mailgun.reason"),
        ("sometimes", "bounce", "mailgun.severity"),
    ],
)
def test_unknown_failure_classifications_are_rejected(
    severity: str, reason: str, field: str
) -> None:
    """A severity or permanent reason Mailgun does not document is rejected, not guessed."""
    [rejection] = mailgun(_failed(severity, reason)).rejected

    assert rejection.field == field


def test_a_rejected_send_request_is_ignored() -> None:
    """`rejected` is Mailgun refusing the API request: no recipient was tried, ignored."""
    payload = _failed("permanent", "bounce") | {"event": "rejected"}

    result = mailgun(payload)

    assert result.events == ()
    assert [i.field for i in result.ignored] == ["mailgun.event"]


def test_a_missing_recipient_is_rejected_naming_the_field(
    fixture_payload: Callable[[str, str], Any],
) -> None:
    """An event-data without recipient is rejected as mailgun.event-data.recipient."""
    body = fixture_payload("mailgun", "webhook_complained.json")
    del body["event-data"]["recipient"]

    [rejection] = mailgun(body, MY_VAR_2).rejected

    assert rejection.reason == "mailgun.event-data.recipient: missing"


def test_a_string_timestamp_is_accepted() -> None:
    """Some Mailgun payloads quote the epoch timestamp; it means the same instant."""
    payload = _failed("permanent", "bounce") | {"timestamp": "1521233195.375624"}

    [event] = mailgun(payload).events

    assert event.occurred_at == utc(1521233195, 375624)
