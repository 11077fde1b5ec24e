"""HTTP targets of the bridges: KumoMTA's suspension API and signed command webhooks.

aiohttp errors and HTTP statuses are translated here, once: no answer, 5xx, 408, 425 and 429
become TargetUnavailableError (worth retrying), any other non-2xx TargetRefusedError.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from processor.errors import TargetRefusedError, TargetUnavailableError
from processor.ports.bridge import ActiveSuspension

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from processor.ports.bridge import Suspension

SUSPEND_PATH = "/api/admin/suspend/v1"
RETRYABLE_STATUSES = frozenset({408, 425, 429})
SIGNATURE_HEADER = "X-Sendguard-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_NOT_FOUND = 404
_SHOWN_BODY = 300


async def _request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    body: bytes | None = None,
    allowed: frozenset[int] = frozenset(),
) -> tuple[int, bytes]:
    """Send one request; return status and body of a 2xx (or an `allowed`) answer."""
    try:
        async with session.request(method, url, data=body, headers=headers) as response:
            status, answer = response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TargetUnavailableError(
            f"{method} {url}: {type(exc).__name__} {exc}".rstrip()
        ) from exc
    if 200 <= status < 300 or status in allowed:  # noqa: PLR2004 - the 2xx range
        return status, answer
    shown = answer[:_SHOWN_BODY].decode("utf-8", "replace")
    message = f"{method} {url} answered {status}: {shown}".rstrip(": ")
    if status >= 500 or status in RETRYABLE_STATUSES:  # noqa: PLR2004 - the 5xx range
        raise TargetUnavailableError(message)
    raise TargetRefusedError(message)


def authorization_header(
    *, token: str | None, username: str | None, password: str | None
) -> dict[str, str]:
    """An Authorization header: bearer token, basic auth, or none."""
    if token:
        return {"Authorization": f"Bearer {token}"}
    if username:
        pair = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}
    return {}


class KumoSuspendApi:
    """`SuspensionApi` over KumoMTA's `/api/admin/suspend/v1` (kumod.openapi.json)."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, auth: Mapping[str, str]
    ) -> None:
        self._session = session
        self._url = base_url.rstrip("/") + SUSPEND_PATH
        self._headers = {"Content-Type": "application/json", **auth}

    async def suspend(self, suspension: Suspension) -> str:
        """See `SuspensionApi.suspend`. POST SuspendV1Request -> SuspendV1Response."""
        request: dict[str, Any] = {"tenant": suspension.tenant, "reason": suspension.reason}
        if suspension.campaign is not None:
            request["campaign"] = suspension.campaign
        # humantime syntax, as kumod parses `duration`: whole seconds need no clock agreement.
        request["duration"] = f"{suspension.duration_s}s"
        _, answer = await _request(
            self._session, "POST", self._url, headers=self._headers, body=_json(request)
        )
        try:
            suspension_id = json.loads(answer)["id"]
        except (ValueError, KeyError, TypeError) as exc:
            # Perhaps made nonetheless: a retry finds it by the command id in its reason.
            raise TargetUnavailableError(
                f"POST {self._url}: no suspension id in {answer[:_SHOWN_BODY]!r}"
            ) from exc
        if not isinstance(suspension_id, str) or not suspension_id:
            raise TargetUnavailableError(f"POST {self._url}: suspension id {suspension_id!r}")
        return suspension_id

    async def cancel(self, suspension_id: str) -> bool:
        """See `SuspensionApi.cancel`. DELETE SuspendV1CancelRequest: 200, or 404 if gone."""
        status, _ = await _request(
            self._session,
            "DELETE",
            self._url,
            headers=self._headers,
            body=_json({"id": suspension_id}),
            allowed=frozenset({_NOT_FOUND}),
        )
        return status != _NOT_FOUND

    async def active(self) -> list[ActiveSuspension]:
        """See `SuspensionApi.active`. GET: SuspendV1ListEntry objects (a list, or one)."""
        _, answer = await _request(self._session, "GET", self._url, headers=self._headers)
        try:
            entries = json.loads(answer)
            entries = entries if isinstance(entries, list) else [entries]
            return [
                ActiveSuspension(
                    str(entry["id"]),
                    str(entry["reason"]),
                    entry.get("tenant"),
                    entry.get("campaign"),
                )
                for entry in entries
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise TargetRefusedError(
                f"GET {self._url}: not a list of suspensions: {answer[:_SHOWN_BODY]!r}"
            ) from exc


def signature_header(body: bytes, secrets: Sequence[bytes], at: int) -> str:
    """`t=<unix>,v1=<hex>[,v1=<hex>...]`: HMAC-SHA256 of `<t>.<body>` under each secret.

    Several secrets while one is being rotated: a receiver accepts any `v1` its secret matches.
    """
    signed = f"{at}.".encode() + body
    digests = [hmac.new(secret, signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={at}", *(f"v1={digest}" for digest in digests)])


class SignedWebhook:
    """`CommandEndpoint`: POSTs the command's JSON, signed, with the command id to de-duplicate."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        secrets: Sequence[bytes],
        auth: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._url = url
        self._secrets = list(secrets)
        self._auth = dict(auth)
        self._clock = clock

    async def deliver(self, command_id: str, body: bytes) -> None:
        """See `CommandEndpoint.deliver`."""
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "sendguard-bridge",
            IDEMPOTENCY_HEADER: command_id,
            **self._auth,
        }
        if self._secrets:
            headers[SIGNATURE_HEADER] = signature_header(body, self._secrets, int(self._clock()))
        await _request(self._session, "POST", self._url, headers=headers, body=body)


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
