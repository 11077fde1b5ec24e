"""Webhook authentication: pure SendGrid, Mailgun, SNS and HTTP basic (Postmark) checks.

No I/O: key material comes in already loaded, the clock comes in as `now`, and replay memory
(Mailgun tokens) is the caller's. Each check returns the tenant whose credential verified.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from processor.errors import SendguardError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import SecretStr

SENDGRID_SIGNATURE_HEADER: Final = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER: Final = "X-Twilio-Email-Event-Webhook-Timestamp"
MAILGUN_TOKEN_MAX_LENGTH: Final = 256
_EPOCH_SECONDS: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_SNS_SUBSCRIPTION_FIELDS: Final = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_SNS_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": _SNS_SUBSCRIPTION_FIELDS,
    "UnsubscribeConfirmation": _SNS_SUBSCRIPTION_FIELDS,
}
_SNS_OPTIONAL_FIELDS: Final = frozenset({"Subject"})
_SNS_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "1": hashes.SHA1,  # SignatureVersion 1 is SHA1withRSA by AWS's definition, not our choice
    "2": hashes.SHA256,
}
_NO_PASSWORD: Final = b"\x00" * 32
"""Compared against when the username is unknown, so both failures take the same time."""


class AuthenticationError(SendguardError):
    """A webhook request that must not be processed; `status` is the HTTP answer."""

    status: ClassVar[int] = 403

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MissingCredentialsError(AuthenticationError):
    """The request carries no usable credentials at all (HTTP 401)."""

    status: ClassVar[int] = 401


class RejectedCredentialsError(AuthenticationError):
    """Bad signature or password, wrong tenant, stale timestamp or replayed token (HTTP 403)."""

    status: ClassVar[int] = 403


# --- key material -------------------------------------------------------------------------------


def load_sendgrid_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """SendGrid's verification key as its console shows it (base64 DER SubjectPublicKeyInfo).

    PEM text is accepted too. Raises ValueError when it is not an ECDSA P-256 public key.
    """
    stripped = text.strip()
    try:
        if stripped.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(stripped.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(stripped, validate=True))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError("not a base64 DER (or PEM) public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")  # noqa: TRY004  # a bad config value, like a parse failure
    return key


def load_sns_certificate(pem: bytes) -> rsa.RSAPublicKey:
    """The RSA public key of an SNS signing certificate (PEM). Raises ValueError otherwise."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError("not a PEM X.509 certificate") from exc
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the certificate's key is not RSA")  # noqa: TRY004  # same as above
    return key


# --- shared checks ------------------------------------------------------------------------------


def check_fresh(moment: float, *, now: float, max_age_s: float, what: str) -> None:
    """Refuse a signed timestamp further than `max_age_s` from `now`, in either direction."""
    if abs(now - moment) > max_age_s:
        raise RejectedCredentialsError(
            f"{what} is outside the {max_age_s:g} s freshness window (stale or replayed)"
        )


def _epoch(text: str, what: str) -> float:
    if not _EPOCH_SECONDS.fullmatch(text.strip()):
        raise RejectedCredentialsError(f"{what} is not epoch seconds")
    return float(text)


def _base64(text: str, what: str) -> bytes:
    # Non-ASCII text is a plain ValueError, not binascii.Error: both are a forged header.
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise RejectedCredentialsError(f"{what} is not base64") from exc


def _utf8(text: str, what: str) -> bytes:
    # JSON may carry lone surrogates (`"\ud800"`): no signer could have signed those bytes.
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise RejectedCredentialsError(f"{what} is not valid Unicode") from exc


# --- SendGrid -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendgridSignature:
    """SendGrid's signature headers, checked before the body is read: fresh and base64."""

    signature: bytes
    timestamp: str


def sendgrid_signature(
    *, signature: str | None, timestamp: str | None, now: float, max_age_s: float
) -> SendgridSignature:
    """The decoded signature headers, or the refusal that needs no body (missing, stale, junk)."""
    if not signature or not timestamp:
        raise MissingCredentialsError(
            f"the {SENDGRID_SIGNATURE_HEADER} and {SENDGRID_TIMESTAMP_HEADER} headers are required"
        )
    check_fresh(
        _epoch(timestamp, "the SendGrid timestamp"),
        now=now,
        max_age_s=max_age_s,
        what="the SendGrid timestamp",
    )
    return SendgridSignature(_base64(signature, "the SendGrid signature"), timestamp.strip())


def verify_sendgrid(
    headers: SendgridSignature, body: bytes, keys: Mapping[str, ec.EllipticCurvePublicKey]
) -> str:
    """The tenant whose key verifies SendGrid's ECDSA P-256/SHA-256 signature of timestamp+body."""
    signed = headers.timestamp.encode() + body
    for tenant_id, key in keys.items():
        try:
            key.verify(headers.signature, signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return tenant_id
    raise RejectedCredentialsError("the SendGrid signature does not verify for this tenant")


def authenticate_sendgrid(
    *,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    keys: Mapping[str, ec.EllipticCurvePublicKey],
    now: float,
    max_age_s: float,
) -> str:
    """`sendgrid_signature` then `verify_sendgrid`, for a caller that has the body already."""
    headers = sendgrid_signature(
        signature=signature, timestamp=timestamp, now=now, max_age_s=max_age_s
    )
    return verify_sendgrid(headers, body, keys)


# --- Mailgun ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MailgunIdentity:
    """A verified Mailgun post: its tenant and the one-time token the caller must remember."""

    tenant_id: str
    token: str


def _text(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) and value else None


def authenticate_mailgun(
    payload: Any, keys: Mapping[str, bytes], *, now: float, max_age_s: float
) -> MailgunIdentity:
    """The tenant whose signing key gives the body's HMAC-SHA256 of timestamp+token.

    The caller must still refuse a token it has seen before (replay protection).
    """
    block = payload.get("signature") if isinstance(payload, dict) else None
    if not isinstance(block, dict):
        raise MissingCredentialsError("the Mailgun body has no `signature` object")
    timestamp = _text(block.get("timestamp"))
    token = _text(block.get("token"))
    signature = _text(block.get("signature"))
    if timestamp is None or token is None or signature is None:
        raise MissingCredentialsError(
            "signature.timestamp, signature.token and signature.signature are required"
        )
    if len(token) > MAILGUN_TOKEN_MAX_LENGTH:
        raise RejectedCredentialsError("the Mailgun token is too long")
    what = "the Mailgun signature timestamp"
    check_fresh(_epoch(timestamp, what), now=now, max_age_s=max_age_s, what=what)
    given = _utf8(signature.strip().lower(), "the Mailgun signature")
    signed = _utf8(timestamp + token, "the Mailgun token")
    for tenant_id, key in keys.items():
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given):
            return MailgunIdentity(tenant_id, token)
    raise RejectedCredentialsError("the Mailgun signature does not verify for this tenant")


# --- Amazon SNS (SES over HTTP) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnsTopicKeys:
    """The tenant an SNS topic delivers for, and the signing certificates' keys to verify with."""

    tenant_id: str
    public_keys: tuple[rsa.RSAPublicKey, ...]


def sns_canonical_string(message: Mapping[str, Any]) -> bytes:
    r"""The bytes SNS signs: `Name\nvalue\n` of the type's fields in AWS's documented order.

    Notification: Message, MessageId, Subject (only if present), Timestamp, TopicArn, Type.
    (Un)SubscriptionConfirmation: Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn,
    Type.
    """
    kind = message.get("Type")
    fields = _SNS_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise RejectedCredentialsError("unknown SNS message Type: cannot verify its signature")
    parts = []
    for name in fields:
        value = message.get(name)
        if value is None and name in _SNS_OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise RejectedCredentialsError(f"the SNS message's {name} is missing or not a string")
        parts.append(f"{name}\n{value}\n")
    return _utf8("".join(parts), "the SNS message")


def _sns_timestamp(value: Any) -> float:
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment.timestamp()
    raise RejectedCredentialsError("the SNS Timestamp is not an ISO 8601 time with an offset")


def authenticate_sns(
    message: Any, topics: Mapping[str, SnsTopicKeys], *, now: float, max_age_s: float
) -> str:
    """The tenant of a configured TopicArn whose signing certificate verifies the SNS message.

    SignatureVersion 1 is SHA1withRSA, 2 is SHA256withRSA, over `sns_canonical_string`. The
    certificate comes from configuration; SigningCertURL is never fetched.
    """
    if not isinstance(message, dict):
        raise MissingCredentialsError("the body is not an SNS message object")
    signature = message.get("Signature")
    version = message.get("SignatureVersion")
    if not isinstance(signature, str) or not signature or not isinstance(version, str):
        raise MissingCredentialsError("the SNS message has no Signature and SignatureVersion")
    algorithm = _SNS_HASHES.get(version)
    if algorithm is None:
        raise RejectedCredentialsError(f"unsupported SNS SignatureVersion {version[:8]!r}")
    arn = message.get("TopicArn")
    topic = topics.get(arn) if isinstance(arn, str) else None
    if topic is None:
        raise RejectedCredentialsError("the SNS TopicArn is not configured for this tenant")
    what = "the SNS Timestamp"
    check_fresh(_sns_timestamp(message.get("Timestamp")), now=now, max_age_s=max_age_s, what=what)
    signed = sns_canonical_string(message)
    raw = _base64(signature, "the SNS Signature")
    for key in topic.public_keys:
        try:
            key.verify(raw, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            continue
        return topic.tenant_id
    raise RejectedCredentialsError("the SNS signature does not verify with the topic's certificate")


# --- HTTP basic (Postmark, SparkPost) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BasicAccount:
    """A tenant's basic-auth password for one provider (the username is the lookup key)."""

    tenant_id: str
    password: SecretStr


def authenticate_basic(authorization: str | None, accounts: Mapping[str, BasicAccount]) -> str:
    """The tenant whose username and password the `Authorization: Basic` header carries."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise MissingCredentialsError("HTTP basic credentials are required")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are both ValueErrors
        raise MissingCredentialsError("the basic credentials are not base64 UTF-8") from exc
    username, colon, password = decoded.partition(":")
    if not colon:
        raise MissingCredentialsError("the basic credentials have no `user:password` form")
    account = accounts.get(username)
    expected = account.password.get_secret_value().encode() if account else _NO_PASSWORD
    matches = hmac.compare_digest(password.encode(), expected)
    if account is None or not matches:
        raise RejectedCredentialsError("wrong username or password for this tenant")
    return account.tenant_id
