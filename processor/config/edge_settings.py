"""The settings of sendguard's edges: returned mail, signed tokens, KumoMTA logs, bridges.

Mixed into `Settings` (processor/config/settings.py), which gives them their `SENDGUARD_`
prefix; kept apart so that each module stays readable.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode

from processor.domain.signed_tokens import MIN_KEY_BYTES as MIN_TOKEN_KEY_BYTES

PositiveInt = Annotated[int, Field(gt=0)]

BRIDGE_LONGEST_COMMAND_S = 240
"""A bridge handles one command per poll; aiokafka's max_poll_interval is 300 s."""


class MailSettings(BaseSettings):
    """Signed tokens, the bounce and feedback mail listener, KumoMTA logs from Kafka."""

    # Signed tokens (VERP return paths, one-click unsubscribe; docs/MAIL.md)
    token_key: SecretStr | None = Field(
        default=None,
        description="HMAC key (at least 16 bytes) that signs VERP and unsubscribe tokens.",
    )
    token_previous_key: SecretStr | None = Field(
        default=None,
        description="The key before the last rotation: its tokens are still accepted.",
    )
    unsubscribe_url_base: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Public base URL of the webhook receiver, for `sendguard unsubscribe-link`.",
    )
    unsubscribe_token_ttl_s: float = Field(
        default=90 * 86400, gt=0, description="How long a minted unsubscribe link is honoured."
    )

    # Bounce and feedback mail (`sendguard mail`)
    mail_bounce_domains: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Domains of VERP return paths, comma-separated (e.g. bounce.example.com).",
    )
    mail_verp_prefix: str = Field(
        default="b",
        min_length=1,
        max_length=16,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Local part before `+token` in VERP return paths.",
    )
    mail_plain_addresses: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Addresses accepted without a VERP token, comma-separated: the feedback-"
        "loop address, a plain return path. Their reports are attributed from inside.",
    )
    mail_tenant_headers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("X-Tenant-ID",),
        description="Headers of the returned original message naming the tenant (fallback "
        "when no VERP token says it; unsigned, see docs/MAIL.md).",
    )
    mail_campaign_headers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("X-Campaign-ID",),
        description="Headers of the returned original message naming the campaign.",
    )
    mail_contact_headers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("X-Contact-ID",),
        description="Headers of the returned original message naming the contact.",
    )
    mail_max_message_bytes: PositiveInt = Field(
        default=10 * 1024 * 1024, description="Larger messages are refused with 552."
    )
    mail_max_recipients: PositiveInt = Field(
        default=100, le=10_000, description="Recipients per message; more get 452."
    )
    mail_publish_timeout_s: float = Field(
        default=15, gt=0, description="Longest wait for Kafka to acknowledge a message (then 451)."
    )
    mail_idle_timeout_s: float = Field(
        default=60, gt=0, description="An SMTP session idle this long is closed (421)."
    )

    # KumoMTA logs from Kafka (`sendguard mta-logs`)
    kumomta_log_topics: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Kafka topics KumoMTA produces its log records to, comma-separated.",
    )
    kumomta_default_tenant: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Tenant of KumoMTA log records whose meta and queue name none.",
    )
    kumomta_fallback_campaign_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Campaign of KumoMTA log records that name none; unset: dead-lettered.",
    )

    @field_validator(
        "mail_bounce_domains",
        "mail_plain_addresses",
        "mail_tenant_headers",
        "mail_campaign_headers",
        "mail_contact_headers",
        "kumomta_log_topics",
        mode="before",
    )
    @classmethod
    def _lists_may_be_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("token_key", "token_previous_key")
    @classmethod
    def _token_keys_are_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < MIN_TOKEN_KEY_BYTES:
            raise ValueError(f"must have at least {MIN_TOKEN_KEY_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _previous_key_needs_a_current_one(self) -> Self:
        if self.token_previous_key is not None and self.token_key is None:
            raise ValueError(
                "SENDGUARD_TOKEN_PREVIOUS_KEY is set without SENDGUARD_TOKEN_KEY: tokens are "
                "signed with the current key, the previous one only verifies"
            )
        return self

    def token_keys(self) -> list[bytes]:
        """The token verification keys, current first; none when no key is configured."""
        return [
            key.get_secret_value().encode()
            for key in (self.token_key, self.token_previous_key)
            if key is not None
        ]


class BridgeSettings(BaseSettings):
    """`sendguard bridge kumomta|webhook` (docs/BRIDGES.md)."""

    # Bridges (`sendguard bridge kumomta|webhook`, docs/BRIDGES.md)
    bridge_kumomta_url: str | None = Field(
        default=None, description="kumod's HTTP listener, e.g. http://127.0.0.1:8000 (or --url)."
    )
    bridge_kumomta_token: SecretStr | None = Field(
        default=None, description="Bearer token for kumod's HTTP API (or username/password)."
    )
    bridge_kumomta_username: str | None = Field(
        default=None, description="Basic auth user for kumod's HTTP API."
    )
    bridge_kumomta_password: SecretStr | None = Field(
        default=None, description="Basic auth password for kumod's HTTP API."
    )
    bridge_suspension_expiry: timedelta = Field(
        default=timedelta(days=7),
        description="How long a suspension lasts if no resume lifts it (or --expiry); generous, "
        "as a pause must not lapse silently, yet bounded, so a lost resume cannot hold mail "
        "forever.",
    )
    bridge_webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key of the webhook bridge's signatures."
    )
    bridge_webhook_previous_secret: SecretStr | None = Field(
        default=None, description="During a rotation, the old key: each post is signed by both."
    )
    bridge_max_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts per command before it is dead-lettered."
    )
    bridge_backoff_initial_s: float = Field(
        default=0.5, gt=0, description="Wait after the first failed attempt; doubles each time."
    )
    bridge_backoff_max_s: float = Field(
        default=30, gt=0, description="Longest wait between two attempts."
    )
    bridge_request_timeout_s: float = Field(
        default=10, gt=0, le=120, description="Longest wait for one HTTP answer."
    )

    @field_validator("bridge_kumomta_url")
    @classmethod
    def _bridge_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"http", "https"}:
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("bridge_suspension_expiry")
    @classmethod
    def _expiry_is_positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError("must be at least one minute")
        return value

    @model_validator(mode="after")
    def _bridge_settings_agree(self) -> Self:
        if self.bridge_kumomta_token is not None and self.bridge_kumomta_username is not None:
            raise ValueError(
                "set SENDGUARD_BRIDGE_KUMOMTA_TOKEN or SENDGUARD_BRIDGE_KUMOMTA_USERNAME, not both"
            )
        if self.bridge_worst_case_s > BRIDGE_LONGEST_COMMAND_S:
            raise ValueError(
                f"a failing command would take {self.bridge_worst_case_s:.0f} s "
                f"(SENDGUARD_BRIDGE_MAX_ATTEMPTS x SENDGUARD_BRIDGE_REQUEST_TIMEOUT_S plus the "
                f"backoff): keep it under {BRIDGE_LONGEST_COMMAND_S} s, or Kafka takes the "
                "bridge's partitions away mid-command"
            )
        return self

    @property
    def bridge_worst_case_s(self) -> float:
        """How long one command can take when every attempt times out (requests and waits)."""
        waits: float = sum(
            min(self.bridge_backoff_max_s, self.bridge_backoff_initial_s * 2.0**n)
            for n in range(self.bridge_max_attempts - 1)
        )
        # A pause's attempt is two requests (list, then suspend); a resume's three or more.
        return self.bridge_max_attempts * 2 * self.bridge_request_timeout_s + waits
