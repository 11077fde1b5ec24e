"""One-click unsubscribe (RFC 8058): `POST /unsubscribe/{token}` and what it publishes.

An unsubscribe event on delivery-events (its id from tenant, campaign and contact, so a repeat
is a duplicate detection ignores) and a contact update (unsubscribed: applying it twice changes
nothing). The access log redacts tokens: they carry the contact and the address.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from processor.domain.signed_tokens import TokenError, TokenExpiredError, read_unsubscribe_token
from processor.errors import PublishError
from processor.logs import address_hash
from processor.ports.detection_store import OutboxMessage
from processor.webhooks.refusals import RefusedError, answer_and_hang_up, read_body
from schemas.audience import ContactUpdate
from schemas.events import DeliveryEvent, EventType
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from aiohttp.web import BaseRequest, StreamResponse

    from processor.adapters.kafka import ConfirmedPublisher
    from processor.config.settings import Settings
    from processor.domain.signed_tokens import UnsubscribeToken

log = logging.getLogger(__name__)

ONE_CLICK_PROVIDER: Final = "one-click"
CONTACT_SOURCE: Final = "sendguard one-click unsubscribe (RFC 8058)"
MAX_BODY_BYTES: Final = 4096
"""`List-Unsubscribe=One-Click` is 26 bytes; a multipart encoding of it a few hundred."""
_MULTIPART_FIELD: Final = re.compile(
    rb'name="?List-Unsubscribe"?\s*\r?\n(?:[^\r\n]+\r?\n)*\r?\nOne-Click\r?\n', re.IGNORECASE
)
_TOKEN_PATH: Final = re.compile(r"(/unsubscribe/)[^/?\s]+")


def is_one_click(body: bytes, content_type: str) -> bool:
    """The body says `List-Unsubscribe=One-Click`, form-urlencoded or multipart/form-data."""
    if content_type == "multipart/form-data":
        return _MULTIPART_FIELD.search(body) is not None
    try:
        fields = parse_qs(body.decode("ascii"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return fields.get("List-Unsubscribe") == ["One-Click"]


def unsubscribe_event_id(token: UnsubscribeToken) -> str:
    """The same contact unsubscribing from the same campaign always gets the same id."""
    parts = [token.tenant_id, token.campaign_id, token.contact_id]
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    return f"{ONE_CLICK_PROVIDER}:sha256:{digest}"


def unsubscribe_messages(token: UnsubscribeToken, now: datetime) -> list[OutboxMessage]:
    """The unsubscribe event and the contact update of one verified token."""
    event = DeliveryEvent(
        event_id=unsubscribe_event_id(token),
        tenant_id=token.tenant_id,
        campaign_id=token.campaign_id,
        recipient={"contact_id": token.contact_id, "address": token.address},  # type: ignore[arg-type]  # validated into a Recipient
        type=EventType.UNSUBSCRIBE,
        occurred_at=now,
        provider=ONE_CLICK_PROVIDER,
    )
    update = ContactUpdate(
        tenant_id=token.tenant_id,
        contact_id=token.contact_id,
        unsubscribed=True,
        occurred_at=now,
        source=CONTACT_SOURCE,
    )
    return [
        OutboxMessage(TopicRole.DELIVERY_EVENTS.value, event.key, event.model_dump_json()),
        OutboxMessage(TopicRole.CONTACT_UPDATES.value, update.key, update.model_dump_json()),
    ]


def redact_path(path: str) -> str:
    """A request path with any unsubscribe token replaced by `…`."""
    return _TOKEN_PATH.sub(r"\1…", path)


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access log line, structured, with unsubscribe tokens redacted."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        """One line per request."""
        self.logger.info(
            "%s %s %s",
            request.method,
            redact_path(request.path),
            response.status,
            extra={
                "method": request.method,
                "path": redact_path(request.path),
                "status": response.status,
                "remote": request.remote,
                "duration_ms": round(time * 1000),
            },
        )


@dataclass
class OneClickUnsubscribe:
    """The `POST /unsubscribe/{token}` handler."""

    settings: Settings
    publisher: ConfirmedPublisher

    async def handle(self, request: web.Request) -> web.Response:
        """Verify the token, check the body, publish; 200 only after Kafka acknowledged."""
        request_id = uuid.uuid4().hex
        context = {"request_id": request_id, "route": "unsubscribe", "remote": request.remote}
        try:
            reply = await self._process(request, request_id)
        except RefusedError as exc:
            level = logging.ERROR if exc.status >= 500 else logging.WARNING  # noqa: PLR2004  # 5xx
            log.log(
                level,
                "unsubscribe refused: %s",
                exc.reason,
                extra={**context, "status": exc.status, "error": exc.error},
            )
            response = exc.response(request_id)
            response.force_close()  # no keep-alive after a refusal
            if exc.unreadable:
                await answer_and_hang_up(request, response)
            return response
        log.info("unsubscribe published", extra={**context, **reply})
        return web.json_response(reply)

    async def _process(self, request: web.Request, request_id: str) -> dict[str, Any]:
        keys = self.settings.token_keys()
        if not keys:
            raise RefusedError(404, "not_found", "one-click unsubscribe is not configured")
        now = time.time()
        # The token is verified before a byte of the body is read.
        try:
            token = read_unsubscribe_token(request.match_info["token"], keys, now_s=now)
        except TokenExpiredError as exc:
            raise RefusedError(410, "expired", str(exc)) from exc
        except TokenError as exc:
            raise RefusedError(403, "forbidden", str(exc)) from exc
        body = await read_body(request, MAX_BODY_BYTES, self.settings.webhook_body_timeout_s)
        if not is_one_click(body, request.content_type):
            raise RefusedError(
                400, "invalid_body", "the body must be List-Unsubscribe=One-Click (RFC 8058)"
            )
        messages = unsubscribe_messages(token, datetime.fromtimestamp(now, UTC))
        try:
            async with asyncio.timeout(self.settings.webhook_publish_timeout_s):
                await self.publisher.publish(messages)
        except (PublishError, TimeoutError) as exc:
            raise RefusedError(
                503, "unavailable", "Kafka did not acknowledge the unsubscribe; retry later"
            ) from exc
        return {
            "status": "unsubscribed",
            "request_id": request_id,
            "tenant_id": token.tenant_id,
            "campaign_id": token.campaign_id,
            "recipient_hash": address_hash(token.address),
        }
