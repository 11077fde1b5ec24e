"""Unit tests of webhook authentication and the credentials file, with keys the tests generate."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from processor.adapters.providers import Provider
from processor.config.settings import Settings
from processor.errors import ConfigurationError
from processor.webhooks.auth import (
    BasicAccount,
    MissingCredentialsError,
    RejectedCredentialsError,
    SnsTopicKeys,
    authenticate_basic,
    authenticate_mailgun,
    authenticate_sendgrid,
    authenticate_sns,
    load_sendgrid_public_key,
    load_sns_certificate,
    sns_canonical_string,
)
from processor.webhooks.credentials import parse_credentials
from processor.webhooks.server import create_webhook_app

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from redis.asyncio import Redis

NOW = 1_750_000_000.0
BODY = b'[{"email":"a@example.com","event":"bounce","campaign_id":"c1"}]'
ARN = "arn:aws:sns:us-west-2:123456789012:acme-ses"


# --- key material the tests generate ------------------------------------------------------------


def public_b64(key: ec.EllipticCurvePrivateKey) -> str:
    """The base64 DER SubjectPublicKeyInfo of a key, as SendGrid's console shows it."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign_sendgrid(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """SendGrid's signature: base64 DER ECDSA P-256/SHA-256 over timestamp + body."""
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def mailgun_block(key: bytes, timestamp: str, token: str | None = None) -> dict[str, str]:
    """A Mailgun `signature` object signed with `key`."""
    token = token or secrets.token_hex(25)
    digest = hmac.new(key, (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": digest}


def self_signed(key: rsa.RSAPrivateKey) -> bytes:
    """A PEM certificate for `key`, standing in for AWS's SNS signing certificate."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.test.invalid")])
    start = datetime.now(UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def sns_signed(
    key: rsa.RSAPrivateKey, message: dict[str, Any], version: str = "2"
) -> dict[str, Any]:
    """`message` with SignatureVersion and the Signature SNS would give it."""
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303  # SNS v1 is SHA1
    signed = {**message, "SignatureVersion": version}
    raw = key.sign(sns_canonical_string(signed), padding.PKCS1v15(), algorithm)
    return {**signed, "Signature": base64.b64encode(raw).decode()}


def notification(**fields: str) -> dict[str, Any]:
    """An SNS Notification envelope (unsigned), fresh at NOW."""
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": ARN,
        "Subject": "My First Message",
        "Message": "Hello world!",
        "Timestamp": datetime.fromtimestamp(NOW, UTC).isoformat().replace("+00:00", "Z"),
        "SigningCertURL": "https://sns.us-west-2.amazonaws.com/never-fetched.pem",
        **fields,
    }


def basic(username: str, password: str) -> str:
    """An `Authorization: Basic` header value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def sg_keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    """SendGrid key pairs of tenants acme and beta."""
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """The SNS signing key of the tests."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- SendGrid -----------------------------------------------------------------------------------


def sendgrid(
    keys: Mapping[str, ec.EllipticCurvePrivateKey],
    signer: ec.EllipticCurvePrivateKey,
    *,
    body: bytes = BODY,
    at: float = NOW,
    signed_body: bytes = BODY,
) -> str:
    """Authenticate a SendGrid post signed by `signer` against `keys`' public halves."""
    timestamp = str(int(at))
    return authenticate_sendgrid(
        signature=sign_sendgrid(signer, timestamp, signed_body),
        timestamp=timestamp,
        body=body,
        keys={t: load_sendgrid_public_key(public_b64(k)) for t, k in keys.items()},
        now=NOW,
        max_age_s=300,
    )


def test_sendgrid_valid_signature_names_its_tenant(sg_keys: tuple[Any, Any]) -> None:
    """A batch signed with acme's key authenticates as acme, even with beta's key also tried."""
    acme, beta = sg_keys
    assert sendgrid({"beta": beta, "acme": acme}, acme) == "acme"


def test_sendgrid_tampered_body_is_refused(sg_keys: tuple[Any, Any]) -> None:
    """One changed byte of the body makes the signature fail with 403."""
    acme, _ = sg_keys
    with pytest.raises(RejectedCredentialsError, match="does not verify") as caught:
        sendgrid({"acme": acme}, acme, body=BODY.replace(b"bounce", b"bounca"))
    assert caught.value.status == 403


@pytest.mark.parametrize("skew", [-301.0, 301.0])
def test_sendgrid_timestamp_outside_the_window_is_refused(
    sg_keys: tuple[Any, Any], skew: float
) -> None:
    """A correctly signed but stale (or future) timestamp is refused."""
    acme, _ = sg_keys
    with pytest.raises(RejectedCredentialsError, match="freshness window"):
        sendgrid({"acme": acme}, acme, at=NOW + skew)


def test_sendgrid_signature_of_another_tenant_is_refused(sg_keys: tuple[Any, Any]) -> None:
    """Tenant acme's valid signature does not pass where only beta's key is a candidate."""
    acme, beta = sg_keys
    with pytest.raises(RejectedCredentialsError):
        sendgrid({"beta": beta}, acme)


@pytest.mark.parametrize(("signature", "timestamp"), [(None, "1"), ("c2ln", None), ("", "")])
def test_sendgrid_missing_headers_are_unauthenticated(
    signature: str | None, timestamp: str | None
) -> None:
    """Without both signature headers the request is unauthenticated (401), not forbidden."""
    with pytest.raises(MissingCredentialsError) as caught:
        authenticate_sendgrid(
            signature=signature, timestamp=timestamp, body=BODY, keys={}, now=NOW, max_age_s=300
        )
    assert caught.value.status == 401


def test_sendgrid_key_loads_from_der_or_pem_and_only_p256(sg_keys: tuple[Any, Any]) -> None:
    """The console's base64 DER and PEM both load; a P-384 key or garbage is refused."""
    acme, _ = sg_keys
    pem = acme.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert load_sendgrid_public_key(public_b64(acme)) == load_sendgrid_public_key(pem.decode())
    with pytest.raises(ValueError, match="P-256"):
        load_sendgrid_public_key(public_b64(ec.generate_private_key(ec.SECP384R1())))
    with pytest.raises(ValueError, match="base64 DER"):
        load_sendgrid_public_key("not a key!")


# --- Mailgun ------------------------------------------------------------------------------------

MG_ACME, MG_BETA = secrets.token_bytes(32), secrets.token_bytes(32)


def test_mailgun_valid_signature_names_tenant_and_token() -> None:
    """The HMAC of timestamp+token under acme's key authenticates acme and returns the token."""
    block = mailgun_block(MG_ACME, str(int(NOW)), "tok-1")
    identity = authenticate_mailgun(
        {"signature": block}, {"beta": MG_BETA, "acme": MG_ACME}, now=NOW, max_age_s=300
    )
    assert (identity.tenant_id, identity.token) == ("acme", "tok-1")


@pytest.mark.parametrize(
    "change", [{"token": "another-token"}, {"timestamp": str(int(NOW) + 1)}, {"signature": "00"}]
)
def test_mailgun_tampered_signature_block_is_refused(change: dict[str, str]) -> None:
    """Changing the token, the timestamp or the digest fails verification with 403."""
    block = {**mailgun_block(MG_ACME, str(int(NOW))), **change}
    with pytest.raises(RejectedCredentialsError, match="does not verify"):
        authenticate_mailgun({"signature": block}, {"acme": MG_ACME}, now=NOW, max_age_s=300)


def test_mailgun_stale_timestamp_is_refused() -> None:
    """A correctly signed block from ten minutes ago is outside the 5-minute window."""
    block = mailgun_block(MG_ACME, str(int(NOW - 600)))
    with pytest.raises(RejectedCredentialsError, match="freshness window"):
        authenticate_mailgun({"signature": block}, {"acme": MG_ACME}, now=NOW, max_age_s=300)


def test_mailgun_signature_of_another_tenant_is_refused() -> None:
    """Tenant acme's valid block does not pass where only beta's key is a candidate."""
    block = mailgun_block(MG_ACME, str(int(NOW)))
    with pytest.raises(RejectedCredentialsError):
        authenticate_mailgun({"signature": block}, {"beta": MG_BETA}, now=NOW, max_age_s=300)


@pytest.mark.parametrize(
    "payload", [[], {"event-data": {}}, {"signature": "x"}, {"signature": {"timestamp": "1"}}]
)
def test_mailgun_without_signature_block_is_unauthenticated(payload: Any) -> None:
    """A body without a complete signature object is unauthenticated (401)."""
    with pytest.raises(MissingCredentialsError):
        authenticate_mailgun(payload, {"acme": MG_ACME}, now=NOW, max_age_s=300)


# --- SNS ----------------------------------------------------------------------------------------


def test_sns_canonical_string_of_a_notification_follows_aws_order() -> None:
    """Notification: Message, MessageId, Subject, Timestamp, TopicArn, Type; Subject optional."""
    message = notification()
    expected = (
        "Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        f"Subject\nMy First Message\nTimestamp\n{message['Timestamp']}\n"
        f"TopicArn\n{ARN}\nType\nNotification\n"
    )
    assert sns_canonical_string(message) == expected.encode()
    del message["Subject"]
    assert (
        sns_canonical_string(message)
        == expected.replace("Subject\nMy First Message\n", "").encode()
    )


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_sns_canonical_string_of_a_confirmation_follows_aws_order(kind: str) -> None:
    """Confirmations sign Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type."""
    message = notification(Type=kind, Token="tok", SubscribeURL="https://sns.example/confirm")  # noqa: S106  # an SNS test vector
    del message["Subject"]
    expected = (
        "Message\nHello world!\nMessageId\n22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324\n"
        f"SubscribeURL\nhttps://sns.example/confirm\nTimestamp\n{message['Timestamp']}\n"
        f"Token\ntok\nTopicArn\n{ARN}\nType\n{kind}\n"
    )
    assert sns_canonical_string(message) == expected.encode()


def sns_topics(*keys: rsa.RSAPrivateKey, tenant: str = "acme") -> dict[str, SnsTopicKeys]:
    """The configured topic ARN of `tenant`, verified with certificates of `keys`."""
    public = tuple(load_sns_certificate(self_signed(k)) for k in keys)
    return {ARN: SnsTopicKeys(tenant, public)}


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_valid_signature_names_the_topics_tenant(
    rsa_key: rsa.RSAPrivateKey, version: str
) -> None:
    """SignatureVersion 1 (SHA1withRSA) and 2 (SHA256withRSA) both verify with the config cert."""
    message = sns_signed(rsa_key, notification(), version)
    assert authenticate_sns(message, sns_topics(rsa_key), now=NOW, max_age_s=3600) == "acme"


def test_sns_rotated_certificates_are_each_tried(rsa_key: rsa.RSAPrivateKey) -> None:
    """With an old and a new certificate configured, a message signed by either verifies."""
    old = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = sns_signed(rsa_key, notification())
    assert authenticate_sns(message, sns_topics(old, rsa_key), now=NOW, max_age_s=3600) == "acme"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"Message": "Goodbye"}, "does not verify"),
        ({"TopicArn": ARN + "-other"}, "not configured"),
        ({"SignatureVersion": "3"}, "SignatureVersion"),
        ({"Type": "Surprise"}, "unknown SNS message Type"),
    ],
)
def test_sns_tampered_or_unconfigured_messages_are_refused(
    rsa_key: rsa.RSAPrivateKey, change: dict[str, str], match: str
) -> None:
    """A changed field, an unconfigured topic, version or type is forbidden (403)."""
    message = {**sns_signed(rsa_key, notification()), **change}
    with pytest.raises(RejectedCredentialsError, match=match):
        authenticate_sns(message, sns_topics(rsa_key), now=NOW, max_age_s=3600)


def test_sns_stale_timestamp_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """A validly signed message older than the SNS window is refused."""
    message = sns_signed(rsa_key, notification())
    with pytest.raises(RejectedCredentialsError, match="freshness window"):
        authenticate_sns(message, sns_topics(rsa_key), now=NOW + 7200, max_age_s=3600)


def test_sns_topic_of_another_tenant_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    """Tenant acme's topic, validly signed, is refused where only beta's topics are candidates."""
    message = sns_signed(rsa_key, notification())
    beta_topics = {ARN + "-beta": sns_topics(rsa_key, tenant="beta")[ARN]}
    with pytest.raises(RejectedCredentialsError, match="not configured"):
        authenticate_sns(message, beta_topics, now=NOW, max_age_s=3600)


def test_sns_message_without_signature_is_unauthenticated() -> None:
    """An envelope without Signature/SignatureVersion is unauthenticated (401)."""
    with pytest.raises(MissingCredentialsError):
        authenticate_sns(notification(), {}, now=NOW, max_age_s=3600)


# --- HTTP basic (Postmark) ----------------------------------------------------------------------

ACCOUNTS = {
    "acme-hooks": BasicAccount("acme", SecretStr("acme-password-0123456789")),
    "beta-hooks": BasicAccount("beta", SecretStr("beta-password-0123456789")),
}


def test_basic_auth_right_password_names_the_tenant() -> None:
    """The username picks the tenant and the password must match it."""
    header = basic("beta-hooks", "beta-password-0123456789")
    assert authenticate_basic(header, ACCOUNTS) == "beta"


@pytest.mark.parametrize(
    ("username", "password"),
    [("acme-hooks", "beta-password-0123456789"), ("nobody", "acme-password-0123456789")],
)
def test_basic_auth_wrong_password_or_user_is_refused(username: str, password: str) -> None:
    """Another tenant's password, or an unknown user, is forbidden (403)."""
    with pytest.raises(RejectedCredentialsError):
        authenticate_basic(basic(username, password), ACCOUNTS)


@pytest.mark.parametrize(
    "header", [None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"x").decode()]
)
def test_basic_auth_missing_or_malformed_header_is_unauthenticated(header: str | None) -> None:
    """No usable `Authorization: Basic user:password` header means 401."""
    with pytest.raises(MissingCredentialsError):
        authenticate_basic(header, ACCOUNTS)


# --- the credentials file -----------------------------------------------------------------------


def credentials_yaml(sg: ec.EllipticCurvePrivateKey, cert_path: str = "sns.pem") -> str:
    """A credentials file with two tenants, secrets as env references, a relative cert path."""
    return f"""
tenants:
  acme:
    attribution: {{fallback_campaign_id: unattributed}}
    sendgrid: {{public_key: "{public_b64(sg)}"}}
    mailgun: {{signing_key: "env:ACME_MAILGUN_KEY"}}
    postmark: {{username: acme-hooks, password: "env:ACME_POSTMARK_PASSWORD"}}
    ses:
      topics: [{{topic_arn: "{ARN}", signing_cert_files: ["{cert_path}"]}}]
  beta:
    postmark: {{username: beta-hooks, password: "beta-password-0123456789"}}
"""


ENV = {"ACME_MAILGUN_KEY": "key-acme", "ACME_POSTMARK_PASSWORD": "acme-password-0123456789"}


def test_credentials_file_resolves_env_references_and_relative_certs(
    tmp_path: Path, sg_keys: tuple[Any, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    """env: secrets resolve, the cert loads from beside the file, lookups honour the URL tenant."""
    (tmp_path / "sns.pem").write_bytes(self_signed(rsa_key))
    creds = parse_credentials(credentials_yaml(sg_keys[0]), base_dir=tmp_path, environ=ENV)
    assert creds.mailgun_keys(None) == {"acme": b"key-acme"}
    assert set(creds.basic_accounts(Provider.POSTMARK, None)) == {"acme-hooks", "beta-hooks"}
    assert set(creds.basic_accounts(Provider.POSTMARK, "beta")) == {"beta-hooks"}
    assert creds.sendgrid_keys("beta") == {}
    assert creds.sns_topics("acme")[ARN].tenant_id == "acme"
    assert creds.attribution("acme").fallback_campaign_id == "unattributed"
    assert "acme-password" not in repr(creds.file)


@pytest.mark.parametrize(
    ("environ", "cert", "match"),
    [
        ({}, "sns.pem", "ACME_MAILGUN_KEY"),
        (ENV, "missing.pem", "missing.pem"),
    ],
)
def test_credentials_file_errors_name_the_problem(
    *,
    tmp_path: Path,
    sg_keys: tuple[Any, Any],
    rsa_key: rsa.RSAPrivateKey,
    environ: dict[str, str],
    cert: str,
    match: str,
) -> None:
    """An unset env reference or an unreadable certificate stops loading, naming it."""
    (tmp_path / "sns.pem").write_bytes(self_signed(rsa_key))
    with pytest.raises(ConfigurationError, match=match):
        parse_credentials(credentials_yaml(sg_keys[0], cert), base_dir=tmp_path, environ=environ)


def test_credentials_file_refuses_a_username_shared_by_two_tenants(tmp_path: Path) -> None:
    """Two tenants with one Postmark username would make the tenant ambiguous: refused."""
    text = """
tenants:
  acme: {postmark: {username: hooks, password: "acme-password-0123456789"}}
  beta: {postmark: {username: hooks, password: "beta-password-0123456789"}}
"""
    with pytest.raises(ConfigurationError, match="several tenants"):
        parse_credentials(text, base_dir=tmp_path, environ={})


# --- replay protection at the HTTP edge, with in-memory fakes -----------------------------------


class FakeRedis:
    """The two commands the receiver uses, in memory."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    async def set(self, key: str, value: bytes, *, nx: bool, ex: int) -> bool | None:
        """SET key value NX EX."""
        assert nx
        assert ex > 0
        if key in self.values:
            return None
        self.values[key] = value
        return True

    async def delete(self, key: str) -> int:
        """DEL key."""
        return 1 if self.values.pop(key, None) is not None else 0


class FakeProducer:
    """Acknowledges every record at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to flush."""

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> asyncio.Future[None]:
        """Record and acknowledge."""
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_a_replayed_mailgun_token_is_refused(
    tmp_path: Path, sg_keys: tuple[Any, Any], rsa_key: rsa.RSAPrivateKey
) -> None:
    """The same signed Mailgun post is accepted once and refused with 403 the second time."""
    (tmp_path / "sns.pem").write_bytes(self_signed(rsa_key))
    creds = parse_credentials(credentials_yaml(sg_keys[0]), base_dir=tmp_path, environ=ENV)
    producer, redis = FakeProducer(), FakeRedis()
    app = create_webhook_app(Settings(topic_prefix="unit."), creds, producer, cast("Redis", redis))
    event = {"event": "delivered", "recipient": "a@example.com", "id": "e1", "timestamp": NOW}
    signature = mailgun_block(b"key-acme", str(int(time.time())))
    body = json.dumps({"signature": signature, "event-data": event})
    async with TestClient(TestServer(app)) as client:
        first = await client.post("/webhooks/mailgun", data=body)
        second = await client.post("/webhooks/mailgun/acme", data=body)
        assert (first.status, second.status) == (200, 403), await first.text()
        assert "already used" in (await second.json())["reason"]
    assert [topic for topic, _, _ in producer.sent] == ["unit.delivery-events", "unit.webhooks-raw"]
    assert list(redis.values) == [f"sg:webhook-token:mailgun:{signature['token']}"]
