"""Local HTTP servers the bridge tests talk to: KumoMTA's suspend API, and a webhook receiver.

KumoMTA cannot be installed here, so `FakeKumod` follows the published schema
(../shared/mta-samples/kumomta/kumod.openapi.json): it checks every request body against
SuspendV1Request / SuspendV1CancelRequest and answers as the document says.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

OPENAPI = Path(__file__).resolve().parents[3] / "shared/mta-samples/kumomta/kumod.openapi.json"
"""Read in place from the shared samples beside the worktree (never copied)."""
_TYPES: dict[str, type] = {
    "string": str,
    "null": type(None),
    "array": list,
    "object": dict,
}


def schema(name: str) -> dict[str, Any]:
    """A component schema of kumod's OpenAPI document."""
    document = json.loads(OPENAPI.read_text())
    found: dict[str, Any] = document["components"]["schemas"][name]
    return found


def violations(body: object, spec: dict[str, Any]) -> list[str]:
    """What in `body` breaks `spec` (the subset of JSON Schema kumod's request bodies use).

    Stricter than kumod on one point: a property the schema does not name is an error, so a
    misspelt field (`tenant_id`) fails the test instead of being silently ignored.
    """
    if not isinstance(body, dict):
        return ["body is not an object"]
    problems = [f"missing {name}" for name in spec.get("required", []) if name not in body]
    properties: dict[str, Any] = spec.get("properties", {})
    for name, value in body.items():
        prop = properties.get(name)
        if prop is None:
            problems.append(f"unknown property {name}")
            continue
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        if not isinstance(value, tuple(_TYPES[k] for k in kinds)):
            problems.append(f"{name}: {value!r} is not {kinds}")
        elif prop.get("format") == "uuid" and isinstance(value, str):
            try:
                uuid.UUID(value)
            except ValueError:
                problems.append(f"{name}: {value!r} is not a uuid")
        elif isinstance(value, list) and not all(isinstance(v, str) for v in value):
            problems.append(f"{name}: items must be strings")
    return problems


@dataclass
class FakeKumod:
    """kumod's `/api/admin/suspend/v1`: POST, DELETE and GET, with failures on demand."""

    suspensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)
    fail_posts: int = 0
    """The next this many POSTs answer 503."""
    failing_tenants: set[str] = field(default_factory=set)
    """POSTs for these tenants always answer 500."""
    hold_posts: asyncio.Event | None = None
    """If set, a POST that would succeed waits for it first."""
    post_waiting: asyncio.Event = field(default_factory=asyncio.Event)
    authorization: str | None = None

    async def suspend(self, request: web.Request) -> web.Response:
        """POST SuspendV1Request -> SuspendV1Response."""
        body = await self._body(request, "SuspendV1Request")
        if body is None:
            return web.Response(status=400, text="bad request")
        if self.fail_posts:
            self.fail_posts -= 1
            return web.Response(status=503, text="try later")
        if body.get("tenant") in self.failing_tenants:
            return web.Response(status=500, text="internal error")
        if self.hold_posts is not None:
            self.post_waiting.set()
            await self.hold_posts.wait()
        suspension_id = str(uuid.uuid4())
        self.suspensions[suspension_id] = body
        return web.json_response({"id": suspension_id})

    async def cancel(self, request: web.Request) -> web.Response:
        """DELETE SuspendV1CancelRequest: 200, or 404 for an unknown id."""
        body = await self._body(request, "SuspendV1CancelRequest")
        if body is None:
            return web.Response(status=400, text="bad request")
        if self.suspensions.pop(body["id"], None) is None:
            return web.Response(status=404, text="no such suspension")
        return web.Response(status=200)

    async def list_active(self, request: web.Request) -> web.Response:
        """GET: SuspendV1ListEntry objects."""
        self.requests.append(("GET", None))
        self.authorization = request.headers.get("Authorization")
        entries = [
            {
                "id": sid,
                "reason": s["reason"],
                "duration": s.get("duration") or "1h",
                "tenant": s.get("tenant"),
                "campaign": s.get("campaign"),
                "domain": s.get("domain"),
            }
            for sid, s in self.suspensions.items()
        ]
        return web.json_response(entries)

    async def _body(self, request: web.Request, name: str) -> dict[str, Any] | None:
        self.authorization = request.headers.get("Authorization")
        try:
            body = await request.json()
        except ValueError:
            body = None
        problems = violations(body, schema(name))
        self.requests.append((request.method, body))
        if problems:
            self.invalid.extend(problems)
            return None
        return body  # type: ignore[no-any-return]

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        path = "/api/admin/suspend/v1"
        app.router.add_post(path, self.suspend)
        app.router.add_delete(path, self.cancel)
        app.router.add_get(path, self.list_active)
        return app


@dataclass
class Received:
    """One POST a webhook receiver got."""

    headers: dict[str, str]
    body: bytes


@dataclass
class FakeReceiver:
    """Any HTTP endpoint taking the webhook bridge's posts."""

    received: list[Received] = field(default_factory=list)

    async def post(self, request: web.Request) -> web.Response:
        """Keep the post; answer 204."""
        self.received.append(Received(dict(request.headers), await request.read()))
        return web.Response(status=204)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        app.router.add_post("/hooks/sendguard", self.post)
        return app


async def serve(app: web.Application) -> AsyncIterator[str]:
    """Serve `app` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
