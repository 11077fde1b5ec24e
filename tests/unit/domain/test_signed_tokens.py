"""VERP and unsubscribe tokens: they round-trip, and forged, altered or expired ones are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.domain.signed_tokens import (
    TokenError,
    TokenExpiredError,
    UnsubscribeToken,
    VerpToken,
    mint_unsubscribe_token,
    mint_verp_token,
    read_unsubscribe_token,
    read_verp_token,
    verp_address,
    verp_token_of,
)

KEY = b"k" * 32
OLD_KEY = b"o" * 32
OTHER_KEY = b"x" * 32
IDS = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":{}"),
    min_size=1,
    max_size=40,
)


@given(tenant=IDS, campaign=IDS, contact=IDS)
def test_a_verp_token_reads_back_its_ids(tenant: str, campaign: str, contact: str) -> None:
    """Any valid ids minted into a token are read back unchanged, even after case folding."""
    token = mint_verp_token(VerpToken(tenant, campaign, contact), KEY)
    assert read_verp_token(token, [KEY]) == VerpToken(tenant, campaign, contact)
    assert read_verp_token(token.upper(), [KEY]) == VerpToken(tenant, campaign, contact)


def test_a_token_of_the_previous_key_is_accepted_and_of_another_key_refused() -> None:
    """Rotation: the previous key still verifies; a key not configured never does."""
    token = mint_verp_token(VerpToken("acme", "c1", "u1"), OLD_KEY)
    assert read_verp_token(token, [KEY, OLD_KEY]).tenant_id == "acme"
    with pytest.raises(TokenError, match="signature"):
        read_verp_token(token, [KEY, OTHER_KEY])


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t.replace(t[0], "a" if t[0] != "a" else "b", 1),  # payload changed
        lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"),  # mac changed
        lambda t: t.split(".")[0],  # mac removed
        lambda t: "!" + t,  # not base32
    ],
    ids=["payload", "mac", "no-mac", "garbage"],
)
def test_an_altered_verp_token_is_refused(tamper: object) -> None:
    """Any change to a token makes it invalid."""
    token = mint_verp_token(VerpToken("acme", "c1", "u1"), KEY)
    with pytest.raises(TokenError):
        read_verp_token(tamper(token), [KEY])  # type: ignore[operator]


def test_a_verp_address_is_found_only_under_the_prefix_and_a_bounce_domain() -> None:
    """`b+TOKEN@bounce.example.com` yields TOKEN; other prefixes and domains yield nothing."""
    address = verp_address(
        VerpToken("acme", "c1", "u1"), KEY, prefix="b", domain="bounce.example.com"
    )
    token = verp_token_of(address.upper(), prefix="b", domains=["bounce.example.com"])
    assert token is not None
    assert read_verp_token(token, [KEY]).contact_id == "u1"
    assert verp_token_of(address, prefix="x", domains=["bounce.example.com"]) is None
    assert verp_token_of(address, prefix="b", domains=["other.example.com"]) is None
    assert verp_token_of("b@bounce.example.com", prefix="b", domains=["bounce.example.com"]) is None


def test_an_unsubscribe_token_round_trips_until_it_expires() -> None:
    """A token reads back before its expiry and is refused as expired from then on."""
    wanted = UnsubscribeToken("acme", "c1", "u1", "u1@example.com", expires_at_s=2_000_000_000)
    token = mint_unsubscribe_token(wanted, KEY)
    assert read_unsubscribe_token(token, [OTHER_KEY, KEY], now_s=1_999_999_999) == wanted
    with pytest.raises(TokenExpiredError):
        read_unsubscribe_token(token, [KEY], now_s=2_000_000_000)


def test_a_token_of_one_kind_is_never_valid_as_the_other() -> None:
    """The kinds sign under different labels: a VERP token is no unsubscribe token."""
    verp = mint_verp_token(VerpToken("acme", "c1", "u1"), KEY)
    with pytest.raises(TokenError):
        read_unsubscribe_token(verp, [KEY], now_s=0)
    unsubscribe = mint_unsubscribe_token(
        UnsubscribeToken("acme", "c1", "u1", "u1@example.com", 2_000_000_000), KEY
    )
    with pytest.raises(TokenError):
        read_verp_token(unsubscribe, [KEY])


def test_an_altered_unsubscribe_token_is_refused() -> None:
    """Changing the payload (another contact, a later expiry) breaks the signature."""
    token = mint_unsubscribe_token(
        UnsubscribeToken("acme", "c1", "u1", "u1@example.com", 2_000_000_000), KEY
    )
    forged = mint_unsubscribe_token(
        UnsubscribeToken("acme", "c1", "u2", "u2@example.com", 2_000_000_000), OTHER_KEY
    )
    spliced = forged.split(".")[0] + "." + token.split(".")[1]
    with pytest.raises(TokenError, match="signature"):
        read_unsubscribe_token(spliced, [KEY], now_s=0)


@pytest.mark.parametrize("keys", [[], [b"short"]], ids=["none", "short"])
def test_missing_or_short_keys_are_refused(keys: list[bytes]) -> None:
    """No token is read or minted without a key of at least 16 bytes."""
    with pytest.raises(TokenError):
        read_verp_token("aaaa.bbbb", keys)


def test_ids_that_are_not_identifiers_are_refused_when_minting() -> None:
    """A tenant with ':' cannot be minted (it would break the Kafka key)."""
    with pytest.raises(TokenError, match="not a valid id"):
        mint_verp_token(VerpToken("ac:me", "c1", "u1"), KEY)
