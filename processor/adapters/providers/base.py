"""Shared result types and pure helpers of the provider adapters.

Results, field access naming the offending field, timestamp parsing and stable event ids.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal

from schemas.events import DeliveryEvent

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping


class Provider(StrEnum):
    """An email provider whose webhook payloads sendguard understands."""

    SES = "ses"
    SENDGRID = "sendgrid"
    MAILGUN = "mailgun"
    POSTMARK = "postmark"
    SPARKPOST = "sparkpost"
    KUMOMTA = "kumomta"


@dataclass(frozen=True, slots=True)
class Ignored:
    """Well-formed input that is not a reputation signal (e.g. a resubscribe or a test ping)."""

    index: int | None
    """Position in the posted batch; None when the payload was a single object."""
    field: str
    """Path of the field that decided it, e.g. `sendgrid[9].event`."""
    problem: str

    @property
    def reason(self) -> str:
        """The field path and why the event was ignored, in one line."""
        return f"{self.field}: {self.problem}"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Input that cannot be mapped to a correct event; it never becomes a guessed one."""

    index: int | None
    """Position in the posted batch; None when the payload was a single object."""
    field: str
    """Path of the offending field, e.g. `sendgrid[3].email`."""
    problem: str

    @property
    def reason(self) -> str:
        """The field path and what is wrong with it, e.g. `sendgrid[3].email: missing`."""
        return f"{self.field}: {self.problem}"


SnsMessageKind = Literal["SubscriptionConfirmation", "UnsubscribeConfirmation"]


@dataclass(frozen=True, slots=True)
class SnsSubscription:
    """An SNS (un)subscription confirmation: the receiver must verify and act on it itself.

    The adapter neither verifies the SNS signature nor visits `subscribe_url` (both need I/O).
    """

    kind: SnsMessageKind
    message_id: str
    topic_arn: str
    token: str | None
    subscribe_url: str | None
    timestamp: datetime | None


Outcome = DeliveryEvent | Ignored | Rejection | SnsSubscription
"""What one provider record turns into."""


@dataclass(frozen=True, slots=True)
class NormalizeResult:
    """Everything one webhook payload turned into, in payload order within each kind."""

    events: tuple[DeliveryEvent, ...] = ()
    ignored: tuple[Ignored, ...] = ()
    rejected: tuple[Rejection, ...] = ()
    subscription_confirmations: tuple[SnsSubscription, ...] = ()

    @classmethod
    def collect(cls, outcomes: Iterable[Outcome]) -> NormalizeResult:
        """Sort outcomes into their kinds, keeping their order."""
        events: list[DeliveryEvent] = []
        ignored: list[Ignored] = []
        rejected: list[Rejection] = []
        confirmations: list[SnsSubscription] = []
        for outcome in outcomes:
            if isinstance(outcome, DeliveryEvent):
                events.append(outcome)
            elif isinstance(outcome, Ignored):
                ignored.append(outcome)
            elif isinstance(outcome, Rejection):
                rejected.append(outcome)
            else:
                confirmations.append(outcome)
        return cls(tuple(events), tuple(ignored), tuple(rejected), tuple(confirmations))


class FieldError(Exception):
    """A field of a provider record that cannot be mapped; becomes a `Rejection`."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem

    def rejection(self, index: int | None) -> Rejection:
        """This error as the rejection of the record at `index`."""
        return Rejection(index=index, field=self.field, problem=self.problem)


# --- paths and field access -------------------------------------------------------------------


def child(path: str, key: str) -> str:
    """The path of `key` inside the object at `path`."""
    return f"{path}.{key}"


def item(path: str, index: int) -> str:
    """The path of element `index` of the array at `path`."""
    return f"{path}[{index}]"


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for error messages that never echo the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def short(text: str, limit: int = 40) -> str:
    """A provider's enumeration value quoted for a reason, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def as_object(value: Any, path: str) -> Mapping[str, Any]:
    """`value` as a JSON object, or a FieldError naming `path`."""
    if not isinstance(value, dict):
        raise FieldError(path, f"expected an object, got {json_type(value)}")
    return value


def required(obj: Mapping[str, Any], key: str, path: str) -> Any:
    """The value of `key`, or a FieldError when it is absent, null or an empty string."""
    value = obj.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError(child(path, key), "missing")
    return value


def required_str(obj: Mapping[str, Any], key: str, path: str) -> str:
    """The non-empty string at `key`, stripped of surrounding whitespace."""
    value = required(obj, key, path)
    if not isinstance(value, str):
        raise FieldError(child(path, key), f"expected a string, got {json_type(value)}")
    return value.strip()


def optional_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """The string at `key`, or None when absent, null or empty; other types are an error."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise FieldError(child(path, key), f"expected a string, got {json_type(value)}")
    return value.strip() or None


def scalar_text(value: Any, path: str) -> str:
    """A string or integer id as text (JSON ids are often numbers); other types are an error."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise FieldError(path, f"expected a string or integer id, got {json_type(value)}")


def optional_object(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    """The object at `key`, or None when absent or null."""
    value = obj.get(key)
    return None if value is None else as_object(value, child(path, key))


def required_object(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    """The object at `key`, or a FieldError naming it."""
    return as_object(required(obj, key, path), child(path, key))


def required_list(obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    """The non-empty array at `key`, or a FieldError naming it."""
    value = required(obj, key, path)
    if not isinstance(value, list):
        raise FieldError(child(path, key), f"expected an array, got {json_type(value)}")
    if not value:
        raise FieldError(child(path, key), "empty")
    return value


def batch_items(payload: Any, root: str) -> list[tuple[int | None, str, Any]]:
    """The records of a batch (a JSON array) or of a single-object payload, with their paths."""
    if isinstance(payload, list):
        return [(index, item(root, index), record) for index, record in enumerate(payload)]
    if isinstance(payload, dict):
        return [(None, root, payload)]
    raise FieldError(
        root, f"expected an array of events or one event object, got {json_type(payload)}"
    )


def parse_json(text: str | bytes, path: str) -> Any:
    """Parse strict JSON (no NaN or Infinity); a FieldError naming `path` when it is not JSON."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as exc:
        raise FieldError(
            path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise FieldError(path, f"not valid JSON ({exc})") from exc


# --- timestamps -------------------------------------------------------------------------------

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS_THRESHOLD: Final = Decimal(10) ** 11
"""Epoch numbers above this are milliseconds: 10^11 s is the year 5138, 10^11 ms is 1973."""
_OUT_OF_RANGE: Final = "timestamp outside 2000-2099 (wrong unit?)"
_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)
_NUMERIC: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")
"""ASCII digits only: `\\d` and `Decimal` also read other scripts' digits."""


def parse_timestamp(value: Any, path: str) -> datetime:
    """A provider timestamp as an aware UTC datetime.

    Accepts epoch seconds or milliseconds (numbers above 10^11 are milliseconds), as JSON numbers
    or numeric strings, and ISO 8601 strings with an offset or `Z`. Anything outside 2000-2099
    is rejected: it is a unit mistake, not an event time.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError(path, "missing")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FieldError(path, f"expected a timestamp, got {json_type(value)}")
    if isinstance(value, str) and not _NUMERIC.fullmatch(value.strip()):
        moment = _parse_iso(value.strip(), path)
    else:
        moment = _from_epoch(_epoch_number(value, path), path)
    if not _EARLIEST <= moment < _LATEST:
        raise FieldError(path, _OUT_OF_RANGE)
    return moment


def _epoch_number(value: float | str, path: str) -> Decimal:
    # repr() of a float is its shortest exact decimal form, so 1521472262.908181 stays exact.
    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value).strip())
    except InvalidOperation as exc:
        raise FieldError(path, "not a number") from exc
    if not number.is_finite() or number < 0:
        raise FieldError(path, "not a finite, non-negative epoch time")
    return number / 1000 if number > _MS_THRESHOLD else number


def _from_epoch(seconds: Decimal, path: str) -> datetime:
    micros = int((seconds * 1_000_000).to_integral_value(rounding=ROUND_HALF_EVEN))
    try:
        return _EPOCH + timedelta(microseconds=micros)
    except OverflowError as exc:
        raise FieldError(path, _OUT_OF_RANGE) from exc


def _parse_iso(text: str, path: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise FieldError(path, "not an ISO 8601 timestamp or epoch number") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise FieldError(path, "timestamp has no UTC offset")
    return moment.astimezone(UTC)


# --- event ids --------------------------------------------------------------------------------

EVENT_ID_MAX_LENGTH: Final = 256
_READABLE_PART: Final = re.compile(r"[A-Za-z0-9._=+/-]+")


def stable_event_id(provider: Provider, *parts: str) -> str:
    """A deterministic event id from the provider's own ids: same record, same id.

    Readable (`sendgrid:bounce:6g4ZI7SA-xmRDv57GoPIPw==`) when every part is a plain token and
    the whole fits; otherwise `provider:sha256:<hex>` of the parts. Parts holding an address,
    whitespace or a `:` are always hashed, so an event id never carries a recipient address.
    """
    if all(_READABLE_PART.fullmatch(part) for part in parts):
        readable = ":".join((provider.value, *parts))
        if len(readable) <= EVENT_ID_MAX_LENGTH:
            return readable
    digest = hashlib.sha256(json.dumps([provider.value, *parts]).encode()).hexdigest()
    return f"{provider.value}:sha256:{digest}"
