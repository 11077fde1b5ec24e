"""Signed tokens: the VERP return-path token and the one-click unsubscribe token (HMAC-SHA256).

Pure: keys and the current time are passed in. A token is signed with the current key and
verified against the current and the previous key (rotation); each kind signs under its own
label, so a token of one kind is never valid as the other. docs/MAIL.md describes the formats.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pydantic import TypeAdapter, ValidationError

from schemas.base import ContactId, Identifier

if TYPE_CHECKING:
    from collections.abc import Sequence

VERP_LABEL: Final = b"sendguard-verp-v1\x00"
UNSUBSCRIBE_LABEL: Final = b"sendguard-unsubscribe-v1\x00"
VERP_MAC_BYTES: Final = 10
"""80 bits: a forger must guess online, one SMTP transaction per try."""
UNSUBSCRIBE_MAC_BYTES: Final = 16
MIN_KEY_BYTES: Final = 16
LOCAL_PART_MAX: Final = 64
"""RFC 5321's limit of a local part; longer VERP addresses work with most servers, not all."""
_SEPARATOR: Final = "\x1f"
"""ASCII unit separator: neither an identifier nor a contact id may contain it."""
_IDENTIFIER: Final = TypeAdapter(Identifier)
_CONTACT: Final = TypeAdapter(ContactId)
_ADDRESS_PARTS: Final = 2


class TokenError(ValueError):
    """A token that is malformed, not signed by a configured key, or expired."""


class TokenExpiredError(TokenError):
    """A genuine token past its expiry."""


@dataclass(frozen=True, slots=True)
class VerpToken:
    """What a bounce address carries: whose message it was."""

    tenant_id: str
    campaign_id: str
    contact_id: str


@dataclass(frozen=True, slots=True)
class UnsubscribeToken:
    """What a one-click unsubscribe URL carries, and until when it is honoured."""

    tenant_id: str
    campaign_id: str
    contact_id: str
    address: str
    expires_at_s: int
    """Epoch seconds."""


def _check_keys(keys: Sequence[bytes]) -> None:
    if not keys:
        raise TokenError("no signing key is configured")
    for key in keys:
        if len(key) < MIN_KEY_BYTES:
            raise TokenError(f"a signing key must have at least {MIN_KEY_BYTES} bytes")


def _mac(key: bytes, label: bytes, payload: bytes, size: int) -> bytes:
    return hmac.new(key, label + payload, hashlib.sha256).digest()[:size]


def _verified(keys: Sequence[bytes], label: bytes, payload: bytes, mac: bytes, size: int) -> bool:
    # Every key is tried (no early exit): timing says nothing about which key matched.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(_mac(key, label, payload, size), mac)
    return matched


def _b32(data: bytes) -> str:
    # Lower-case base32: some mail systems fold the case of local parts.
    return base64.b32encode(data).decode().rstrip("=").lower()


def _unb32(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    try:
        return base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise TokenError("not base32") from exc


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("not base64url") from exc


def _ids(tenant_id: str, campaign_id: str, contact_id: str) -> tuple[str, str, str]:
    try:
        return (
            _IDENTIFIER.validate_python(tenant_id),
            _IDENTIFIER.validate_python(campaign_id),
            _CONTACT.validate_python(contact_id),
        )
    except ValidationError as exc:
        raise TokenError(f"not a valid id: {exc.errors()[0]['msg']}") from exc


def _fields(payload: bytes, count: int) -> list[str]:
    try:
        fields = payload.decode().split(_SEPARATOR)
    except UnicodeDecodeError as exc:
        raise TokenError("payload is not UTF-8") from exc
    if len(fields) != count:
        raise TokenError("payload has the wrong number of fields")
    return fields


# --- VERP -------------------------------------------------------------------------------------


def mint_verp_token(token: VerpToken, key: bytes) -> str:
    """The token of a return path's local part (`<prefix>+<token>@<bounce domain>`)."""
    _check_keys([key])
    payload = _SEPARATOR.join(_ids(token.tenant_id, token.campaign_id, token.contact_id)).encode()
    return f"{_b32(payload)}.{_b32(_mac(key, VERP_LABEL, payload, VERP_MAC_BYTES))}"


def read_verp_token(text: str, keys: Sequence[bytes]) -> VerpToken:
    """The ids of a token signed by one of `keys`; TokenError otherwise."""
    _check_keys(keys)
    payload_text, dot, mac_text = text.strip().lower().partition(".")
    if not dot or not payload_text or not mac_text:
        raise TokenError("not a VERP token (payload.mac)")
    payload, mac = _unb32(payload_text), _unb32(mac_text)
    if not _verified(keys, VERP_LABEL, payload, mac, VERP_MAC_BYTES):
        raise TokenError("the VERP token's signature does not match any configured key")
    tenant_id, campaign_id, contact_id = _fields(payload, 3)
    return VerpToken(*_ids(tenant_id, campaign_id, contact_id))


def verp_address(token: VerpToken, key: bytes, *, prefix: str, domain: str) -> str:
    """The whole return path: `<prefix>+<token>@<domain>`."""
    return f"{prefix}+{mint_verp_token(token, key)}@{domain}"


def verp_token_of(address: str, *, prefix: str, domains: Sequence[str]) -> str | None:
    """The token part of an address `<prefix>+<token>@<one of domains>`, else None.

    Local part and domain are compared without case: mail systems may fold either.
    """
    local, at, domain = address.strip().strip("<>").rpartition("@")
    if not at or domain.lower() not in {d.lower() for d in domains}:
        return None
    head, plus, token = local.partition("+")
    if not plus or head.lower() != prefix.lower() or not token:
        return None
    return token


# --- one-click unsubscribe --------------------------------------------------------------------


def mint_unsubscribe_token(token: UnsubscribeToken, key: bytes) -> str:
    """The URL-safe token of a one-click unsubscribe URL."""
    _check_keys([key])
    ids = _ids(token.tenant_id, token.campaign_id, token.contact_id)
    address = _address(token.address)
    payload = _SEPARATOR.join([str(token.expires_at_s), *ids, address]).encode()
    mac = _mac(key, UNSUBSCRIBE_LABEL, payload, UNSUBSCRIBE_MAC_BYTES)
    return f"{_b64(payload)}.{_b64(mac)}"


def read_unsubscribe_token(text: str, keys: Sequence[bytes], *, now_s: float) -> UnsubscribeToken:
    """The unsubscribe of a token signed by one of `keys` and not expired at `now_s`."""
    _check_keys(keys)
    payload_text, dot, mac_text = text.strip().partition(".")
    if not dot or not payload_text or not mac_text:
        raise TokenError("not an unsubscribe token (payload.mac)")
    payload, mac = _unb64(payload_text), _unb64(mac_text)
    if not _verified(keys, UNSUBSCRIBE_LABEL, payload, mac, UNSUBSCRIBE_MAC_BYTES):
        raise TokenError("the unsubscribe token's signature does not match any configured key")
    expires, tenant_id, campaign_id, contact_id, address = _fields(payload, 5)
    if not (expires.isascii() and expires.isdigit()):
        raise TokenError("the expiry is not a number")
    if int(expires) <= now_s:
        raise TokenExpiredError("the unsubscribe token has expired")
    ids = _ids(tenant_id, campaign_id, contact_id)
    return UnsubscribeToken(*ids, address=_address(address), expires_at_s=int(expires))


def _address(address: str) -> str:
    parts = address.strip().split("@")
    if len(parts) != _ADDRESS_PARTS or not all(parts) or any(c.isspace() for c in address.strip()):
        raise TokenError("not an email address")
    if _SEPARATOR in address:
        raise TokenError("an address must not contain control characters")
    return address.strip()
