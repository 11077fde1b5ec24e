"""Shared base classes and field types for topic messages.

Inputs tolerate unknown fields (producers evolve ahead of us); outputs are exact. Every
timestamp is timezone-aware and normalized to UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, WithJsonSchema


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware timestamp, converted to UTC; naive timestamps are rejected."""

# Characters no identifier may hold, as (first, last) code points: control (Cc), format (Cf),
# surrogate (Cs), line and paragraph separators (Zl, Zp) and every space but U+0020 (Zs), as of
# Unicode 15.1. tests/unit/schemas checks them against `unicodedata`.
_INVISIBLE: Final[tuple[tuple[int, int], ...]] = (
    (0x0000, 0x001F), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x1680, 0x1680),
    (0x180E, 0x180E), (0x2000, 0x200F), (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F),
    (0x3000, 0x3000), (0xD800, 0xDFFF), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)  # fmt: skip


_BMP_LAST: Final = 0xFFFF
_SURROGATES: Final = (0xD800, 0xDFFF)


def _escape(code: int) -> str:
    return f"\\u{code:04X}" if code <= _BMP_LAST else f"\\U{code:08X}"


def _character_class(ranges: tuple[tuple[int, int], ...], extra: str) -> str:
    # `extra` is taken literally: ':', '{' and '}' need no escape inside a class in Python,
    # Rust or ECMA-262, and an escaped ':' is a syntax error in ECMA's Unicode mode.
    return (
        "".join(_escape(a) if a == b else f"{_escape(a)}-{_escape(b)}" for a, b in ranges) + extra
    )


def _whole(forbidden: str) -> str:
    """A whole value of none of `forbidden`, neither starting nor ending with a space."""
    return f"[^ {forbidden}](?:[^{forbidden}]*[^ {forbidden}])?"


IDENTIFIER_FORBIDDEN: Final = _character_class(_INVISIBLE, ":{}")
"""The character class (without brackets) of what an identifier must not contain."""
IDENTIFIER_RE: Final = re.compile(_whole(IDENTIFIER_FORBIDDEN))
"""A whole identifier (`fullmatch`): see `Identifier`. Shared with the fast event decoder."""
CONTACT_ID_RE: Final = re.compile(_whole(_character_class(_INVISIBLE, "")))
"""A whole contact id (`fullmatch`): see `ContactId`."""
_BMP_INVISIBLE: Final = tuple(r for r in _INVISIBLE if r[1] <= _BMP_LAST and r != _SURROGATES)
"""ECMA-262 (JSON Schema) has no `\\U` escape: the schemas' patterns leave out the few
invisible characters beyond U+FFFF, which the validators refuse all the same."""


def _checked(value: str, allowed: re.Pattern[str], what: str) -> str:
    if allowed.fullmatch(value):
        return value
    if value.startswith(" ") or value.endswith(" "):
        raise ValueError(f"{what} must not start or end with a space")
    found = ((i, c) for i, c in enumerate(value) if c != " " and not allowed.match(c))
    index, char = next(found, (0, value[:1]))
    if char in ":{}":
        raise ValueError(
            f"{what} must not contain {char!r} (position {index}): ':' separates the parts of "
            "keys, '{' and '}' are Redis Cluster hash tags"
        )
    raise ValueError(
        f"{what} must not contain U+{ord(char):04X} (position {index}): no control, format or "
        "invisible characters, and no spaces other than U+0020"
    )


def _identifier(value: str) -> str:
    return _checked(value, IDENTIFIER_RE, "an identifier")


def _contact_id(value: str) -> str:
    return _checked(value, CONTACT_ID_RE, "a contact id")


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_identifier),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "pattern": f"^{_whole(_character_class(_BMP_INVISIBLE, ':{}'))}$",
        }
    ),
]
"""Tenant, campaign and clone campaign ids: 1-200 characters, none of them a control, format,
surrogate or line-separator character or a space other than U+0020 (so `ac\\u200bme` is not
`acme` in disguise), and no `:` (the key separator), `{` or `}` (Redis Cluster hash tags).
Inner spaces are allowed ("Example Campaign Name"), leading and trailing ones are not."""

ContactId = Annotated[
    str,
    Field(min_length=1, max_length=320),
    AfterValidator(_contact_id),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 320,
            "pattern": f"^{_whole(_character_class(_BMP_INVISIBLE, ''))}$",
        }
    ),
]
"""A tenant's own id of a contact (may be the address): the same invisible characters are
refused; `:`, `{` and `}` are allowed, since a contact id is never part of a key's name."""


def campaign_key(tenant_id: str, campaign_id: str) -> str:
    """`tenant:campaign`: the Kafka key of a campaign's messages, and its name in sets and logs.

    Unambiguous, as an Identifier has no ':'.
    """
    return f"{tenant_id}:{campaign_id}"


class InputMessage(BaseModel):
    """A message sendguard consumes: unknown fields are ignored, used fields are validated."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)


class OutputMessage(BaseModel):
    """A message sendguard publishes: exactly these fields, nothing else."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )
