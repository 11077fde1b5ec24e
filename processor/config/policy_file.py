"""The YAML policy file: defaults plus per-tenant and per-campaign overrides, validated on load.

Reloaded on SIGHUP by `PolicyHolder`; a file that fails validation is reported and the policy in
force stays as it was.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from processor.domain.policy import (
    DEFAULT_RULES,
    DEFAULT_SEQUENTIAL,
    DEFAULT_WINDOWS,
    FEEDBACK_LAG_MS,
    Escalation,
    Policy,
    PolicyBook,
    Rule,
    SequentialRule,
)
from processor.domain.windows import WindowSpec
from processor.errors import ConfigurationError
from schemas.control import Metric

if TYPE_CHECKING:
    from pathlib import Path

log = logging.getLogger(__name__)

_DURATION = re.compile(r"^(\d+)\s*(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str | int) -> int:
    """'90s', '15m', '1h', '7d' (or a number of seconds) in milliseconds."""
    if isinstance(text, int):
        return text * 1000
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like '90s', '15m', '1h' or '7d'")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


Duration = Annotated[int, Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _WindowEntry(_Strict):
    name: str = Field(min_length=1)
    length_ms: Duration = Field(alias="length")
    buckets: int = Field(default=60, ge=1, le=1440)
    history_ms: int = Field(default=0, ge=0, alias="history")

    @field_validator("length_ms", "history_ms", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration_ms(value)


class _RuleEntry(_Strict):
    metric: Metric
    window: str
    warn: float | None = Field(default=None, ge=0, le=1)
    pause: float | None = Field(default=None, ge=0, le=1)
    min_denominator: int | None = Field(default=None, ge=1)
    min_numerator: int | None = Field(default=None, ge=1)
    denominator_lag_ms: int | None = Field(default=None, ge=0, alias="denominator_lag")

    @field_validator("denominator_lag_ms", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> int | None:
        return None if value is None else parse_duration_ms(value)


class _SequentialEntry(_Strict):
    enabled: bool = True
    p0: float | None = Field(default=None, gt=0, lt=1)
    p1: float | None = Field(default=None, gt=0, lt=1)
    h: float | None = Field(default=None, gt=0)
    warn_h: float | None = Field(default=None, gt=0)
    min_denominator: int | None = Field(default=None, ge=1)
    min_numerator: int | None = Field(default=None, ge=1)
    lag_ms: int | None = Field(default=None, gt=0, alias="lag")

    @field_validator("lag_ms", mode="before")
    @classmethod
    def _lag(cls, value: Any) -> int | None:
        return None if value is None else parse_duration_ms(value)


class _EscalationEntry(_Strict):
    campaign_pauses: int = Field(default=3, ge=1)
    within_ms: Duration = Field(default=86_400_000, alias="within")

    @field_validator("within_ms", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> int:
        return parse_duration_ms(value)


class _PolicyEntry(_Strict):
    confidence: float | None = Field(default=None, ge=0.5, lt=1)
    escalation: _EscalationEntry | None = None
    rules: list[_RuleEntry] = Field(default_factory=list)
    sequential: dict[Metric, _SequentialEntry] = Field(default_factory=dict)


class _PolicyFile(_PolicyEntry):
    version: int = Field(default=1, ge=1, le=1)
    windows: list[_WindowEntry] | None = None
    tenants: dict[str, _PolicyEntry] = Field(default_factory=dict)
    campaigns: dict[str, _PolicyEntry] = Field(
        default_factory=dict, description="Keyed 'tenant:campaign'."
    )


def _apply(base: Policy, entry: _PolicyEntry, where: str) -> Policy:
    rules = {(r.metric, r.window): r for r in base.rules}
    for override in entry.rules:
        key = (override.metric, override.window)
        fields = override.model_dump(exclude={"metric", "window"}, exclude_none=True)
        if (
            "denominator_lag_ms" not in fields
            and key not in rules
            and override.window != "lifetime"
        ):
            fields["denominator_lag_ms"] = FEEDBACK_LAG_MS[override.metric]
        if key in rules:
            rules[key] = replace(rules[key], **fields)
        else:
            missing = {"warn", "pause", "min_denominator", "min_numerator"} - fields.keys()
            if missing:
                raise ConfigurationError(
                    f"{where}: new rule {override.metric}/{override.window} needs "
                    f"{', '.join(sorted(missing))}"
                )
            rules[key] = Rule(override.metric, override.window, **fields)
    escalation = base.escalation
    if entry.escalation is not None:
        escalation = Escalation(entry.escalation.campaign_pauses, entry.escalation.within_ms)
    confidence = entry.confidence if entry.confidence is not None else base.confidence
    sequential = _apply_sequential(base, entry, where)
    return Policy(tuple(rules.values()), confidence, escalation, sequential)


_SEQUENTIAL_REQUIRED = {"p0", "p1", "h", "warn_h", "min_denominator", "min_numerator", "lag_ms"}


def _apply_sequential(base: Policy, entry: _PolicyEntry, where: str) -> tuple[SequentialRule, ...]:
    """The base's sequential rules with the entry's overrides (enabled: false drops one)."""
    rules = {rule.metric: rule for rule in base.sequential}
    for metric, override in entry.sequential.items():
        if not override.enabled:
            rules.pop(metric, None)
            continue
        fields = override.model_dump(exclude={"enabled"}, exclude_none=True)
        if metric in rules:
            rules[metric] = replace(rules[metric], **fields)
            continue
        missing = _SEQUENTIAL_REQUIRED - fields.keys()
        if missing:
            raise ConfigurationError(
                f"{where}: new sequential rule {metric} needs {', '.join(sorted(missing))}"
            )
        rules[metric] = SequentialRule(metric, **fields)
    return tuple(rules[metric] for metric in Metric if metric in rules)


def load_policy_text(text: str, *, source: str = "policy") -> PolicyBook:
    """Parse and validate a policy document; errors name the file and the offending field."""
    try:
        raw = yaml.safe_load(text) or {}
        parsed = _PolicyFile.model_validate(raw)
        windows = DEFAULT_WINDOWS
        if parsed.windows is not None:
            windows = tuple(
                WindowSpec(w.name, w.length_ms, w.buckets, w.history_ms) for w in parsed.windows
            )
        default = _apply(Policy(DEFAULT_RULES, sequential=DEFAULT_SEQUENTIAL), parsed, source)
        tenants = {
            t: _apply(default, e, f"{source}: tenants.{t}") for t, e in parsed.tenants.items()
        }
        campaigns = {}
        for key, entry in parsed.campaigns.items():
            tenant_id, sep, campaign_id = key.partition(":")
            if not sep or not tenant_id or not campaign_id:
                raise ConfigurationError(
                    f"{source}: campaigns.{key}: key must be 'tenant:campaign'"
                )
            base = tenants.get(tenant_id, default)
            campaigns[tenant_id, campaign_id] = _apply(base, entry, f"{source}: campaigns.{key}")
        return PolicyBook(default=default, windows=windows, tenants=tenants, campaigns=campaigns)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{source}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigurationError(f"{source}: {problems}") from exc
    except ValueError as exc:
        if isinstance(exc, ConfigurationError):
            raise
        raise ConfigurationError(f"{source}: {exc}") from exc


def load_policy_file(path: Path | None) -> PolicyBook:
    """The policy book of a file, or the built-in defaults when no file is configured."""
    if path is None:
        return PolicyBook()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"SENDGUARD_POLICY_FILE: cannot read {path}: {exc}") from exc
    return load_policy_text(text, source=str(path))


class PolicyHolder:
    """The policy in force; `reload()` swaps it atomically, or keeps it if the file is bad."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._book = load_policy_file(path)

    def __call__(self) -> PolicyBook:
        """The current policy book."""
        return self._book

    def reload(self) -> bool:
        """Re-read the file; True if the new policy is now in force."""
        try:
            book = load_policy_file(self._path)
        except ConfigurationError as exc:
            log.warning(
                "policy reload rejected, keeping the policy in force", extra={"error": str(exc)}
            )
            return False
        self._book = book
        log.info("policy reloaded", extra={"policy_version": book.default.version})
        return True
