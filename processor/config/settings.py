"""All runtime configuration, read once from `SENDGUARD_*` environment variables or `.env`."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from processor.config.edge_settings import BridgeSettings, MailSettings, PositiveInt
from processor.domain.recipients import FilterRules
from schemas.topics import TopicRole


class KafkaSecurityProtocol(StrEnum):
    """How the worker talks to the brokers."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    """SASL mechanisms supported with the aiokafka driver."""

    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


ALL_TENANTS = "*"
"""The `resume_rules` key whose rules apply to every tenant (under per-tenant overrides)."""


class WorkerRole(StrEnum):
    """A part of the worker; each reads its topics in a consumer group of its own."""

    DETECT = "detect"
    """From the delivery events: windows, pause commands, health, and the contact merge."""
    RESUME = "resume"
    """Planned audiences, contact updates and resume requests."""


class ResumeRules(BaseModel):
    """Overrides of `FilterRules` fields; a field left out keeps the value beneath it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    require_explicit_consent: bool | None = None
    stale_after: timedelta | None = Field(default=None, description="e.g. 'P90D' or seconds.")
    unengaged_never_engaged_sends: int | None = Field(default=None, ge=1)
    unengaged_engaged_before_sends: int | None = Field(default=None, ge=1)

    def over(self, rules: FilterRules) -> FilterRules:
        """`rules` with these overrides applied."""
        return replace(rules, **self.model_dump(exclude_none=True))


class Settings(MailSettings, BridgeSettings, BaseSettings):
    """sendguard's settings. Every field is `SENDGUARD_<FIELD>` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="SENDGUARD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:9092", description="Comma-separated host:port list."
    )
    kafka_security_protocol: KafkaSecurityProtocol = KafkaSecurityProtocol.PLAINTEXT
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_ssl_key_password: SecretStr | None = None
    kafka_session_timeout_s: PositiveInt = Field(
        default=10, description="Consumer session timeout; kept modest so restarts are quick."
    )
    kafka_group_instance_id: str | None = Field(
        default=None, description="Static membership id of this worker (stable across restarts)."
    )

    # Redis
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="redis:// or rediss:// URL; may carry the password.",
    )
    redis_password: SecretStr | None = Field(
        default=None, description="Password, if not given in the URL."
    )
    redis_key_prefix: str = Field(default="sg", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")

    # Topics
    app_id: str = Field(default="sendguard", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    topic_prefix: str = Field(default="sendguard.", pattern=r"^[A-Za-z0-9_.-]*$")
    topic_partitions: PositiveInt = 8
    topic_replication_factor: PositiveInt = 1
    topic_names: dict[TopicRole, str] = Field(
        default_factory=dict,
        description='Per-role overrides of full topic names, e.g. {"control": "ops.control"}.',
    )
    audit_topic_retention_s: float = Field(
        default=7 * 86400,
        gt=0,
        description="Retention of webhooks-raw and dead-letter when sendguard creates them: "
        "they hold recipient addresses.",
    )

    # Webhook receiver (`sendguard webhooks`)
    webhook_credentials_file: Path | None = Field(
        default=None, description="YAML of each tenant's webhook credentials (docs/WEBHOOKS.md)."
    )
    webhook_max_body_bytes: PositiveInt = Field(
        default=1024 * 1024, description="Larger request bodies are refused with 413."
    )
    webhook_max_age_s: float = Field(
        default=300, gt=0, description="Freshness window of SendGrid and Mailgun signed timestamps."
    )
    webhook_sns_max_age_s: float = Field(
        default=3600, gt=0, description="Freshness window of SNS message timestamps (SNS retries)."
    )
    webhook_publish_timeout_s: float = Field(
        default=15, gt=0, description="Longest wait for Kafka to acknowledge a batch (then 503)."
    )
    webhook_body_timeout_s: float = Field(
        default=10, gt=0, description="Longest time a request body may take to arrive (then 408)."
    )
    webhook_max_records: PositiveInt = Field(
        default=10_000,
        description="Most records one webhook batch may hold (then 413): bounds a request's work.",
    )

    # Operator keys (docs/SECURITY.md)
    operator_keys_file: Path | None = Field(
        default=None,
        description="YAML of the operator keys the worker verifies privileged requests with; "
        "unset: every privileged resume, lock and unlock is refused.",
    )
    operator_max_age_s: float = Field(
        default=300, gt=0, description="Freshness window of an operator request's signature."
    )
    operator_key_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="The CLI's operator key id (with SENDGUARD_OPERATOR_KEY).",
    )
    operator_key: SecretStr | None = Field(
        default=None, description="The CLI's operator key secret, to sign privileged requests."
    )

    # Operations
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus /metrics endpoint of each process; 0: off.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the /metrics endpoint listens on."
    )
    dashboard_user: str | None = Field(
        default=None, description="Basic-auth user of the status page (with the password)."
    )
    dashboard_password: SecretStr | None = Field(
        default=None, description="Basic-auth password of the status page."
    )

    # Behaviour
    policy_file: Path | None = Field(default=None, description="YAML policy; built-in if unset.")
    batch_max_events: PositiveInt = 2000
    batch_max_wait_ms: PositiveInt = 50
    health_min_interval_s: float = Field(
        default=5.0, ge=0, description="Least time between two unprompted health snapshots."
    )
    state_cache_campaigns: int = Field(
        default=10_000,
        ge=0,
        description="Campaign states kept decoded between batches (about 5 KB each; 0: none).",
    )
    state_write_behind_ms: int = Field(
        default=200,
        ge=0,
        description=(
            "Longest time a campaign that decided nothing is held in memory before its state is"
            " written (0: written every batch); offsets are committed only after the write."
            " A decision is always written at once."
        ),
    )
    outbox_recovery_after_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "A decision still unpublished this long after it was stored is taken as left by a"
            " crash and published by the recovery sweep; younger ones are being published by"
            " the worker that decided them."
        ),
    )
    max_future_skew_s: float = Field(
        default=900, ge=0, description="Events stamped further ahead of Kafka time are rejected."
    )
    state_margin_s: float = Field(
        default=6 * 3600, ge=0, description="Kept past the longest window before state expires."
    )
    paused_state_ttl_s: float = Field(
        default=30 * 86400,
        gt=0,
        description="How long a paused campaign's state waits for a resume.",
    )
    data_dir: Path = Field(
        default=Path(".sendguard-data"), description="Where Faust keeps its local table data."
    )
    resume_chunk_size: PositiveInt = Field(
        default=1000, le=10_000, description="Recipients per published recipient-set chunk."
    )
    contact_shards: PositiveInt = Field(
        default=4096, le=1_000_000, description="Redis hashes per tenant's contacts; never change."
    )
    resume_rules: dict[str, ResumeRules] = Field(
        default_factory=dict,
        description='Resume filter rules: "*" for every tenant, then per-tenant overrides, e.g. '
        '{"*": {"stale_after": "P90D"}, "acme": {"require_explicit_consent": true}}.',
    )
    worker_roles: Annotated[frozenset[WorkerRole], NoDecode] = Field(
        default=frozenset(WorkerRole),
        min_length=1,
        description="What `sendguard worker` runs, comma-separated: detect, resume (both by "
        "default). Resume in a process of its own keeps a large audience's filtering from "
        "delaying pauses.",
    )
    resume_contacts_wait_s: float = Field(
        default=30,
        ge=0,
        description="How long a resume request waits for detection to merge every delivery "
        "event produced before it into contact state; then it is refused as contacts_behind.",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    library_log_level: str | None = Field(
        default=None,
        pattern=r"^(DEBUG|INFO|WARNING|ERROR)$",
        description="Level of third-party loggers (Faust, aiokafka, aiohttp); unset: "
        "SENDGUARD_LOG_LEVEL but never below INFO. DEBUG logs message values: addresses.",
    )

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"must start with redis://, rediss:// or unix://, not {scheme!r}://")
        return value

    @field_validator("worker_roles", mode="before")
    @classmethod
    def _roles_may_be_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            # A list, so that an error names the item in the order it was written.
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("resume_rules")
    @classmethod
    def _resume_rules_are_valid(cls, value: dict[str, ResumeRules]) -> dict[str, ResumeRules]:
        base = value.get(ALL_TENANTS, ResumeRules()).over(FilterRules())
        for overrides in value.values():
            overrides.over(base)  # FilterRules refuses what it cannot use, naming the field
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap_servers_have_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port, got {server.strip()!r}")
        return value

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> Self:
        uses_sasl = self.kafka_security_protocol in {
            KafkaSecurityProtocol.SASL_PLAINTEXT,
            KafkaSecurityProtocol.SASL_SSL,
        }
        if uses_sasl and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                "SENDGUARD_KAFKA_SECURITY_PROTOCOL uses SASL: set SENDGUARD_KAFKA_SASL_MECHANISM, "
                "SENDGUARD_KAFKA_SASL_USERNAME and SENDGUARD_KAFKA_SASL_PASSWORD"
            )
        return self

    @model_validator(mode="after")
    def _dashboard_auth_is_complete(self) -> Self:
        if (self.dashboard_user is None) != (self.dashboard_password is None):
            raise ValueError(
                "set both SENDGUARD_DASHBOARD_USER and SENDGUARD_DASHBOARD_PASSWORD, or neither"
            )
        return self

    @property
    def webhook_raw_record_max_bytes(self) -> int:
        """Largest raw webhook record: the biggest body in base64, plus headers and envelope."""
        return 4 * -(-self.webhook_max_body_bytes // 3) + 64 * 1024

    def topic(self, role: TopicRole) -> str:
        """The full name of a topic."""
        return self.topic_names.get(role, f"{self.topic_prefix}{role.value}")

    def filter_rules(self, tenant_id: str) -> FilterRules:
        """A tenant's resume filter rules: defaults, then "*", then the tenant's overrides."""
        rules = self.resume_rules.get(ALL_TENANTS, ResumeRules()).over(FilterRules())
        overrides = self.resume_rules.get(tenant_id)
        return rules if overrides is None else overrides.over(rules)
