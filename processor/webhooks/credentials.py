"""The webhook credentials file: each tenant's provider keys and secrets, checked once at load.

YAML; secrets may be `env:VAR_NAME` references. Key material is parsed at load, so a bad key or
an unreadable certificate stops start-up instead of failing requests.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from processor.adapters.providers import AttributionConfig, Provider
from processor.config.secret_files import (
    Secret,
    environment,
    load_yaml,
    validation_problems,
)
from processor.errors import ConfigurationError
from processor.webhooks.auth import (
    BasicAccount,
    SnsTopicKeys,
    load_sendgrid_public_key,
    load_sns_certificate,
)
from schemas.base import Identifier

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SendgridCredentials(_Section):
    """SendGrid's signed event webhook."""

    public_key: Secret = Field(
        description="Verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."
    )

    @field_validator("public_key")
    @classmethod
    def _is_p256_key(cls, value: SecretStr) -> SecretStr:
        load_sendgrid_public_key(value.get_secret_value())  # ValueError names the problem
        return value


class MailgunCredentials(_Section):
    """Mailgun's HTTP webhook signing key."""

    signing_key: Secret = Field(description="The domain's or account's webhook signing key.")

    @field_validator("signing_key")
    @classmethod
    def _not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value


class BasicAuthCredentials(_Section):
    """HTTP basic auth in the webhook URL the provider posts to (Postmark, SparkPost)."""

    username: str = Field(min_length=1, max_length=200, pattern=r"^[^:\s]+$")
    password: Secret

    @field_validator("password")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:  # noqa: PLR2004  # the minimum is stated in the message
            raise ValueError("must be at least 16 characters (it is the only credential)")
        return value


class SnsTopicCredentials(_Section):
    """One SNS topic that delivers a tenant's SES events, and its signing certificates."""

    topic_arn: str = Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
    signing_cert_files: tuple[Path, ...] = Field(
        min_length=1,
        description="PEM certificates SNS signs with (several during a rotation); relative "
        "paths are relative to the credentials file. SigningCertURL is never fetched.",
    )


class SesCredentials(_Section):
    """SES notifications delivered over HTTP(S) by SNS."""

    topics: tuple[SnsTopicCredentials, ...] = Field(min_length=1)


class TenantCredentials(_Section):
    """One tenant's webhook credentials per provider, and how its events name campaigns."""

    attribution: AttributionConfig = AttributionConfig()
    sendgrid: SendgridCredentials | None = None
    mailgun: MailgunCredentials | None = None
    postmark: BasicAuthCredentials | None = None
    sparkpost: BasicAuthCredentials | None = None
    ses: SesCredentials | None = None
    kumomta: BasicAuthCredentials | None = None


def _duplicates(values: Iterable[str]) -> list[str]:
    return sorted(value for value, count in Counter(values).items() if count > 1)


class CredentialsFile(_Section):
    """The whole credentials file: `tenants: {tenant_id: TenantCredentials}`."""

    tenants: dict[Identifier, TenantCredentials] = Field(min_length=1)

    @model_validator(mode="after")
    def _unambiguous(self) -> Self:
        """A credential must identify one tenant, or a request could land on the wrong one."""
        tenants = self.tenants.values()
        for provider in _BASIC_PROVIDERS:
            usernames = [a.username for t in tenants if (a := _basic(t, provider)) is not None]
            if dup := _duplicates(usernames):
                raise ValueError(f"{provider.value} usernames used by several tenants: {dup}")
        arns = [topic.topic_arn for t in tenants if t.ses for topic in t.ses.topics]
        if dup := _duplicates(arns):
            raise ValueError(f"SNS topics configured for several tenants (or twice): {dup}")
        secrets = {
            "sendgrid public key": [t.sendgrid.public_key for t in tenants if t.sendgrid],
            "mailgun signing key": [t.mailgun.signing_key for t in tenants if t.mailgun],
        }
        for what, values in secrets.items():
            if _duplicates(v.get_secret_value().strip() for v in values):
                raise ValueError(f"the same {what} is configured for several tenants")
        return self


_BASIC_PROVIDERS: Final = (Provider.POSTMARK, Provider.SPARKPOST, Provider.KUMOMTA)
"""Providers that post with HTTP basic auth (KumoMTA: its log hook's HTTP client)."""


def _basic(tenant: TenantCredentials, provider: Provider) -> BasicAuthCredentials | None:
    match provider:
        case Provider.POSTMARK:
            return tenant.postmark
        case Provider.SPARKPOST:
            return tenant.sparkpost
        case Provider.KUMOMTA:
            return tenant.kumomta
        case _:
            return None


def _only(mapping: Mapping[str, Any], tenant_id: str | None) -> dict[str, Any]:
    if tenant_id is None:
        return dict(mapping)
    return {tenant_id: mapping[tenant_id]} if tenant_id in mapping else {}


class Credentials:
    """Loaded credentials: for each provider, the candidates one request may verify against.

    Every lookup takes the tenant of the URL, if the request named one: then only that tenant's
    credential is a candidate, so tenant A's valid signature never passes on tenant B's URL.
    """

    def __init__(
        self, file: CredentialsFile, sns_keys: Mapping[str, tuple[RSAPublicKey, ...]]
    ) -> None:
        self.file = file
        tenants = file.tenants
        self._sendgrid: dict[str, EllipticCurvePublicKey] = {
            tid: load_sendgrid_public_key(t.sendgrid.public_key.get_secret_value())
            for tid, t in tenants.items()
            if t.sendgrid
        }
        self._mailgun = {
            tid: t.mailgun.signing_key.get_secret_value().strip().encode()
            for tid, t in tenants.items()
            if t.mailgun
        }
        self._basic: dict[Provider, dict[str, tuple[str, BasicAccount]]] = {}
        for provider in _BASIC_PROVIDERS:
            self._basic[provider] = {
                tid: (account.username, BasicAccount(tid, account.password))
                for tid, t in tenants.items()
                if (account := _basic(t, provider)) is not None
            }
        self._sns = {
            tid: {
                topic.topic_arn: SnsTopicKeys(tid, sns_keys[topic.topic_arn])
                for topic in t.ses.topics
            }
            for tid, t in tenants.items()
            if t.ses
        }

    @property
    def tenant_ids(self) -> list[str]:
        """Every configured tenant."""
        return sorted(self.file.tenants)

    def attribution(self, tenant_id: str) -> AttributionConfig:
        """How a tenant's events name their campaign and contact."""
        return self.file.tenants[tenant_id].attribution

    def sendgrid_keys(self, tenant_id: str | None) -> dict[str, EllipticCurvePublicKey]:
        """Candidate SendGrid verification keys by tenant."""
        return _only(self._sendgrid, tenant_id)

    def mailgun_keys(self, tenant_id: str | None) -> dict[str, bytes]:
        """Candidate Mailgun signing keys by tenant."""
        return _only(self._mailgun, tenant_id)

    def basic_accounts(self, provider: Provider, tenant_id: str | None) -> dict[str, BasicAccount]:
        """Candidate basic-auth accounts of a provider, by username."""
        return dict(_only(self._basic.get(provider, {}), tenant_id).values())

    def sns_topics(self, tenant_id: str | None) -> dict[str, SnsTopicKeys]:
        """Candidate SNS topics by TopicArn."""
        topics: dict[str, SnsTopicKeys] = {}
        for per_tenant in _only(self._sns, tenant_id).values():
            topics.update(per_tenant)
        return topics


def parse_credentials(text: str, *, base_dir: Path, environ: Mapping[str, str]) -> Credentials:
    """Credentials from YAML text; `base_dir` anchors relative certificate paths.

    Raises:
        ConfigurationError: the YAML, a field, a key, a reference or a certificate is invalid.
    """
    data = load_yaml(text)
    try:
        file = CredentialsFile.model_validate(data, context=environment(environ))
    except ValidationError as exc:
        raise ConfigurationError(validation_problems(exc)) from exc
    sns_keys: dict[str, tuple[RSAPublicKey, ...]] = {}
    for tenant_id, tenant in file.tenants.items():
        for topic in tenant.ses.topics if tenant.ses else ():
            keys = []
            for name in topic.signing_cert_files:
                path = name if name.is_absolute() else base_dir / name
                where = f"tenants.{tenant_id}.ses.topics[{topic.topic_arn}]: {path}"
                try:
                    keys.append(load_sns_certificate(path.read_bytes()))
                except (OSError, ValueError) as exc:
                    raise ConfigurationError(f"{where}: {exc}") from exc
            sns_keys[topic.topic_arn] = tuple(keys)
    return Credentials(file, sns_keys)


def load_credentials(path: Path, environ: Mapping[str, str]) -> Credentials:
    """Read and check the credentials file (`SENDGUARD_WEBHOOK_CREDENTIALS_FILE`).

    Raises:
        ConfigurationError: the file is unreadable or invalid; the message names the problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"webhook credentials file {path}: {exc}") from exc
    try:
        return parse_credentials(text, base_dir=path.resolve().parent, environ=environ)
    except ConfigurationError as exc:
        raise ConfigurationError(f"webhook credentials file {path}: {exc}") from exc
