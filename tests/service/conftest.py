"""A real ``chordal serve`` (a uvicorn subprocess) on a free port, a real worker and the
fake Messages API, against database 15 of the test process's Redis. No mocks but the model.

Two servers: ``api`` with two tenants' keys (alice, bob; and ``fuzz`` for schemathesis), a
worker behind it and a model; ``open_api``, started with ``--no-auth`` on loopback, loads
a tool whose queue no worker consumes (so it is never ready) and allows 2 runs a minute.
"""

from __future__ import annotations

import json
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

from planner.client import Client
from planner.settings import Settings
from tests import redis_server
from tests.fake_anthropic import API_KEY, FakeAnthropic, text, tool_use
from tests.integration.conftest import (
    ROOT,
    _free_port,
    base_env,
    start_worker,
    wait_for_queues,
)

DB = 15
TOOLS = "planner.tools.testing"
#: Event streams one key may hold open on the ``api`` server.
MAX_STREAMS = 3
#: ``ops`` is an admin key (CHORDAL_API_ADMINS): it sees every run.
KEYS = {"alice": "alice-secret-0123456789", "bob": "bob-secret-0123456789",
        "fuzz": "fuzz-secret-0123456789", "ops": "ops-secret-0123456789"}
#: What the fake planner plans for a goal: a step that takes a while (so a run can be
#: cancelled while it runs), then an answer.
GOAL_PLAN = {"goal": "ignored", "steps": [
    {"id": "lookup", "tool": "sleep", "args": {"seconds": 4, "value": {"rent": 1150}}},
    {"id": "total", "tool": "calculate",
     "args": {"expression": "r * 12", "variables": {"r": {"$ref": "lookup.rent"}}}}]}
QUICK_PLAN = {"goal": "ignored", "steps": [{"id": "only", "tool": "echo",
                                            "args": {"value": 1}}]}


def model(role: str, body: dict[str, Any]) -> dict[str, Any]:
    if role == "planner":
        first = json.dumps(body["messages"][0]["content"])
        return tool_use("submit_plan", GOAL_PLAN if "Lisbon" in first else QUICK_PLAN)
    return text(f"{role} answer")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    client: Client
    headers: dict[str, dict[str, str]] = field(default_factory=dict)

    def http(self, who: str | None = "alice", **kw: Any) -> httpx.Client:
        headers = dict(self.headers.get(who, {})) if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(env: dict[str, str], log: Path, *args: str) -> Server:
    port = _free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "planner.cli", "serve", "--port", str(port), *args],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"chordal serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    settings = Settings.from_env(env)
    return Server(url, process, log, env, Client(settings))


@pytest.fixture(scope="session")
def fake_model() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(model)
    yield server
    server.close()


@pytest.fixture(scope="session")
def api(tmp_path_factory: pytest.TempPathFactory, fake_model: FakeAnthropic
        ) -> Iterator[Server]:
    redis.Redis.from_url(redis_server.url(DB)).flushdb()
    tmp = tmp_path_factory.mktemp("service")
    env = base_env(
        redis_server.url(DB), CHORDAL_TOOL_MODULES=TOOLS,
        CHORDAL_API_KEYS=",".join(f"{n}={s}" for n, s in KEYS.items()),
        CHORDAL_MAX_REQUEST_BYTES="65536", CHORDAL_API_RATE_LIMIT_PER_MIN="100000",
        CHORDAL_API_MAX_STREAMS=str(MAX_STREAMS), CHORDAL_API_ADMINS="ops",
        CHORDAL_CALLBACK_ALLOW="hooks.example.com,*.example.org",
        ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=fake_model.url,
        CHORDAL_LLM="anthropic", CHORDAL_LLM_MAX_RETRIES="0")
    worker = start_worker(env, tmp / "worker.log", "--concurrency=2")
    server = start_server(env, tmp / "serve.log", "--keepalive", "1")
    server.headers = {n: {"Authorization": f"Bearer {s}"} for n, s in KEYS.items()}
    try:
        wait_for_queues(server.client, {"chordal", "llm"}, worker)
        yield server
    finally:
        server.stop()
        worker.stop()


@pytest.fixture(scope="session")
def open_api(tmp_path_factory: pytest.TempPathFactory, api: Server) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("open")
    env = base_env(redis_server.url(DB), CHORDAL_TOOL_MODULES=f"{TOOLS},tests.service.lonely",
                   CHORDAL_API_RATE_LIMIT_PER_MIN="2")
    server = start_server(env, tmp / "serve.log", "--no-auth")
    try:
        yield server
    finally:
        server.stop()


def wait_status(server: Server, run_id: str, statuses: set[str], timeout: float = 30
                ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.http() as http:
        while True:
            report = http.get(f"/v1/runs/{run_id}").json()
            if report["status"] in statuses or time.monotonic() > deadline:
                return dict(report)
            time.sleep(0.1)
