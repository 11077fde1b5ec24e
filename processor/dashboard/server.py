"""`sendguard dashboard`: campaigns, pauses and rates, live, from the topics (read-only).

A background task reads the compacted health topic and the control topic into a
`StatusBoard`; pages of rows are served as JSON, changes are pushed as server-sent events, and
each campaign's rate history feeds its chart. Nothing is stored: a restart reads the topics again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
from collections import deque
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from processor.adapters.topic_reader import CaughtUp, read_topics
from processor.errors import ReadError, SendguardError
from processor.services.status_board import StatusBoard, row_summary
from schemas.control import PauseCommand, ResumeCommand
from schemas.health import CampaignStatus, HealthSnapshot
from schemas.topics import TopicRole

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from aiohttp.typedefs import Middleware

    from processor.adapters.topic_reader import TopicMessage
    from processor.config.settings import Settings
    from processor.domain.policy import PolicyBook
    from processor.services.status_board import CampaignRow

log = logging.getLogger(__name__)

PAGE_LIMIT_MAX = 500
RECENT_COMMANDS = 100
CLIENT_QUEUE = 1000
"""Changes buffered per page; a page that falls further behind is told to reload."""
KEEPALIVE_S = 15.0
LOCK_REFRESH_S = 10.0
"""How often the operator locks of paused campaigns are read again (they live in Redis)."""


class Board:
    """The page's view of the topics, and the pages listening for its changes."""

    def __init__(self, policy_book: Callable[[], PolicyBook]) -> None:
        self.board = StatusBoard()
        self.commands: deque[dict[str, Any]] = deque(maxlen=RECENT_COMMANDS)
        self.caught_up = asyncio.Event()
        self.failed: str | None = None
        self._listeners: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._policy_book = policy_book

    def feed(self, message: TopicMessage) -> None:
        """Apply one topic record and tell the listeners what changed."""
        if not message.value:
            return
        try:
            data = json.loads(message.value)
            if data.get("command") in {"pause", "resume"}:
                model = PauseCommand if data["command"] == "pause" else ResumeCommand
                command = model.model_validate(data)
                row = self.board.apply_control(command)
                self.commands.appendleft(command.model_dump(mode="json"))
            else:
                row = self.board.apply_health(HealthSnapshot.model_validate(data))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
            log.debug("record not shown: %s", type(exc).__name__)
            return
        if self.caught_up.is_set():
            self.notify_row(row)

    def notify_row(self, row: CampaignRow) -> None:
        """Tell the listening pages that a row changed."""
        self._notify({"type": "row", "row": row_summary(row)})

    def listen(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of the changes from now on (None: fell behind, reload)."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(CLIENT_QUEUE)
        self._listeners.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        """Stop sending to a page that left."""
        self._listeners.discard(queue)

    def _notify(self, change: dict[str, Any]) -> None:
        for queue in list(self._listeners):
            try:
                queue.put_nowait(change)
            except asyncio.QueueFull:
                self._listeners.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)

    def thresholds(self, row: CampaignRow) -> dict[str, float]:
        """Pause thresholds of the campaign's policy for the charted (1 h) window, by metric."""
        policy = self._policy_book().for_campaign(row.tenant_id, row.campaign_id)
        return {r.metric.value: r.pause for r in policy.rules if r.window == "1h"}


_BOARD: Final = web.AppKey("board", Board)


async def _follow(settings: Settings, board: Board) -> None:
    topics = [settings.topic(TopicRole.CONTROL), settings.topic(TopicRole.HEALTH)]
    try:
        async for item in read_topics(settings, topics, follow=True):
            if isinstance(item, CaughtUp):
                board.caught_up.set()
                log.info("status page caught up", extra={"campaigns": len(board.board)})
            else:
                board.feed(item)
    except ReadError as exc:
        board.failed = str(exc)
        board.caught_up.set()
        log.critical("status page cannot read the topics", extra={"error": str(exc)})


async def _refresh_locks(
    board: Board, look_up: Callable[[list[CampaignRow]], Awaitable[None]]
) -> None:
    await board.caught_up.wait()
    while True:
        paused = board.board.rows(statuses=[CampaignStatus.PAUSED])
        before = {row.key: row.locked for row in paused}
        try:
            await look_up(paused)
        except SendguardError as exc:
            log.warning("operator locks not read", extra={"error": str(exc)})
        for row in paused:
            if row.locked != before[row.key]:
                board.notify_row(row)
        await asyncio.sleep(LOCK_REFRESH_S)


def _basic_auth(user: str | None, password: str | None) -> Middleware:
    expected = None
    if user is not None and password is not None:
        expected = base64.b64encode(f"{user}:{password}".encode()).decode()

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if expected is not None:
            given = request.headers.get("Authorization", "").removeprefix("Basic ")
            if not hmac.compare_digest(given.encode(), expected.encode()):
                return web.Response(
                    status=401, headers={"WWW-Authenticate": 'Basic realm="sendguard"'}
                )
        response = await handler(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    return check


_CSP = "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
"""The page is one self-contained document: no third-party script, style or font."""


async def _index(_request: web.Request) -> web.Response:
    page = resources.files("processor.dashboard").joinpath("page.html").read_text("utf-8")
    return web.Response(
        text=page,
        content_type="text/html",
        headers={"Content-Security-Policy": _CSP},
    )


async def _campaigns(request: web.Request) -> web.Response:
    board = request.app[_BOARD]
    await board.caught_up.wait()
    query = request.query
    statuses = None
    if query.get("status"):
        try:
            statuses = [CampaignStatus(s) for s in query["status"].split(",") if s]
        except ValueError:
            raise web.HTTPBadRequest(text="unknown status") from None
    rows = board.board.rows(tenant_id=query.get("tenant") or None, statuses=statuses)
    needle = query.get("q", "").strip().lower()
    if needle:
        rows = [r for r in rows if needle in f"{r.tenant_id}:{r.campaign_id}".lower()]
    try:
        offset = max(0, int(query.get("offset", "0")))
        limit = min(PAGE_LIMIT_MAX, max(1, int(query.get("limit", "100"))))
    except ValueError:
        raise web.HTTPBadRequest(text="offset and limit are whole numbers") from None
    counts: dict[str, int] = {}
    for row in board.board.rows():
        counts[row.status.value] = counts.get(row.status.value, 0) + 1
    return web.json_response(
        {
            "total": len(rows),
            "offset": offset,
            "rows": [row_summary(r) for r in rows[offset : offset + limit]],
            "counts": counts,
            "failed": board.failed,
        }
    )


async def _campaign(request: web.Request) -> web.Response:
    board = request.app[_BOARD]
    await board.caught_up.wait()
    row = board.board.row(request.match_info["tenant"], request.match_info["campaign"])
    if row is None:
        raise web.HTTPNotFound(text="no such campaign")
    history = sorted(row.history, key=lambda point: point.as_of)
    return web.json_response(
        {
            "row": row_summary(row),
            "thresholds": board.thresholds(row),
            "history": [
                {"as_of": p.as_of.isoformat(), "rates": {m.value: r for m, r in p.rates.items()}}
                for p in history
            ],
            "timeline": [{"at": at.isoformat(), "status": s.value} for at, s in row.timeline],
        }
    )


async def _commands(request: web.Request) -> web.Response:
    board = request.app[_BOARD]
    await board.caught_up.wait()
    return web.json_response({"commands": list(board.commands)})


async def _events(request: web.Request) -> web.StreamResponse:
    board = request.app[_BOARD]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    queue = board.listen()
    try:
        await response.write(b": connected\n\n")
        while True:
            try:
                change = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if change is None:
                await response.write(b"event: reload\ndata: {}\n\n")
                break
            await response.write(f"data: {json.dumps(change)}\n\n".encode())
    except ConnectionResetError:
        log.debug("a status page left")
    finally:
        board.forget(queue)
    return response


def create_dashboard_app(
    settings: Settings,
    policy_book: Callable[[], PolicyBook],
    look_up_locks: Callable[[list[CampaignRow]], Awaitable[None]] | None = None,
) -> web.Application:
    """The status page's app; it reads the topics (and the paused campaigns' locks) while up."""
    user = settings.dashboard_user
    password = (
        settings.dashboard_password.get_secret_value() if settings.dashboard_password else None
    )
    app = web.Application(middlewares=[_basic_auth(user, password)])
    board = Board(policy_book)
    app[_BOARD] = board

    async def reading(_app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_follow(settings, board), name="dashboard reader")]
        if look_up_locks is not None:
            tasks.append(asyncio.create_task(_refresh_locks(board, look_up_locks)))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.cleanup_ctx.append(reading)
    app.router.add_get("/", _index)
    app.router.add_get("/api/campaigns", _campaigns)
    app.router.add_get("/api/campaigns/{tenant}/{campaign}", _campaign)
    app.router.add_get("/api/commands", _commands)
    app.router.add_get("/events", _events)
    return app


async def serve_dashboard(app: web.Application, host: str, port: int) -> None:
    """Serve `app` until cancelled (SIGTERM or Ctrl-C)."""
    runner = web.AppRunner(app, handle_signals=True)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("status page listening", extra={"host": host, "port": port})
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
