"""What every returned mail needs: parsing, the returned original, attribution, dates and ids.

Attribution order (docs/MAIL.md): a signed VERP token (envelope recipient, then the addresses
inside the report), then headers of the returned original message, then the caller's fallbacks.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.utils
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.parser import HeaderParser
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from processor.adapters.providers.base import FieldError
from processor.domain.signed_tokens import TokenError, read_verp_token, verp_token_of
from schemas.events import DeliveryEvent

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from schemas.events import BounceCategory, BounceClass, EventType

ADDRESS: Final = re.compile(r"[^@\s<>\"]+@[^@\s<>\"]+")
_BLOCK_SPLIT: Final = re.compile(r"\r?\n[ \t]*\r?\n")
_MAX_PAST: Final = timedelta(days=30)
_MAX_FUTURE: Final = timedelta(minutes=15)
KUMO_REF_HEADER: Final = "X-KumoRef"


@dataclass(frozen=True, slots=True)
class MailAttribution:
    """Where a returned mail's tenant, campaign and contact are looked up."""

    keys: tuple[bytes, ...] = ()
    """Token verification keys, current first; without keys no VERP token is read."""
    verp_prefix: str = "b"
    bounce_domains: tuple[str, ...] = ()
    tenant_headers: tuple[str, ...] = ("X-Tenant-ID",)
    campaign_headers: tuple[str, ...] = ("X-Campaign-ID",)
    contact_headers: tuple[str, ...] = ("X-Contact-ID",)
    fallback_tenant_id: str | None = None
    fallback_campaign_id: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """The SMTP envelope a message came with (empty for a message read from a file)."""

    received_at: datetime
    recipients: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Origin:
    """Whose message a report is about, each part with where it was found."""

    tenant: tuple[str, str] | None = None
    campaign: tuple[str, str] | None = None
    contact: tuple[str, str] | None = None
    """(value, path): a VERP contact applies only to a report about one recipient."""


@dataclass(slots=True)
class Report:
    """A parsed returned mail and what is shared by its recipients."""

    message: Message
    data: bytes
    envelope: Envelope
    attribution: MailAttribution
    original: Message | None = None
    """The returned original message (or its headers), when the report carries it."""
    report_id: str = field(default="")

    def __post_init__(self) -> None:
        message_id = unfolded(self.message.get("Message-ID"))
        self.report_id = message_id or "sha256:" + hashlib.sha256(self.data).hexdigest()


def parse_message(data: bytes) -> Message:
    """A message from its bytes (never raises: the email package repairs what it can)."""
    return email.message_from_bytes(data)


def unfolded(value: object) -> str | None:
    """A header value on one line, or None when absent or empty."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def header_block(part: Message) -> list[Message]:
    """The header blocks of a `message/*` report part, however the parser left them."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload or "")
    parser = HeaderParser()
    return [
        parser.parsestr(block.strip() + "\n") for block in _BLOCK_SPLIT.split(text) if block.strip()
    ]


def report_parts(
    message: Message, report_type: str, part_type: str
) -> tuple[Message, Message | None] | None:
    """The report part and the returned original of a `multipart/report` of `report_type`."""
    if message.get_content_type() != "multipart/report":
        return None
    kind = str(message.get_param("report-type", "") or "").strip().lower()
    payload = message.get_payload()
    if not isinstance(payload, list):
        return None
    parts = [p for p in payload if isinstance(p, Message)]
    report = next((p for p in parts if p.get_content_type() == part_type), None)
    if report is None or (kind and kind != report_type):
        return None
    return report, returned_original(parts)


def returned_original(parts: Sequence[Message]) -> Message | None:
    """The returned message: a `message/rfc822` part, or `text/rfc822-headers`."""
    for part in parts:
        content_type = part.get_content_type()
        if content_type in {"message/rfc822", "message/global"}:
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return inner[0]
        if content_type in {"text/rfc822-headers", "message/global-headers"}:
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            return HeaderParser().parsestr(text)
    return None


def plain_address(value: str | None) -> str | None:
    """The address of `rfc822; <a@b>`, `<a@b>` or `a@b`; None when it is not one."""
    if not value:
        return None
    _kind, semicolon, rest = value.partition(";")
    text = (rest if semicolon else value).strip().strip("<>").strip()
    return text if ADDRESS.fullmatch(text) else None


def report_time(values: Iterable[str | None], envelope: Envelope) -> datetime:
    """The first parseable date close to arrival (30 days before to 15 minutes after).

    Else the arrival time: a reporting MTA's clock or a replayed sample must not place the
    event far from when it reached us.
    """
    arrived = envelope.received_at
    for value in values:
        if not value:
            continue
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        if arrived - _MAX_PAST <= moment <= arrived + _MAX_FUTURE:
            return moment
    return arrived


def event_id(kind: str, report: Report, *parts: str) -> str:
    """A deterministic id: the same report about the same recipient always gets the same id."""
    digest = hashlib.sha256(json.dumps([kind, report.report_id, *parts]).encode()).hexdigest()
    return f"{kind}:sha256:{digest}"


# --- attribution ------------------------------------------------------------------------------


def _verp(address: str | None, path: str, attribution: MailAttribution) -> Origin | None:
    if not address or not attribution.keys or not attribution.bounce_domains:
        return None
    token = verp_token_of(
        address, prefix=attribution.verp_prefix, domains=attribution.bounce_domains
    )
    if token is None:
        return None
    try:
        verp = read_verp_token(token, attribution.keys)
    except TokenError as exc:
        raise FieldError(path, str(exc)) from exc
    return Origin((verp.tenant_id, path), (verp.campaign_id, path), (verp.contact_id, path))


def _first_header(
    message: Message | None, names: Sequence[str], path: str
) -> tuple[str, str] | None:
    if message is None:
        return None
    for name in names:
        value = unfolded(message.get(name))
        if value:
            return value, f"{path}.{name}"
    return None


def kumo_ref(original: Message | None) -> dict[str, Any]:
    """KumoMTA's trace header of the returned original (base64 JSON), or {}."""
    value = None if original is None else unfolded(original.get(KUMO_REF_HEADER))
    if not value:
        return {}
    try:
        decoded = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError):
        return {}
    return decoded if isinstance(decoded, dict) else {}


def attribute(report: Report, inside: Sequence[tuple[str | None, str]]) -> Origin:
    """Tenant, campaign and contact of a report.

    `inside` are (address, path) pairs of the report where a VERP return path may appear; the
    envelope recipients are tried before them.
    """
    attribution = report.attribution
    candidates = [(r, f"envelope.rcpt_to[{i}]") for i, r in enumerate(report.envelope.recipients)]
    for address, path in [*candidates, *inside]:
        found = _verp(plain_address(address) or address, path, attribution)
        if found is not None:
            return found
    original = report.original
    ref = kumo_ref(original)
    ref_path = f"original.{KUMO_REF_HEADER}"

    def from_ref(key: str) -> tuple[str, str] | None:
        value = ref.get(key)
        return (
            (value.strip(), f"{ref_path}.{key}")
            if isinstance(value, str) and value.strip()
            else None
        )

    tenant = (
        _first_header(original, attribution.tenant_headers, "original")
        or from_ref("tenant")
        or _fallback(attribution.fallback_tenant_id, "fallback_tenant_id")
    )
    campaign = (
        _first_header(original, attribution.campaign_headers, "original")
        or from_ref("campaign")
        or _fallback(attribution.fallback_campaign_id, "fallback_campaign_id")
    )
    contact = _first_header(original, attribution.contact_headers, "original")
    return Origin(tenant, campaign, contact)


def _fallback(value: str | None, name: str) -> tuple[str, str] | None:
    return None if value is None else (value, f"attribution.{name}")


def make_event(
    origin: Origin,
    *,
    provider: str,
    event_id: str,
    event_type: EventType,
    address: tuple[str, str],
    occurred_at: datetime,
    single_recipient: bool,
    bounce_class: BounceClass | None = None,
    bounce_category: BounceCategory | None = None,
    message_id: str | None = None,
) -> DeliveryEvent:
    """A validated event; a missing or invalid part is a FieldError naming where it came from."""
    if origin.tenant is None:
        raise FieldError("tenant", "missing: no VERP token, tenant header or fallback names one")
    if origin.campaign is None:
        raise FieldError(
            "campaign", "missing: no VERP token, campaign header or fallback names one"
        )
    value, path = address
    contact = origin.contact if origin.contact is not None and single_recipient else None
    contact_id, contact_path = contact or (value.lower(), path)
    record = {
        "event_id": event_id,
        "tenant_id": origin.tenant[0],
        "campaign_id": origin.campaign[0],
        "recipient": {"contact_id": contact_id, "address": value},
        "type": event_type,
        "bounce_class": bounce_class,
        "bounce_category": bounce_category,
        "occurred_at": occurred_at,
        "provider": provider,
        "provider_message_id": message_id[:512] if message_id else None,
    }
    try:
        return DeliveryEvent.model_validate(record)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        loc = ".".join(str(part) for part in error["loc"]) or "event"
        sources = {
            "tenant_id": origin.tenant[1],
            "campaign_id": origin.campaign[1],
            "recipient.address": path,
            "recipient.contact_id": contact_path,
        }
        raise FieldError(sources.get(loc) or loc, f"not a valid {loc}: {error['msg']}") from exc
