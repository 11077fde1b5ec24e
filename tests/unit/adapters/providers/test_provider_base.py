"""Tests of what all provider adapters share: timestamps, event ids, bodies, attribution."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from processor.adapters.providers import (
    AttributionConfig,
    Ignored,
    NormalizeResult,
    Provider,
    Rejection,
    normalize,
    normalize_body,
)
from processor.adapters.providers.base import FieldError, parse_timestamp, stable_event_id

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

INSTANT = datetime(2017, 12, 15, 0, 59, 29, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1513299569, INSTANT),
        (1513299569000, INSTANT),
        ("1513299569", INSTANT),
        ("1513299569000", INSTANT),
        (1513299569.25, INSTANT.replace(microsecond=250000)),
        (1521472262.908181, datetime(2018, 3, 19, 15, 11, 2, 908181, tzinfo=UTC)),
        ("1521472262.908181", datetime(2018, 3, 19, 15, 11, 2, 908181, tzinfo=UTC)),
        (1591726752372, datetime(2020, 6, 9, 18, 19, 12, 372000, tzinfo=UTC)),
        ("2017-12-15T00:59:29Z", INSTANT),
        ("2017-12-15T01:59:29+01:00", INSTANT),
        ("2017-12-15T00:59:29.000+00:00", INSTANT),
        ("2019-11-05T16:33:54.9070259Z", datetime(2019, 11, 5, 16, 33, 54, 907025, tzinfo=UTC)),
    ],
)
def test_timestamps_in_seconds_milliseconds_and_iso_all_parse_to_utc(
    value: Any, expected: datetime
) -> None:
    """Epoch s or ms (numbers or strings, ms above 10^11) and ISO 8601 all give the UTC instant."""
    assert parse_timestamp(value, "x.timestamp") == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "missing"),
        ("", "missing"),
        (True, "expected a timestamp, got boolean"),
        ([1513299569], "expected a timestamp, got array"),
        ("2017-12-15T00:59:29", "timestamp has no UTC offset"),
        ("15/12/2017", "not an ISO 8601 timestamp or epoch number"),
        (float("nan"), "not a finite, non-negative epoch time"),
        (-5, "not a finite, non-negative epoch time"),
        (0, "timestamp outside 2000-2099 (wrong unit?)"),
        (1513299569000000, "timestamp outside 2000-2099 (wrong unit?)"),
        (10**30, "timestamp outside 2000-2099 (wrong unit?)"),
    ],
)
def test_unusable_timestamps_are_field_errors_naming_the_field(value: Any, problem: str) -> None:
    """A timestamp that is absent, naive, unparsable or implausible names its field."""
    with pytest.raises(FieldError) as caught:
        parse_timestamp(value, "x.timestamp")

    assert (caught.value.field, caught.value.problem) == ("x.timestamp", problem)


def test_event_ids_of_plain_provider_ids_are_readable() -> None:
    """Plain token ids join readably under the provider's prefix."""
    assert stable_event_id(Provider.SPARKPOST, "bounce", "92356927693813856") == (
        "sparkpost:bounce:92356927693813856"
    )


def test_event_ids_with_an_address_are_hashed_deterministically() -> None:
    """A part holding an address makes the id a fixed sha256 hash, without the address."""
    event_id = stable_event_id(Provider.SES, "message-1", "Bounce", "jane@example.com")

    # Pinned: changing the hashing would give every redelivered event a new id.
    assert event_id == "ses:sha256:2add51872c853c998a30e082e6c131dedb28630dc8de61ed06d14e9db8bb231f"
    assert "jane" not in event_id


def test_event_ids_too_long_to_read_are_hashed_within_the_schema_limit() -> None:
    """A composite longer than 256 characters is hashed, so it always fits DeliveryEvent."""
    event_id = stable_event_id(Provider.SENDGRID, "x" * 300)

    assert event_id.startswith("sendgrid:sha256:")
    assert len(event_id) <= 256


@given(st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_event_ids_are_stable_bounded_and_never_carry_an_at_sign(parts: list[str]) -> None:
    """Any parts give the same id twice, within 256 characters and without an '@'."""
    event_id = stable_event_id(Provider.MAILGUN, *parts)

    assert event_id == stable_event_id(Provider.MAILGUN, *parts)
    assert len(event_id) <= 256
    assert "@" not in event_id


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["event", "email", "timestamp", "type", "eventType", "mail", "msys", "event-data",
             "RecordType", "Recipient", "recipient", "bounce", "Message", "Type", "TopicArn"]
        )
        | st.text(max_size=8),
        children,
        max_size=5,
    ),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=200)
@given(provider=st.sampled_from(list(Provider)), payload=JSON)
def test_no_payload_makes_an_adapter_raise(provider: Provider, payload: Any) -> None:
    """Whatever JSON arrives, every adapter returns a result and never raises."""
    result = normalize(provider, payload, tenant_id="acme")

    assert isinstance(result, NormalizeResult)
    for event in result.events:
        assert "@" not in event.event_id


# (provider, where, file): a spread of real payloads to mutate, from both sample sources.
REAL_PAYLOADS = [
    ("ses", "shared", "event_publishing_bounce.json"),
    ("ses", "shared", "event_publishing_subscription.json"),
    ("ses", "shared", "sns_notification_bounce_without_dsn.json"),
    ("ses", "shared", "sns_http_envelope_subscription_confirmation.json"),
    ("sendgrid", "shared", "batch_all_event_types.json"),
    ("sendgrid", "shared", "legacy_marketing_unsubscribe.json"),
    ("postmark", "shared", "bounce_hard.json"),
    ("postmark", "shared", "subscription_change.json"),
    ("mailgun", "fixtures", "webhook_delivered.json"),
    ("mailgun", "fixtures", "events_api_failed_permanent_bounce.json"),
    ("sparkpost", "fixtures", "event_samples_batch.json"),
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _replaced(payload: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    mutated = copy.deepcopy(payload)
    parent = mutated
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return mutated


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_real_payloads_with_any_field_replaced_never_make_an_adapter_raise(
    shared_sample: Callable[[str, str], Any],
    fixture_payload: Callable[[str, str], Any],
    data: st.DataObject,
) -> None:
    """Replacing any field of a real payload by any JSON value yields a result, never an error."""
    provider, where, name = data.draw(st.sampled_from(REAL_PAYLOADS))
    payload = (shared_sample if where == "shared" else fixture_payload)(provider, name)
    path = data.draw(st.sampled_from(list(_paths(payload))))

    result = normalize(
        Provider(provider),
        _replaced(payload, path, data.draw(JSON)),
        tenant_id="acme",
        attribution=AttributionConfig(fallback_campaign_id="unattributed"),
    )

    assert isinstance(result, NormalizeResult)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "not valid JSON (Expecting value at line 1 column 1)"),
        (b'[{"email": ', "not valid JSON (Expecting value at line 1 column 12)"),
        (b"[NaN]", "not valid JSON (NaN is not JSON)"),
        (b"\xff\xfe\xfa", "not valid JSON"),
    ],
)
def test_a_body_that_is_not_json_is_one_rejection_naming_the_provider(
    body: bytes, problem: str
) -> None:
    """normalize_body turns an unparsable body into a single rejection, not an exception."""
    result = normalize_body(Provider.SENDGRID, body, tenant_id="acme")

    assert result.events == ()
    [rejection] = result.rejected
    assert rejection.field == "sendgrid"
    assert rejection.problem.startswith(problem)


def test_a_json_body_is_normalized_like_the_parsed_payload() -> None:
    """normalize_body of valid JSON equals normalize of the parsed value."""
    payload = {
        "RecordType": "Delivery",
        "MessageID": "m-1",
        "Recipient": "ana@example.com",
        "DeliveredAt": "2019-11-05T16:33:54Z",
        "Tag": "welcome",
    }

    from_body = normalize_body(Provider.POSTMARK, json.dumps(payload).encode(), tenant_id="acme")

    assert from_body == normalize(Provider.POSTMARK, payload, tenant_id="acme")
    assert [e.campaign_id for e in from_body.events] == ["welcome"]


@pytest.mark.parametrize("tenant_id", ["", " acme", "acme:eu", "x" * 201])
def test_an_invalid_tenant_id_is_a_caller_error(tenant_id: str) -> None:
    """The tenant comes from the caller's credentials; an invalid one raises ValueError."""
    with pytest.raises(ValueError, match="tenant_id"):
        normalize(Provider.SES, {}, tenant_id=tenant_id)
    with pytest.raises(ValueError, match="tenant_id"):
        normalize_body(Provider.SES, b"{}", tenant_id=tenant_id)


def test_the_fallback_campaign_attributes_records_that_name_none() -> None:
    """A tenant's fallback campaign is used only when a record names no campaign."""
    record = {"event": "delivered", "email": "ana@example.com", "timestamp": 1513299569}
    config = AttributionConfig(fallback_campaign_id="transactional")

    [unnamed] = normalize(Provider.SENDGRID, [record], tenant_id="acme", attribution=config).events
    [named] = normalize(
        Provider.SENDGRID,
        [record | {"campaign_id": "spring-sale"}],
        tenant_id="acme",
        attribution=config,
    ).events

    assert (unnamed.campaign_id, named.campaign_id) == ("transactional", "spring-sale")


def test_provider_campaign_fields_can_be_switched_off() -> None:
    """A tenant may refuse provider campaign fields, keeping only its own metadata key."""
    record = {
        "event": "open",
        "email": "a@example.com",
        "timestamp": 1513299569,
        "singlesend_id": "s-1",
    }
    config = AttributionConfig(provider_campaign_fields=False)

    result = normalize(Provider.SENDGRID, [record], tenant_id="acme", attribution=config)

    assert [r.field for r in result.rejected] == ["sendgrid[0].campaign_id"]


@pytest.mark.parametrize(
    "fields",
    [
        {"campaign_keys": ("",)},
        {"fallback_campaign_id": "two:parts"},
        {"unknown": True},
    ],
)
def test_attribution_config_refuses_invalid_settings(fields: dict[str, Any]) -> None:
    """Empty keys, an invalid fallback campaign and unknown settings are configuration errors."""
    with pytest.raises(ValidationError):
        AttributionConfig.model_validate(fields)


def test_results_carry_reasons_that_start_with_the_field() -> None:
    """Ignored and Rejection render as `<field>: <problem>`."""
    assert Rejection(3, "sendgrid[3].email", "missing").reason == "sendgrid[3].email: missing"
    assert Ignored(None, "ses.eventType", "no signal").reason == "ses.eventType: no signal"
