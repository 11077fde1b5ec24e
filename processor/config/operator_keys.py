"""The operator keys file and the check of a signed operator request against it.

YAML (`SENDGUARD_OPERATOR_KEYS_FILE`): global keys and per-tenant keys, each an id and a secret
(inline or `env:VAR_NAME`). Listing two keys is a rotation: both verify until one is removed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from processor.config.secret_files import Secret, environment, load_yaml, validation_problems
from processor.domain.operator_signature import sign, signature_matches
from processor.errors import ConfigurationError
from schemas.base import Identifier
from schemas.resume import OperatorAction, OperatorSignature

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pydantic import SecretStr

    from schemas.resume import ResumeRequest

MIN_SECRET_CHARS: Final = 32
"""An operator key guards every tenant's pauses: at least 32 characters (e.g. 32 random bytes
as 64 hex digits, or `openssl rand -base64 32`)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperatorKey(_Section):
    """One key: its id (sent with each signature) and its secret."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    secret: Secret

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().strip()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value


class OperatorKeysFile(_Section):
    """The whole file: `global: [keys]` valid for every tenant, `tenants: {tenant: [keys]}`."""

    global_keys: tuple[OperatorKey, ...] = Field(default=(), alias="global")
    tenants: dict[Identifier, tuple[OperatorKey, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unambiguous(self) -> Self:
        """Each key id names one key, each secret is one key's: a signature names its signer."""
        keys = [*self.global_keys, *(k for keys in self.tenants.values() for k in keys)]
        if not keys:
            raise ValueError("no operator key: list at least one under `global` or `tenants`")
        ids = Counter(key.id for key in keys)
        if duplicated := sorted(key_id for key_id, n in ids.items() if n > 1):
            raise ValueError(f"key ids used more than once: {duplicated}")
        secrets = Counter(key.secret.get_secret_value().strip() for key in keys)
        if any(n > 1 for n in secrets.values()):
            raise ValueError("the same secret is listed under several key ids")
        return self


@dataclass(frozen=True, slots=True)
class _Key:
    secret: bytes
    tenant_id: str | None
    """The tenant it may sign for; None: every tenant (a global key)."""


class OperatorKeys:
    """Loaded operator keys: verifies the signature of privileged requests."""

    def __init__(self, file: OperatorKeysFile | None) -> None:
        self._keys: dict[str, _Key] = {}
        if file is None:
            return
        for key in file.global_keys:
            self._keys[key.id] = _Key(key.secret.get_secret_value().strip().encode(), None)
        for tenant_id, keys in file.tenants.items():
            for key in keys:
                self._keys[key.id] = _Key(key.secret.get_secret_value().strip().encode(), tenant_id)

    @classmethod
    def none(cls) -> OperatorKeys:
        """No key at all: every privileged request is refused."""
        return cls(None)

    def refusal(self, request: ResumeRequest, now: datetime, max_age_s: float) -> str | None:
        """Why the request's signature does not authorize it, or None if it does.

        It must name a key of the request's tenant (or a global one), verify over the canonical
        request, and have been made within `max_age_s` of `now` (either way: clocks drift).
        """
        signature = request.signature
        if signature is None:
            return "the request is not signed with an operator key"
        if not self._keys:
            return "the worker has no operator keys (SENDGUARD_OPERATOR_KEYS_FILE)"
        key = self._keys.get(signature.key_id)
        if key is None or key.tenant_id not in {None, request.tenant_id}:
            return f"key {signature.key_id!r} is not an operator key of tenant {request.tenant_id}"
        if not signature_matches(key.secret, request, signature.hmac_sha256):
            return f"the signature with key {signature.key_id!r} does not verify"
        age = now - request.requested_at
        if abs(age) > timedelta(seconds=max_age_s):
            return (
                f"signed at {request.requested_at.isoformat()}, {abs(age.total_seconds()):.0f} s "
                f"from the worker's clock: outside the {max_age_s:g} s freshness window"
            )
        return None


def needs_signature(request: ResumeRequest) -> bool:
    """A lock, an unlock, a privileged resume, or any request that carries a signature."""
    return (
        request.action is not OperatorAction.RESUME
        or request.privileged
        or request.signature is not None
    )


def signed(request: ResumeRequest, key_id: str, secret: str) -> ResumeRequest:
    """`request` with its signature by the key `key_id` of secret `secret`."""
    unsigned = request.model_copy(update={"signature": None})
    mac = sign(secret.strip().encode(), unsigned)
    return unsigned.model_copy(
        update={"signature": OperatorSignature(key_id=key_id, hmac_sha256=mac)}
    )


def parse_operator_keys(text: str, *, environ: Mapping[str, str]) -> OperatorKeys:
    """Operator keys from YAML text.

    Raises:
        ConfigurationError: the YAML, a field or a reference is invalid (never echoing a secret).
    """
    data = load_yaml(text)
    try:
        file = OperatorKeysFile.model_validate(data, context=environment(environ))
    except ValidationError as exc:
        raise ConfigurationError(validation_problems(exc)) from None
    return OperatorKeys(file)


def load_operator_keys(path: Path, environ: Mapping[str, str]) -> OperatorKeys:
    """Read and check the operator keys file (`SENDGUARD_OPERATOR_KEYS_FILE`).

    Raises:
        ConfigurationError: the file is unreadable or invalid; the message names the problem.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"operator keys file {path}: {exc}") from exc
    try:
        return parse_operator_keys(text, environ=environ)
    except ConfigurationError as exc:
        raise ConfigurationError(f"operator keys file {path}: {exc}") from None
