"""A headless Chromium driven over the DevTools protocol (aiohttp's websocket; no driver needed).

scripts/test.sh installs Debian's `chromium`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import pytest

if TYPE_CHECKING:
    from pathlib import Path
    from types import TracebackType

_LISTENING = re.compile(rb"DevTools listening on ws://127\.0\.0\.1:(\d+)/")


class Browser:
    """One headless Chromium with one page, opened at `url`."""

    def __init__(self, url: str, profile: Path) -> None:
        self._url = url
        self._profile = profile
        self._log = profile / "chromium.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._socket: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> Self:
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if binary is None:
            pytest.fail(
                "chromium is missing: scripts/test.sh installs it (apt-get install chromium)"
            )
        self._profile.mkdir(parents=True, exist_ok=True)
        # Its log to a file, not a pipe: a pipe nobody drains would block the browser once full.
        with self._log.open("wb") as log:  # opened once, before the browser runs
            self._process = subprocess.Popen(  # noqa: S603, ASYNC220  # our fixed binary and flags
                [
                    binary,
                    "--headless=new",
                    "--no-sandbox",  # runs as root in CI
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1400,900",
                    "--remote-debugging-address=127.0.0.1",
                    "--remote-debugging-port=0",
                    f"--user-data-dir={self._profile}",
                    self._url,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        port = await self._devtools_port()
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(t for t in targets if t["type"] == "page")
        self._socket = await self._session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        return self

    async def _devtools_port(self) -> int:
        assert self._process is not None
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            found = _LISTENING.search(self._log.read_bytes())
            if found:
                return int(found.group(1))
            if self._process.poll() is not None:
                break
            await asyncio.sleep(0.1)
        pytest.fail(f"chromium did not start: {self._log.read_text(errors='replace')[-2000:]}")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._socket is not None:
            await self._socket.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None:
            self._process.kill()
            await asyncio.to_thread(self._process.wait)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result."""
        assert self._socket is not None
        call_id = next(self._ids)
        await self._socket.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = await self._socket.receive_json(timeout=30)
            if message.get("id") == call_id:
                if "error" in message:
                    msg = f"{method}: {message['error']}"
                    raise AssertionError(msg)
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            msg = f"{expression}: {json.dumps(result['exceptionDetails'])[:500]}"
            raise AssertionError(msg)
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 30) -> Any:
        """Poll until the expression is truthy; its value."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                msg = f"never true in the page: {expression}"
                raise AssertionError(msg)
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> None:
        """Save the page as a PNG."""
        result = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(result["data"]))
