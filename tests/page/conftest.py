"""The run page against real parts: ``chordal serve`` (uvicorn) with API keys, a real
Celery worker, database 14 of the test process's Redis, the scripted model of the
README's demo, and Debian's Chromium driven by Playwright for Python (``CHORDAL_CHROMIUM``,
else ``chromium`` on the PATH; Playwright's own browsers are not used)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests import redis_server
from tests.integration.conftest import ROOT, Worker, _free_port, base_env, start_worker
from tests.travel import DEMO_SCRIPT as DEMO
from tests.travel import travel_services

DB = 14
#: The synthesizer's answer to any run but the demo's.
ANSWER = "Every lookup is in."
#: alice's secret: the key the page is given. bob is another tenant.
KEY = "page-test-alice-0123456789abcdef"
OTHER_KEY = "page-test-bob-0123456789abcdef00"


@dataclass
class Server:
    """``chordal serve`` in a subprocess, restartable on the same port."""

    env: dict[str, str]
    port: int
    log: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "planner.cli", "serve", "--port", str(self.port),
                 "--keepalive", "1", *self.args],
                env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)

    def wait_ready(self, worker: Worker, timeout: float = 60) -> None:
        """Until ``/readyz`` says a live worker consumes every queue."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            dead = self.process is None or self.process.poll() is not None
            if dead or worker.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"not ready:\n{self.log.read_text()[-2000:]}\n"
                                   f"{worker.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: every open connection (the page's event stream) drops at once."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Served:
    server: Server
    worker: Worker

    @property
    def url(self) -> str:
        return self.server.url

    def create(self, body: dict[str, Any], key: str = KEY) -> str:
        reply = httpx.post(f"{self.url}/v1/runs", json=body, timeout=10,
                           headers={"Authorization": f"Bearer {key}"})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["run_id"])

    def report(self, run_id: str) -> dict[str, Any]:
        reply = httpx.get(f"{self.url}/v1/runs/{run_id}", timeout=10,
                          headers={"Authorization": f"Bearer {KEY}"})
        reply.raise_for_status()
        return dict(reply.json())

    def wait(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (report := self.report(run_id))["status"] not in ("succeeded", "failed",
                                                                 "cancelled"):
            assert time.monotonic() < deadline, f"run {run_id} did not end: {report}"
            time.sleep(0.1)
        return report


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    redis.Redis.from_url(redis_server.url(DB)).flushdb()
    tmp = tmp_path_factory.mktemp("page")
    with travel_services(_free_port()) as travel:
        # The README demo's recorded model and real tools (the agency's lookups take a
        # second or so: the page shows them running side by side), and an answer for the
        # other runs (with a model, the synthesizer answers every run).
        script = json.loads(DEMO.read_text("utf-8"))
        script["responses"].append({"role": "synthesizer", "content": [
            {"type": "text", "text": ANSWER}], "usage": {"input_tokens": 50,
                                                         "output_tokens": 6}})
        model = travel.script(tmp / "model.json", script)
        env = base_env(redis_server.url(DB), CHORDAL_TOOL_MODULES="planner.tools.testing",
                       CHORDAL_LLM=f"scripted:{model}",
                       CHORDAL_API_KEYS=f"alice={KEY},bob={OTHER_KEY}", **travel.env)
        worker = start_worker(env, tmp / "worker.log", "--concurrency=4")
        server = Server(env, _free_port(), tmp / "server.log")
        server.start()
        try:
            server.wait_ready(worker)
            yield Served(server, worker)
        finally:
            server.stop()
            worker.stop()


def chromium_path() -> str | None:
    found = os.environ.get("CHORDAL_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    return found if found and Path(found).exists() else None


# Package, not session: Playwright's sync API keeps an asyncio loop running on this thread
# while it is open, and later packages' tests call asyncio.run (or Playwright) themselves.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.fail("no Chromium: apt-get install chromium (.ci/run does), or set "
                    "CHORDAL_CHROMIUM")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@dataclass
class Tab:
    """A browser tab and what it did: every request (URL and headers) and every script
    error or Content-Security-Policy violation it reported."""

    page: Any
    base: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.base + path)

    def enter_key(self, key: str = KEY) -> None:
        self.page.fill("#api-key", key)
        self.page.click("#key-form button[type=submit]")

    def requested(self, part: str) -> list[tuple[str, dict[str, str]]]:
        return [(u, h) for u, h in self.requests if part in u]

    def attr(self, selector: str, name: str) -> str | None:
        return self.page.get_attribute(selector, name)  # type: ignore[no-any-return]

    def fill_of(self, step: str) -> str:
        """The computed fill colour of a step's node in the DAG."""
        return str(self.page.eval_on_selector(
            f'g.node[data-step="{step}"] rect.box', "el => getComputedStyle(el).fill"))

    def wait_status(self, step: str, status: str, timeout: float = 20) -> None:
        self.page.wait_for_selector(f'g.node[data-step="{step}"][data-status="{status}"]',
                                    timeout=timeout * 1000)

    def wait_run(self, status: str, timeout: float = 30) -> None:
        self.page.wait_for_selector(f'body[data-run-status="{status}"]', state="attached",
                                    timeout=timeout * 1000)


def new_tab(browser: Any, base: str, **context: Any) -> tuple[Any, Tab]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB",
                              timezone_id="UTC", **context)
    page = ctx.new_page()
    tab = Tab(page, base)
    page.on("request", lambda r: tab.requests.append((r.url, r.headers)))
    page.on("pageerror", lambda e: tab.problems.append(f"script error: {e}"))

    def console(message: Any) -> None:
        # A 401 before the key is entered is expected; a CSP violation or an uncaught
        # error is not.
        if message.type == "error" and "Failed to load resource" not in message.text:
            tab.problems.append(f"console: {message.text}")

    page.on("console", console)
    return ctx, tab


def check_key_hygiene(tab: Tab, key: str) -> None:
    """The key never appears in a URL; every API request that carried one used the
    Authorization header."""
    for url, _ in tab.requests:
        assert key not in url, url
    for url, headers in tab.requested("/v1/"):
        auth = headers.get("authorization")
        assert auth is None or auth.startswith("Bearer "), url


@pytest.fixture
def tab(browser: Any, served: Served) -> Iterator[Tab]:
    ctx, tab = new_tab(browser, served.url)
    yield tab
    ctx.close()
    check_key_hygiene(tab, KEY)
    assert not tab.problems, tab.problems


def until(page: Any, expression: str, arg: Any = None, timeout: float = 30) -> None:
    """Wait until ``expression`` (a JS function of ``arg``) is truthy on ``page``, asked
    from here: Playwright's own ``wait_for_function`` re-polls through ``eval``, which the
    page's Content-Security-Policy (script-src 'self') refuses whenever the first look
    was not already true."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression, arg):
        assert time.monotonic() < deadline, f"not true within {timeout} s: {expression}"
        time.sleep(0.05)
