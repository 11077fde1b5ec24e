"""Tests of the SendGrid Event Webhook adapter on SendGrid's documented events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from processor.adapters.providers import AttributionConfig, Provider, normalize, normalize_body
from schemas.events import BounceClass, EventType

if TYPE_CHECKING:
    from collections.abc import Callable

    from processor.adapters.providers import NormalizeResult

UNATTRIBUTED = AttributionConfig(fallback_campaign_id="unattributed")
SG_MESSAGE = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"
DEC_2017 = datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC)


def sendgrid(payload: Any, attribution: AttributionConfig = UNATTRIBUTED) -> NormalizeResult:
    """Normalize a SendGrid payload for tenant `acme`."""
    return normalize(Provider.SENDGRID, payload, tenant_id="acme", attribution=attribution)


# file, type, bounce class, recipient, occurred_at, sg_event_id, sg_message_id, campaign
SINGLE_EVENTS: list[tuple[str, EventType, BounceClass | None, str, datetime, str, str, str]] = [
    ("ab_test_processed.json", EventType.SENT, None, "tadpole_0010@stbase-018.sjc1.sendgrid.net",
     datetime(2015, 9, 15, 20, 44, 8, tzinfo=UTC), "qNOzbkTuTNCdxa1eXEpnXg",
     "5lFl7Fr1Rjme_EyzNNB_5A.stfilter-015.5185.55F883172.0", "23314"),
    ("ab_test_winner_delivered.json", EventType.DELIVERED, None,
     "tadpole_0001@stbase-018.sjc1.sendgrid.net", datetime(2015, 9, 15, 20, 45, 11, tzinfo=UTC),
     "X2M1IUfMRhuAhWM0CbmFqQ", "fPJrJPIRTxC_obpgfTy74w.stfilter-015.5185.55F883564.0", "23314"),
    ("blocked.json", EventType.BOUNCE, BounceClass.BLOCK, "example@test.com", DEC_2017,
     "6g4ZI7SA-xmRDv57GoPIPw==", SG_MESSAGE, "unattributed"),
    ("bounce.json", EventType.BOUNCE, BounceClass.HARD, "example@test.com", DEC_2017,
     "6g4ZI7SA-xmRDv57GoPIPw==", SG_MESSAGE, "unattributed"),
    ("click.json", EventType.CLICK, None, "example@test.com", DEC_2017,
     "kCAi1KttyQdEKHhdC-nuEA==", SG_MESSAGE, "unattributed"),
    ("click_full_fields.json", EventType.CLICK, None, "email@example.com",
     datetime(2009, 8, 11, tzinfo=UTC), "sendgrid_internal_event_id",
     "sendgrid_internal_message_id", "1943530"),
    ("deferred.json", EventType.DEFERRED, None, "example@test.com", DEC_2017,
     "t7LEShmowp86DTdUW8M-GQ==", SG_MESSAGE, "unattributed"),
    ("delivered.json", EventType.DELIVERED, None, "example@test.com", DEC_2017,
     "rWVYmVk90MjZJ9iohOBa3w==", SG_MESSAGE, "unattributed"),
    ("dropped.json", EventType.DROPPED_SUPPRESSED, None, "example@test.com", DEC_2017,
     "zmzJhfJgAfUSOW80yEbPyw==", SG_MESSAGE, "unattributed"),
    ("group_unsubscribe.json", EventType.UNSUBSCRIBE, None, "example@test.com", DEC_2017,
     "ahSCB7xYcXFb-hEaawsPRw==", SG_MESSAGE, "unattributed"),
    ("marketing_campaign_processed.json", EventType.SENT, None, "email@example.com",
     datetime(2015, 9, 15, 20, 37, 8, tzinfo=UTC), "sendgrid_internal_event_id",
     "sendgrid_internal_message_id", "12345"),
    ("open.json", EventType.OPEN, None, "example@test.com", DEC_2017,
     "FOTFFO0ecsBE-zxFXfs6WA==", SG_MESSAGE, "unattributed"),
    ("processed.json", EventType.SENT, None, "example@test.com", DEC_2017,
     "rbtnWrG1DVDGGGFHFyun0A==",
     "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000", "unattributed"),
    ("processed_with_ip_pool.json", EventType.SENT, None, "john.doe@sendgrid.com",
     datetime(2015, 3, 26, 22, 39, 38, tzinfo=UTC), "RHFZB1IrTD2Y9Q7bUdZxUw",
     "14c583da911.2c36.1c804d.filter-406.22375.55148AA99.0", "unattributed"),
    ("singlesend_open.json", EventType.OPEN, None, "email@example.com",
     datetime(2020, 6, 9, 18, 19, 12, 372000, tzinfo=UTC), "sendgrid_internal_event_id",
     "sendgrid_internal_message_id", "sendgrid_singlesend_id"),
    ("spamreport.json", EventType.COMPLAINT, None, "example@test.com", DEC_2017,
     "37nvH5QBz858KGVYCM4uOA==", SG_MESSAGE, "unattributed"),
    ("unsubscribe.json", EventType.UNSUBSCRIBE, None, "example@test.com", DEC_2017,
     "zz_BjPgU_5pS-J8vlfB1sg==", SG_MESSAGE, "unattributed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "event_type", "bounce_class", "address", "occurred", "sg_event_id", "sg_message_id",
     "campaign"),
    SINGLE_EVENTS,
    ids=[row[0] for row in SINGLE_EVENTS],
)  # fmt: skip
def test_each_single_event_sample_becomes_its_one_correct_event(
    shared_sample: Callable[[str, str], Any],
    *,
    name: str,
    event_type: EventType,
    bounce_class: BounceClass | None,
    address: str,
    occurred: datetime,
    sg_event_id: str,
    sg_message_id: str,
    campaign: str,
) -> None:
    """Every documented SendGrid event maps to its type, class, recipient, time and ids."""
    payload = shared_sample("sendgrid", name)
    sendgrid_event = (payload[0] if isinstance(payload, list) else payload)["event"]

    result = sendgrid(payload)

    assert result.rejected == ()
    assert result.ignored == ()
    [event] = result.events
    assert event.type is event_type
    assert event.bounce_class is bounce_class
    assert event.recipient.address == address
    assert event.recipient.contact_id == address
    assert event.occurred_at == occurred
    assert event.provider == "sendgrid"
    assert event.provider_event_id == sg_event_id
    assert event.provider_message_id == sg_message_id
    assert event.campaign_id == campaign
    assert event.event_id == f"sendgrid:{sendgrid_event}:{sg_event_id}"


def test_event_ids_name_the_sendgrid_event_and_its_sg_event_id(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """A SendGrid event id is `sendgrid:<event>:<sg_event_id>`, readable and address-free."""
    [event] = sendgrid(shared_sample("sendgrid", "bounce.json")).events

    assert event.event_id == "sendgrid:bounce:6g4ZI7SA-xmRDv57GoPIPw=="


def test_a_batch_of_every_event_type_maps_each_and_ignores_the_resubscribe(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """The documented all-types batch gives one event per signal and ignores group_resubscribe."""
    result = sendgrid(shared_sample("sendgrid", "batch_all_event_types.json"))

    assert [(e.type, e.bounce_class) for e in result.events] == [
        (EventType.SENT, None),
        (EventType.DEFERRED, None),
        (EventType.DELIVERED, None),
        (EventType.OPEN, None),
        (EventType.CLICK, None),
        (EventType.BOUNCE, BounceClass.HARD),  # no `type` field: a plain bounce
        (EventType.DROPPED_SUPPRESSED, None),
        (EventType.COMPLAINT, None),
        (EventType.UNSUBSCRIBE, None),
        (EventType.UNSUBSCRIBE, None),
    ]
    assert {e.occurred_at for e in result.events} == {DEC_2017}
    # Every record of this sample reuses sg_event_id "sg_event_id"; the event name keeps them apart.
    assert len({e.event_id for e in result.events}) == 10
    [ignored] = result.ignored
    assert (ignored.index, ignored.field) == (10, "sendgrid[10].event")
    assert result.rejected == ()


def test_group_resubscribe_is_ignored_as_no_reputation_signal(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """A resubscribe to a suppression group is fine input but no signal: ignored, not rejected."""
    result = sendgrid(shared_sample("sendgrid", "group_resubscribe.json"))

    assert result.events == ()
    assert result.rejected == ()
    [ignored] = result.ignored
    assert ignored.reason.startswith("sendgrid[0].event: 'group_resubscribe'")


def test_a_legacy_marketing_event_without_ids_gets_a_stable_derived_id(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """A legacy newsletter unsubscribe has no sg_event_id: its id is derived, the same each time."""
    [event] = sendgrid(shared_sample("sendgrid", "legacy_marketing_unsubscribe.json")).events
    [again] = sendgrid(shared_sample("sendgrid", "legacy_marketing_unsubscribe.json")).events

    assert event.type is EventType.UNSUBSCRIBE
    assert event.recipient.address == "nick@sendgrid.com"
    assert event.occurred_at == datetime(2013, 10, 3, 17, 47, 17, tzinfo=UTC)
    assert event.campaign_id == "1943530"
    assert event.provider_event_id is None
    assert event.event_id == again.event_id
    assert event.event_id.startswith("sendgrid:sha256:")


def test_a_redelivered_batch_maps_to_identical_event_ids(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """The same batch posted twice (parsed or as raw bytes) yields the same event ids."""
    batch = shared_sample("sendgrid", "batch_all_event_types.json")

    first = sendgrid(batch)
    body = normalize_body(
        Provider.SENDGRID, json.dumps(batch).encode(), tenant_id="acme", attribution=UNATTRIBUTED
    )

    assert [e.event_id for e in body.events] == [e.event_id for e in first.events]


def test_a_millisecond_timestamp_is_read_as_milliseconds(
    shared_sample: Callable[[str, str], Any],
) -> None:
    """The Single Send sample's timestamp 1591726752372 is ms: 2020-06-09T18:19:12.372Z."""
    [event] = sendgrid(shared_sample("sendgrid", "singlesend_open.json")).events

    assert event.occurred_at == datetime(2020, 6, 9, 18, 19, 12, 372000, tzinfo=UTC)


def _event(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "email": "ana@example.com",
        "timestamp": 1513299569,
        "event": "delivered",
        "sg_event_id": "evt-1",
        "sg_message_id": "msg-1",
        "campaign_id": "spring-sale",
    }
    record.update(fields)
    return record


@pytest.mark.parametrize(
    ("reason", "event_type"),
    [
        ("Bounced Address", EventType.DROPPED_SUPPRESSED),
        ("Unsubscribed Address", EventType.DROPPED_SUPPRESSED),
        ("Spam Reporting Address", EventType.DROPPED_SUPPRESSED),
        ("Invalid", EventType.DROPPED_SUPPRESSED),
    ],
)
def test_drops_of_suppressed_addresses_are_suppressed_drops(
    reason: str, event_type: EventType
) -> None:
    """A drop because the address is on a suppression list is dropped-suppressed, not a bounce."""
    [event] = sendgrid([_event(event="dropped", reason=reason)]).events

    assert event.type is event_type


@pytest.mark.parametrize("reason", ["Invalid SMTPAPI header", "Spam Content", None])
def test_other_drops_are_ignored_with_the_reason(reason: str | None) -> None:
    """A drop for any other reason (content, header) is no send to a suppressed address."""
    result = sendgrid([_event(event="dropped", reason=reason)])

    assert result.events == ()
    [ignored] = result.ignored
    assert ignored.field == "sendgrid[0].reason"


def test_custom_args_attribute_campaign_and_contact() -> None:
    """Custom args campaign_id and contact_id win over SendGrid's own campaign fields."""
    [event] = sendgrid([_event(contact_id="c-42", marketing_campaign_id=99)]).events

    assert (event.campaign_id, event.recipient.contact_id) == ("spring-sale", "c-42")


def test_tenant_specific_metadata_keys_are_honoured() -> None:
    """A tenant whose campaign arg is called `mc` gets its campaign from `mc`."""
    config = AttributionConfig(campaign_keys=("mc",), contact_keys=("uid",))

    [event] = sendgrid([_event(mc="autumn", uid=7)], config).events

    assert (event.campaign_id, event.recipient.contact_id) == ("autumn", "7")


def test_contact_defaults_to_the_lower_cased_address() -> None:
    """Without a contact_id arg the contact is the address, lower-cased; the address is kept."""
    [event] = sendgrid([_event(email="Ana@Example.COM")]).events

    assert (event.recipient.address, event.recipient.contact_id) == (
        "Ana@Example.COM",
        "ana@example.com",
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"email": None}, "sendgrid[0].email: missing"),
        ({"email": 42}, "sendgrid[0].email: expected a string, got number"),
        ({"event": None}, "sendgrid[0].event: missing"),
        ({"timestamp": None}, "sendgrid[0].timestamp: missing"),
        ({"timestamp": "yesterday"},
         "sendgrid[0].timestamp: not an ISO 8601 timestamp or epoch number"),
        ({"timestamp": 0}, "sendgrid[0].timestamp: timestamp outside 2000-2099 (wrong unit?)"),
        ({"event": "bounce", "type": "sideways"},
         "sendgrid[0].type: unknown bounce type 'sideways'"),
        ({"campaign_id": "cat:facts"}, "sendgrid[0].campaign_id: not a valid campaign_id"),
        ({"campaign_id": {"id": 1}},
         "sendgrid[0].campaign_id: expected a string or integer id, got object"),
    ],
)  # fmt: skip
def test_unmappable_fields_are_rejected_naming_the_field(
    fields: dict[str, Any], reason: str
) -> None:
    """Each unmappable record becomes one rejection whose reason starts with the field path."""
    result = sendgrid([_event(**fields)])

    assert result.events == ()
    [rejection] = result.rejected
    assert rejection.reason.startswith(reason)
    assert rejection.index == 0


def test_a_malformed_address_is_a_rejection_not_an_exception() -> None:
    """An address the schema refuses becomes a rejection naming `email`, without the address."""
    [rejection] = sendgrid([_event(email="ana at example.com")]).rejected

    assert rejection.field == "sendgrid[0].email"
    assert rejection.problem.startswith("not a valid recipient.address")
    assert "ana at" not in rejection.reason


def test_only_the_bad_record_of_a_batch_is_rejected() -> None:
    """A batch with one bad record maps the others and rejects that one, by index."""
    result = sendgrid(
        [_event(), _event(email=None, sg_event_id="evt-2"), _event(sg_event_id="evt-3")]
    )

    assert [e.event_id for e in result.events] == [
        "sendgrid:delivered:evt-1",
        "sendgrid:delivered:evt-3",
    ]
    assert [(r.index, r.field) for r in result.rejected] == [(1, "sendgrid[1].email")]


def test_a_record_without_any_campaign_is_rejected_by_default() -> None:
    """Without custom arg, SendGrid campaign or tenant fallback there is no campaign: rejected."""
    record = _event()
    del record["campaign_id"]

    [rejection] = sendgrid([record], AttributionConfig()).rejected

    assert rejection.field == "sendgrid[0].campaign_id"
    assert "sendgrid[0].marketing_campaign_id" in rejection.reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("not a batch", "sendgrid: expected an array of events or one event object, got string"),
        ([42], "sendgrid[0]: expected an object, got number"),
    ],
)
def test_payloads_of_the_wrong_shape_are_rejected(payload: Any, reason: str) -> None:
    """A payload that is neither a batch nor an event object is one rejection."""
    [rejection] = sendgrid(payload).rejected

    assert rejection.reason == reason


def test_an_unknown_event_type_is_ignored() -> None:
    """An event type SendGrid may add later is ignored with its name, not rejected."""
    [ignored] = sendgrid([_event(event="machine_learned")]).ignored

    assert ignored.reason == "sendgrid[0].event: unknown event type 'machine_learned'"
