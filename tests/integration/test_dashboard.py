"""The live status page in a real headless Chromium, on a running worker's topics."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp

from tests.integration.browser import Browser
from tests.integration.conftest import produce, read_topic, run_cli
from tests.integration.test_detection import bad_list

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aiokafka import AIOKafkaProducer

    from tests.integration.conftest import Sandbox, WorkerProcess

SCREENSHOT_DIR = os.environ.get("SENDGUARD_SCREENSHOT_DIR")
"""Where to keep the page's screenshot as well (docs/images for the README)."""


def _keep(image: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Dashboard:
    """`sendguard dashboard` as a real process on a free port."""

    def __init__(self, sandbox: Sandbox, env: dict[str, str] | None = None) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = sandbox.data_dir.parent / "dashboard.log"
        sandbox.data_dir.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603  # the test's own interpreter
                [sys.executable, "-m", "processor", "dashboard", "--port", str(self.port)],
                env={**sandbox.env(), **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=sandbox.data_dir.parent,
            )

    async def wait_ready(self) -> None:
        """Until it answers HTTP (the topics may still be read)."""
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(self.url + "/api/commands") as response:
                        if response.status in {200, 401}:
                            return
                except aiohttp.ClientError:
                    pass
                assert self._process.poll() is None, self._log.read_text()[-3000:]
                await asyncio.sleep(0.2)
        raise AssertionError(self._log.read_text()[-3000:])

    def stop(self) -> int:
        """SIGTERM, then its exit status."""
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return self._process.wait()


def _dashboard(sandbox: Sandbox, env: dict[str, str] | None = None) -> Iterator[Dashboard]:
    dashboard = Dashboard(sandbox, env)
    try:
        yield dashboard
    finally:
        dashboard.stop()


async def test_the_page_shows_rows_pauses_a_chart_and_live_updates(
    sandbox: Sandbox, worker: WorkerProcess, producer: AIOKafkaProducer, tmp_path: Path
) -> None:
    """Rows, the paused list and a chart load; a pause made while the page is open shows live.

    The chart of a row draws its rates and its policy's thresholds; no reload is needed.
    """
    await worker.start()
    topic = sandbox.topic("delivery-events")
    now = time.time()
    await produce(producer, topic, bad_list("acme", "bad", range(400), now))
    healthy = [e for e in bad_list("acme", "fine", range(300), now) if e["type"] != "bounce"]
    await produce(producer, topic, healthy)
    await read_topic(sandbox, sandbox.topic("control"), until=bool)
    await read_topic(
        sandbox,
        sandbox.topic("health"),
        until=lambda m: {h["campaign_id"] for h in m} >= {"bad", "fine"},
    )
    locked = await asyncio.to_thread(
        run_cli, sandbox, "lock", "--tenant", "acme", "--campaign", "bad", "--by", "ops"
    )
    assert locked.returncode == 0, locked.stderr
    for dashboard in _dashboard(sandbox):
        await dashboard.wait_ready()
        async with Browser(dashboard.url + "/", tmp_path / "profile") as page:
            await page.wait_for("document.body.dataset.loaded === '1'")
            await page.wait_for("document.body.dataset.live === '1'")
            keys = await page.evaluate(
                "[...document.querySelectorAll('#campaigns tbody tr')].map(r => r.dataset.key)"
            )
            assert keys == ["acme:bad", "acme:fine"]
            statuses = await page.evaluate(
                "[...document.querySelectorAll('#campaigns tbody tr')].map(r => r.dataset.status)"
            )
            assert statuses == ["paused", "healthy"]
            await page.wait_for(
                "document.querySelector('tr[data-key=\"acme:bad\"]').lastChild.textContent"
                " === 'yes'"
            )
            evidence = await page.evaluate("document.querySelector('#paused tbody').innerText")
            assert "acme:bad" in evidence
            assert "hard_bounce/" in evidence

            await page.evaluate("document.querySelector('tr[data-key=\"acme:bad\"]').click()")
            await page.wait_for("document.querySelectorAll('#chart polyline.rate').length > 0")
            thresholds = await page.evaluate(
                "[...document.querySelectorAll('#chart line.threshold')].map(l => l.dataset.metric)"
            )
            assert sorted(thresholds) == ["complaint", "hard_bounce", "unsubscribe"]

            await produce(producer, topic, bad_list("acme", "late", range(400), time.time()))
            await page.wait_for("Number(document.body.dataset.updates || 0) > 0")
            await page.wait_for(
                "document.querySelector('#campaigns tr[data-key=\"acme:late\"]')"
                "?.dataset.status === 'paused'"
            )
            await page.wait_for("document.querySelector('#commands tbody').rows.length >= 2")
            shot = tmp_path / "dashboard.png"
            await page.screenshot(shot)
    image = await asyncio.to_thread(shot.read_bytes)
    assert len(image) > 10_000
    if SCREENSHOT_DIR:
        await asyncio.to_thread(_keep, image, Path(SCREENSHOT_DIR) / "dashboard.png")


async def test_the_page_asks_for_basic_auth_when_configured(sandbox: Sandbox) -> None:
    """With a user and password set, every path answers 401 without them and 200 with them."""
    env = {"SENDGUARD_DASHBOARD_USER": "ops", "SENDGUARD_DASHBOARD_PASSWORD": "s3cret"}
    for dashboard in _dashboard(sandbox, env):
        await dashboard.wait_ready()
        async with aiohttp.ClientSession() as session:
            for path in ("/", "/api/campaigns", "/api/commands"):
                async with session.get(dashboard.url + path) as response:
                    assert response.status == 401, path
                    assert response.headers["WWW-Authenticate"].startswith("Basic")
            wrong = {"Authorization": _basic("ops", "nope")}
            async with session.get(dashboard.url + "/api/commands", headers=wrong) as response:
                assert response.status == 401
            right = {"Authorization": _basic("ops", "s3cret")}
            async with session.get(dashboard.url + "/api/campaigns", headers=right) as response:
                assert response.status == 200
                assert (await response.json())["rows"] == []
