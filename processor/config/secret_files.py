"""What the YAML files holding secrets share: `env:` references and errors that show no secret.

The webhook credentials file and the operator keys file both use these.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Final

import yaml
from pydantic import BeforeValidator, SecretStr, ValidationError, ValidationInfo

from processor.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

ENV_PREFIX: Final = "env:"


def _from_environment(value: Any, info: ValidationInfo) -> Any:
    """Replace an `env:VAR_NAME` reference by that variable's value."""
    if not isinstance(value, str) or not value.startswith(ENV_PREFIX):
        return value
    name = value.removeprefix(ENV_PREFIX).strip()
    environ = (info.context or {}).get("environ")
    if environ is None:
        raise ValueError(f"{value!r} is an environment reference but no environment was given")
    resolved = environ.get(name)
    if not resolved:
        raise ValueError(f"environment variable {name} (referenced as {value!r}) is not set")
    return resolved


Secret = Annotated[SecretStr, BeforeValidator(_from_environment)]
"""A secret given inline or as `env:VAR_NAME`; never shown in reprs or errors."""

_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _location_part(part: str | int) -> str:
    # A misplaced secret can become a key (`{password hunter2}`): only plain names are shown.
    text = str(part)
    return text if _PLAIN_NAME.fullmatch(text) else "<a key that is not a plain name>"


def validation_problems(exc: ValidationError) -> str:
    """Each problem's place and message, without the input (it may be a secret)."""
    return "; ".join(
        f"{'.'.join(_location_part(part) for part in error['loc']) or 'file'}: {error['msg']}"
        for error in exc.errors(include_url=False, include_input=False)
    )


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what the syntax error is, never the offending line (it may hold a secret)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown place"
        what = "; ".join(text for text in (exc.context, exc.problem) if text)
        return f"{what or 'syntax error'} at {where}"
    position = getattr(exc, "position", None)  # a ReaderError: an unacceptable character
    return f"{type(exc).__name__} at character {position}" if position is not None else "invalid"


def load_yaml(text: str) -> Any:
    """Parsed YAML, or ConfigurationError naming the place of a syntax error (not the text)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"not valid YAML: {yaml_problem(exc)}") from None


def environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The validation context that resolves `env:` references from `environ`."""
    return {"environ": environ}
