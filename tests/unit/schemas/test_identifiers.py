"""The one identifier rule: every input path refuses invisible characters, ':', '{' and '}'."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from processor.adapters.providers import AttributionConfig, Provider, normalize
from processor.errors import InvalidInputError
from processor.ports.records import RawRecord
from processor.services.event_input import parse_with_time
from schemas.audience import AudienceChunk, ContactUpdate
from schemas.base import CONTACT_ID_RE, IDENTIFIER_RE, ContactId, Identifier

IDENTIFIER = TypeAdapter(Identifier)
CONTACT_ID = TypeAdapter(ContactId)
REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
VALID_EVENT: dict[str, Any] = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "campaign_id": "welcome",
    "recipient": {"contact_id": "c-1", "address": "someone@example.com"},
    "type": "delivered",
    "occurred_at": "2026-11-24T10:00:00Z",
}


def _refused(character: str) -> bool:
    category = unicodedata.category(character)
    return category in REFUSED_CATEGORIES or (category == "Zs" and character != " ")


def test_the_refused_characters_are_exactly_the_invisible_categories() -> None:
    """Every Cc, Cf, Cs, Zl, Zp and non-U+0020 Zs character is refused; nothing assigned else."""
    wrong = []
    for code in range(0x110000):
        character = chr(code)
        if character in ":{}":
            continue
        refused = IDENTIFIER_RE.fullmatch(f"a{character}a") is None
        category = unicodedata.category(character)
        # Newer Unicode versions than this Python's may add format characters: Cn is allowed.
        if refused != _refused(character) and not (refused and category == "Cn"):
            wrong.append(f"U+{code:04X} {category}")
    assert wrong == []


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("ac\u200bme", "U+200B"),  # zero-width space: prints like "acme"
        ("acme\u202e", "U+202E"),  # right-to-left override
        ("ac\u00adme", "U+00AD"),  # soft hyphen
        ("a\u00a0b", "U+00A0"),  # no-break space: looks like "a b"
        ("a\x7fb", "U+007F"),
        ("a\tb", "U+0009"),
        ("x\U000e0041", "U+E0041"),  # tag character
        ("{acme}", "'{'"),  # a Redis Cluster hash tag
        ("ac}me", "'}'"),
        ("ac:me", "':'"),
        ("acme ", "start or end with a space"),
    ],
)
def test_identifiers_with_invisible_or_reserved_characters_are_refused_with_the_reason(
    value: str, why: str
) -> None:
    """The refusal names the character (and where it is), never just 'does not match'."""
    with pytest.raises(ValidationError) as caught:
        IDENTIFIER.validate_python(value)
    assert why in str(caught.value)


@pytest.mark.parametrize("value", ["acme", "Example Campaign Name", "été-2026", "😀", "a.b_c-d/e"])
def test_plain_identifiers_are_accepted(value: str) -> None:
    """Letters of any script, inner spaces and punctuation other than ':{}' stay valid."""
    assert IDENTIFIER.validate_python(value) == value


@pytest.mark.parametrize("value", ["user{1}@example.com", "crm:42", "Jane Doe"])
def test_contact_ids_may_hold_what_key_names_may_not(value: str) -> None:
    """A contact id is never part of a Redis key's name: ':', '{' and '}' are fine there."""
    assert CONTACT_ID.validate_python(value) == value


@pytest.mark.parametrize("value", ["c\u200b1", "c\n1", "c\u2028"])
def test_contact_ids_with_invisible_characters_are_refused(value: str) -> None:
    """The invisible characters are refused in contact ids too."""
    with pytest.raises(ValidationError, match="a contact id must not contain U\\+"):
        CONTACT_ID.validate_python(value)


@settings(max_examples=2000, deadline=None)
@given(st.text(max_size=12))
def test_the_regexes_and_the_models_agree(value: str) -> None:
    """The fast decoder's regexes accept exactly what the pydantic types accept."""
    for pattern, adapter in ((IDENTIFIER_RE, IDENTIFIER), (CONTACT_ID_RE, CONTACT_ID)):
        try:
            adapter.validate_python(value)
        except ValidationError:
            accepted = False
        else:
            accepted = True
        assert (pattern.fullmatch(value) is not None) is accepted, repr(value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tenant_id", "ac\u200bme"),
        ("campaign_id", "{welcome}"),
        ("campaign_id", "wel\u2060come"),
        ("recipient.contact_id", "c\u200b1"),
    ],
)
def test_the_event_decoder_refuses_them_with_the_field(field: str, value: str) -> None:
    """Kafka input (fast decoder, then the contract) is refused naming the field."""
    document = json.loads(json.dumps(VALID_EVENT))
    if field.startswith("recipient."):
        document["recipient"][field.removeprefix("recipient.")] = value
    else:
        document[field] = value
    record = RawRecord("t", 0, 0, None, json.dumps(document).encode(), None)
    with pytest.raises(InvalidInputError) as caught:
        parse_with_time(record, -1)
    assert caught.value.reason.startswith(field), caught.value.reason
    assert parse_with_time(RawRecord("t", 0, 0, None, json.dumps(VALID_EVENT).encode(), None), -1)


def test_audience_and_contact_updates_refuse_them() -> None:
    """The audience and contact-update contracts use the same rule."""
    chunk = {
        "tenant_id": "ac\u200bme",
        "campaign_id": "welcome",
        "chunk_index": 0,
        "recipients": [{"contact_id": "c1", "address": "a@example.com"}],
    }
    with pytest.raises(ValidationError, match="U\\+200B"):
        AudienceChunk.model_validate(chunk)
    with pytest.raises(ValidationError, match="'\\{'"):
        ContactUpdate.model_validate(
            {"tenant_id": "{acme}", "contact_id": "c1", "occurred_at": "2026-11-24T10:00:00Z"}
        )


def test_a_webhook_campaign_id_with_a_zero_width_space_is_rejected_with_the_reason() -> None:
    """A provider record naming a campaign with a zero-width space is rejected, naming it."""
    record = {
        "email": "someone@example.com",
        "event": "delivered",
        "timestamp": 1_764_000_000,
        "sg_event_id": "ev1",
        "sg_message_id": "m1",
        "campaign_id": "wel\u200bcome",
    }
    result = normalize(
        Provider.SENDGRID,
        [record],
        tenant_id="acme",
        attribution=AttributionConfig(campaign_keys=("campaign_id",)),
    )
    assert result.events == ()
    [rejection] = result.rejected
    assert "U+200B" in rejection.problem
