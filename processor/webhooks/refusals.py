"""The webhook receiver's refusals: the error answer, and reading a body it may refuse.

A `RefusedError` carries the status and the JSON answer; `refusals` turns authentication
failures into 401 and 403; `read_body` refuses what is too large, too slow or undecodable.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

import msgspec
from aiohttp import web

from processor.adapters.providers import Provider
from processor.adapters.providers.base import FieldError, parse_json
from processor.webhooks.auth import AuthenticationError, MissingCredentialsError

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

_READ_CHUNK: Final = 64 * 1024
BASIC: Final = frozenset({Provider.POSTMARK, Provider.SPARKPOST, Provider.KUMOMTA})
"""Providers that authenticate with HTTP basic auth (a 401 carries the challenge)."""
_BASIC_CHALLENGE: Final = 'Basic realm="sendguard webhooks"'


class RefusedError(Exception):
    """A request answered with an error status; the handler turns it into the JSON answer."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str,
        *,
        headers: Mapping[str, str] | None = None,
        unreadable: bool = False,
        **details: Any,
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = headers
        self.unreadable = unreadable
        """The rest of the body cannot or should not be read (broken, too slow, gone)."""
        self.details = details

    def response(self, request_id: str) -> web.Response:
        """The JSON error answer."""
        body = {"error": self.error, "reason": self.reason, "request_id": request_id}
        return web.json_response({**body, **self.details}, status=self.status, headers=self.headers)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> bytes:
    """The body; refused when over `limit` bytes, unfinished after `timeout_s` or undecodable.

    The limit is checked by Content-Length and by what actually came (after decompression).
    """
    too_large = RefusedError(413, "too_large", f"the body exceeds {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(_READ_CHUNK):
                size += len(chunk)  # decoded bytes: a gzip bomb stops at the limit too
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError as exc:
        reason = f"the body did not arrive within {timeout_s:g} s"
        raise RefusedError(408, "timeout", reason, unreadable=True) from exc
    except web.RequestPayloadError as exc:
        reason = "the body cannot be decoded (Content-Encoding or framing)"
        raise RefusedError(400, "invalid_body", reason, unreadable=True) from exc
    except ConnectionResetError as exc:  # the client went away: nobody reads the answer
        reason = "the client closed the connection"
        raise RefusedError(400, "connection_lost", reason, unreadable=True) from exc
    return b"".join(chunks)


_RECORDS: Final = msgspec.json.Decoder(list[msgspec.Raw])
"""Splits a JSON array into its records' bytes without building them: counts a batch cheaply."""


def record_count(body: bytes) -> int | None:
    """How many records a JSON array body holds; None when it is not one (judged later)."""
    try:
        return len(_RECORDS.decode(body))
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None


async def answer_and_hang_up(request: web.Request, response: web.Response) -> None:
    """Send the answer, then close the connection at once.

    Otherwise aiohttp lingers, reading up to 10 s more of a body we gave up on (a slow client
    keeps its connection), or logs a traceback when that body cannot be decoded.
    """
    with contextlib.suppress(ConnectionError):  # the client may be gone already
        await response.prepare(request)
        await response.write_eof()
    request.protocol.force_close()


def parse_body(body: bytes, provider: Provider) -> Any:
    """The JSON body of a provider whose credentials are inside it."""
    try:
        return parse_json(body, provider.value)
    except FieldError as exc:
        raise RefusedError(400, "invalid_body", exc.problem) from exc


@contextlib.contextmanager
def refusals(provider: Provider) -> Iterator[None]:
    """Authentication failures as answers: missing credentials 401, anything else wrong 403."""
    try:
        yield
    except MissingCredentialsError as exc:
        challenge = {"WWW-Authenticate": _BASIC_CHALLENGE} if provider in BASIC else None
        raise RefusedError(401, "unauthenticated", exc.reason, headers=challenge) from exc
    except AuthenticationError as exc:
        raise RefusedError(403, "forbidden", exc.reason) from exc
