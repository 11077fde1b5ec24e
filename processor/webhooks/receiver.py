"""The webhook receiver's request handling: authenticate, normalize, publish the batch whole.

Kafka and Redis failures become 503 here, once (the provider retries; event ids are stable).
`server` builds the aiohttp app around it; `refusals` holds the error answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, assert_never

from aiohttp import web

from processor.adapters.providers import NormalizeResult, Provider, normalize
from processor.adapters.providers.base import FieldError, parse_json
from processor.errors import PublishError, StoreUnavailableError
from processor.logs import address_hash
from processor.webhooks.auth import (
    SENDGRID_SIGNATURE_HEADER,
    SENDGRID_TIMESTAMP_HEADER,
    SendgridSignature,
    authenticate_basic,
    authenticate_mailgun,
    authenticate_sns,
    sendgrid_signature,
    verify_sendgrid,
)
from processor.webhooks.batch import (
    Accepted,
    answer,
    build_messages,
    log_subscriptions,
    outcomes,
    raw_topic_name,
)
from processor.webhooks.refusals import (
    RefusedError,
    answer_and_hang_up,
    parse_body,
    read_body,
    record_count,
    refusals,
)

if TYPE_CHECKING:
    from processor.adapters.kafka import ConfirmedPublisher
    from processor.adapters.redis_tokens import WebhookTokens
    from processor.config.settings import Settings
    from processor.webhooks.credentials import Credentials

log = logging.getLogger(__name__)


def token_ttl_s(settings: Settings) -> int:
    """How long a Mailgun token is remembered: past the freshness window on both sides."""
    return math.ceil(2 * settings.webhook_max_age_s) + 60


@dataclass
class WebhookReceiver:
    """The request handlers and everything they share."""

    settings: Settings
    credentials: Credentials
    tokens: WebhookTokens
    publisher: ConfirmedPublisher
    producer_started: bool = False
    """Set while the app's Kafka producer runs (`server` starts and stops it)."""

    async def healthz(self, _request: web.Request) -> web.Response:
        """`GET /healthz`: ok once the Kafka producer is started."""
        if self.producer_started:
            return web.json_response({"status": "ok"})
        return web.json_response(
            {"status": "unavailable", "reason": "the Kafka producer is not started"}, status=503
        )

    async def webhook(self, request: web.Request) -> web.Response:
        """`POST /webhooks/{provider}[/{tenant}]`."""
        request_id = uuid.uuid4().hex
        started = time.monotonic()
        context = {
            "request_id": request_id,
            "provider": request.match_info["provider"],
            "url_tenant": request.match_info.get("tenant"),
            "remote": request.remote,
        }
        try:
            reply = await self._process(request, request_id)
        except RefusedError as exc:
            level = logging.ERROR if exc.status >= 500 else logging.WARNING  # noqa: PLR2004  # 5xx
            log.log(
                level,
                "webhook refused: %s",
                exc.reason,
                extra={**context, "status": exc.status, "error": exc.error, **exc.details},
            )
            response = exc.response(request_id)
            response.force_close()  # no keep-alive after a refusal
            if exc.unreadable:
                await answer_and_hang_up(request, response)
            return response
        log.info(
            "webhook accepted",
            extra={**context, **reply, "duration_ms": round(1000 * (time.monotonic() - started))},
        )
        return web.json_response(reply)

    async def _process(self, request: web.Request, request_id: str) -> dict[str, Any]:
        try:
            provider = Provider(request.match_info["provider"])
        except ValueError as exc:
            raise RefusedError(404, "unknown_provider", "no such provider") from exc
        url_tenant = request.match_info.get("tenant")
        now = time.time()
        # Whatever the headers alone can refuse is refused before a byte of the body is read.
        early = self._before_body(provider, url_tenant, request, now)
        body = await read_body(
            request, self.settings.webhook_max_body_bytes, self.settings.webhook_body_timeout_s
        )
        tenant_id, claimed = await self._authenticate(provider, url_tenant, body, now, early)
        try:
            return await self._accept(
                provider, tenant_id, request=request, body=body, now=now, request_id=request_id
            )
        except Exception:
            if claimed is not None:  # let the provider's retry of this very request through
                await self._release(*claimed)
            raise

    def _candidates(self, provider: Provider, url_tenant: str | None) -> int:
        """How many credentials a request to this provider (and URL tenant) may verify against."""
        creds = self.credentials
        match provider:
            case Provider.SENDGRID:
                return len(creds.sendgrid_keys(url_tenant))
            case Provider.MAILGUN:
                return len(creds.mailgun_keys(url_tenant))
            case Provider.POSTMARK | Provider.SPARKPOST | Provider.KUMOMTA:
                return len(creds.basic_accounts(provider, url_tenant))
            case Provider.SES:
                return len(creds.sns_topics(url_tenant))
            case _:
                assert_never(provider)

    def _before_body(
        self, provider: Provider, url_tenant: str | None, request: web.Request, now: float
    ) -> str | SendgridSignature | None:
        """The checks the headers allow: the basic-auth tenant, SendGrid's decoded headers."""
        with refusals(provider):
            if not self._candidates(provider, url_tenant):
                raise RefusedError(
                    403, "forbidden", f"no {provider.value} credential is configured for this URL"
                )
            match provider:
                case Provider.SENDGRID:
                    return sendgrid_signature(
                        signature=request.headers.get(SENDGRID_SIGNATURE_HEADER),
                        timestamp=request.headers.get(SENDGRID_TIMESTAMP_HEADER),
                        now=now,
                        max_age_s=self.settings.webhook_max_age_s,
                    )
                case Provider.POSTMARK | Provider.SPARKPOST | Provider.KUMOMTA:
                    return authenticate_basic(
                        request.headers.get("Authorization"),
                        self.credentials.basic_accounts(provider, url_tenant),
                    )
                case Provider.MAILGUN | Provider.SES:  # their credentials are in the body
                    return None
                case _:
                    assert_never(provider)

    async def _authenticate(
        self,
        provider: Provider,
        url_tenant: str | None,
        body: bytes,
        now: float,
        early: str | SendgridSignature | None,
    ) -> tuple[str, tuple[str, str] | None]:
        """The tenant of the verified credential, and the (provider, token) of a claimed one."""
        creds = self.credentials
        settings = self.settings
        with refusals(provider):
            if isinstance(early, str):  # basic auth: verified from the header already
                return early, None
            if isinstance(early, SendgridSignature):
                return verify_sendgrid(early, body, creds.sendgrid_keys(url_tenant)), None
            if provider is Provider.MAILGUN:
                identity = authenticate_mailgun(
                    parse_body(body, provider),
                    creds.mailgun_keys(url_tenant),
                    now=now,
                    max_age_s=settings.webhook_max_age_s,
                )
                claimed = (provider.value, identity.token)
                await self._claim(*claimed)
                return identity.tenant_id, claimed
            if provider is Provider.SES:
                tenant_id = authenticate_sns(
                    parse_body(body, provider),
                    creds.sns_topics(url_tenant),
                    now=now,
                    max_age_s=settings.webhook_sns_max_age_s,
                )
                return tenant_id, None
        raise AssertionError(provider)  # pragma: no cover  # _before_body covers every provider

    async def _claim(self, provider: str, token: str) -> None:
        """Remember a Mailgun token; refuse it if it was already there (a replay)."""
        try:
            claimed = await self.tokens.claim(provider, token)
        except StoreUnavailableError as exc:
            raise RefusedError(
                503, "unavailable", "the replay store (Redis) is unavailable; retry later"
            ) from exc
        if not claimed:
            raise RefusedError(403, "forbidden", "this Mailgun token was already used (replay)")

    async def _release(self, provider: str, token: str) -> None:
        try:
            await self.tokens.release(provider, token)
        except StoreUnavailableError as exc:
            log.warning("could not release a webhook token", extra={"error": str(exc)})

    def _normalize(self, provider: Provider, tenant_id: str, body: bytes) -> NormalizeResult:
        """The body's events, ignored and rejected records; more than the allowed records: 413.

        The cap bounds the work one request can cause (each record costs microseconds; a
        megabyte of `{}` is 350,000 records); it is checked before the records are built.
        A body that is not JSON is one rejection.
        """
        limit = self.settings.webhook_max_records
        count = record_count(body)
        if count is not None and count > limit:
            raise RefusedError(
                413, "too_many_records", f"the batch has {count} records, over {limit}"
            )
        try:
            payload = parse_json(body, provider.value)
        except FieldError as exc:
            return NormalizeResult(rejected=(exc.rejection(None),))
        attribution = self.credentials.attribution(tenant_id)
        return normalize(provider, payload, tenant_id=tenant_id, attribution=attribution)

    async def _accept(
        self,
        provider: Provider,
        tenant_id: str,
        *,
        request: web.Request,
        body: bytes,
        now: float,
        request_id: str,
    ) -> dict[str, Any]:
        """Normalize, publish the whole batch with its raw record, and describe the outcome."""
        result = self._normalize(provider, tenant_id, body)
        if not result.events and result.rejected:
            raise RefusedError(
                400,
                "rejected",
                "no event of the payload could be used",
                tenant_id=tenant_id,
                rejected=outcomes(result.rejected),
                rejected_count=len(result.rejected),
            )
        accepted = Accepted(
            request_id=request_id,
            provider=provider,
            tenant_id=tenant_id,
            received_at=datetime.fromtimestamp(now, UTC),
            headers=request.headers,
            body=body,
            result=result,
        )
        messages = build_messages(accepted, raw_topic=raw_topic_name(self.settings))
        try:
            async with asyncio.timeout(self.settings.webhook_publish_timeout_s):
                await self.publisher.publish(messages)
        except (PublishError, TimeoutError) as exc:
            raise RefusedError(
                503, "unavailable", "Kafka did not acknowledge the batch; retry later"
            ) from exc
        for event in result.events:
            log.debug(
                "webhook event published",
                extra={
                    "request_id": request_id,
                    "event_id": event.event_id,
                    "type": event.type.value,
                    "campaign_id": event.campaign_id,
                    "recipient_hash": address_hash(event.recipient.address),
                },
            )
        log_subscriptions(accepted)
        return answer(accepted)
