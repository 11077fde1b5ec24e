"""Pure provider adapters: real webhook payloads in, normalized `DeliveryEvent`s out.

No I/O (network, files, clock); the receiver checks signatures and passes payload and tenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, assert_never

from pydantic import TypeAdapter, ValidationError

from processor.adapters.providers import kumomta, mailgun, postmark, sendgrid, ses, sparkpost
from processor.adapters.providers.attribution import AttributionConfig, Context
from processor.adapters.providers.base import (
    FieldError,
    Ignored,
    NormalizeResult,
    Provider,
    Rejection,
    SnsSubscription,
    parse_json,
)
from schemas.base import Identifier

if TYPE_CHECKING:
    from processor.adapters.providers.base import Outcome

__all__ = [
    "AttributionConfig",
    "Ignored",
    "NormalizeResult",
    "Provider",
    "Rejection",
    "SnsSubscription",
    "normalize",
    "normalize_body",
]

_TENANT_ID: Final = TypeAdapter(Identifier)


def _check_tenant(tenant_id: str) -> None:
    try:
        _TENANT_ID.validate_python(tenant_id)
    except ValidationError as exc:
        raise ValueError("tenant_id must be 1-200 characters without whitespace or ':'") from exc


def normalize(
    provider: Provider,
    payload: Any,
    *,
    tenant_id: str,
    attribution: AttributionConfig | None = None,
) -> NormalizeResult:
    """Map one parsed webhook payload of `provider` to sendguard's delivery events.

    Records that are not reputation signals come back as `ignored`; records that cannot be
    mapped come back as `rejected`, each naming the offending field. Never raises for bad input.

    Raises:
        ValueError: `tenant_id` is not a valid identifier (a caller bug, not bad input).
    """
    _check_tenant(tenant_id)
    ctx = Context(Provider(provider), tenant_id, attribution or AttributionConfig())
    outcomes: list[Outcome]
    match ctx.provider:
        case Provider.SES:
            outcomes = ses.normalize(payload, ctx)
        case Provider.SENDGRID:
            outcomes = sendgrid.normalize(payload, ctx)
        case Provider.MAILGUN:
            outcomes = mailgun.normalize(payload, ctx)
        case Provider.POSTMARK:
            outcomes = postmark.normalize(payload, ctx)
        case Provider.SPARKPOST:
            outcomes = sparkpost.normalize(payload, ctx)
        case Provider.KUMOMTA:
            outcomes = kumomta.normalize(payload, ctx)
        case _:
            assert_never(ctx.provider)
    return NormalizeResult.collect(outcomes)


def normalize_body(
    provider: Provider,
    body: bytes,
    *,
    tenant_id: str,
    attribution: AttributionConfig | None = None,
) -> NormalizeResult:
    """Like `normalize`, from the raw request body; a body that is not JSON is one rejection.

    Raises:
        ValueError: `tenant_id` is not a valid identifier (a caller bug, not bad input).
    """
    _check_tenant(tenant_id)
    try:
        payload = parse_json(body, Provider(provider).value)
    except FieldError as exc:
        return NormalizeResult(rejected=(exc.rejection(None),))
    return normalize(provider, payload, tenant_id=tenant_id, attribution=attribution)
