"""The campaign key every producer and consumer of sendguard's topics builds alike."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from schemas.base import Identifier, campaign_key

IDENTIFIER = TypeAdapter(Identifier)


def _is_identifier(text: str) -> bool:
    try:
        return IDENTIFIER.validate_python(text) == text
    except ValueError:  # pydantic's ValidationError
        return False


identifiers = st.text(min_size=1, max_size=40).filter(_is_identifier)


def test_the_campaign_key_is_tenant_colon_campaign() -> None:
    """The documented `tenant:campaign` form, byte for byte."""
    assert campaign_key("t1", "Example Campaign") == "t1:Example Campaign"


@given(identifiers, identifiers)
def test_the_campaign_key_names_one_tenant_and_campaign(tenant: str, campaign: str) -> None:
    """Identifiers have no ':', so a key splits back into exactly its tenant and campaign."""
    assert campaign_key(tenant, campaign).split(":") == [tenant, campaign]
