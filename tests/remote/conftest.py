"""A real deployment for the HTTP clients: Redis (database 12 of the test process's own),
one worker subprocess, `chordal serve` as a subprocess with two API keys, and a callback
receiver that checks signatures with docs/api.md's own snippet. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from planner.client import Client
from planner.remote import RemoteClient
from planner.settings import Settings
from planner.store.records import RunEvent
from tests import redis_server
from tests.integration.conftest import (
    ROOT,
    Worker,
    _free_port,
    base_env,
    start_worker,
    wait_for_queues,
)

DB = 12
SECRET = "whsec-test-secret-0123456789"
#: Each tenant's runs are signed with its own key (CHORDAL_CALLBACK_SECRETS): alice's is
#: SECRET (also the shared CHORDAL_CALLBACK_SECRET, for runs with no tenant), bob's this.
BOB_SECRET = "whsec-bob-only-0123456789"
ALICE, BOB = "alice-secret-0123456789", "bob-secret-0123456789ab"
#: Workers call 127.0.0.1 (named exactly) and hosts under .localhost (a wildcard: their
#: loopback addresses are refused). The server also accepts plain "localhost", which the
#: workers do not: the allow-list is checked again at delivery.
WORKER_ALLOW = "127.0.0.1,*.localhost"
SERVER_ALLOW = "127.0.0.1,*.localhost,localhost"
API_DOC = (ROOT / "docs" / "api.md").read_text()


def readme_verifier() -> Callable[..., bool]:
    """docs/api.md's signature check, run as written."""
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", API_DOC, flags=re.S)
                 if "X-Chordal-Signature" in b]
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "docs/api.md", "exec"), namespace)
    return namespace["verify"]  # type: ignore[no-any-return]


@dataclass
class Hit:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float


@dataclass
class Receiver:
    """A callback receiver: records every request; answers 500 to the first
    ``failures[path]`` requests of a path, 200 after."""

    url: str
    hits: list[Hit] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = self.on(path)
            if len(hits) >= count:
                return hits
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.on(path))} request(s), wanted {count}")


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    verify = readme_verifier()
    port = _free_port()
    box = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items()}
            path, _, query = self.path.partition("?")
            hit = Hit(path, query, headers, body, verify(body, headers, SECRET),
                      time.monotonic())
            with box.lock:
                box.hits.append(hit)
                left = box.failures.get(path, 0)
                if left:
                    box.failures[path] = left - 1
            self.send_response(500 if left else (200 if hit.verified else 401))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield box
    server.shutdown()


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(env: dict[str, str], log: Path, port: int | None = None) -> Server:
    port = port or _free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "planner.cli", "serve", "--port", str(port),
             "--keepalive", "1"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return Server(url, process, log, env)
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"chordal serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


@dataclass
class Stack:
    """The deployment the HTTP clients reach, and a Redis Client beside it for checks."""

    server: Server
    worker: Worker
    client: Client  # Redis, for looking behind the API
    env: dict[str, str]  # the workers' (Redis and tools)
    r: redis.Redis

    @property
    def url(self) -> str:
        return self.server.url

    def remote(self, key: str = ALICE) -> RemoteClient:
        return RemoteClient(self.url, key)

    def events(self, run_id: str) -> list[RunEvent]:
        return self.client.store.events(run_id, count=100_000)

    def cli_env(self, key: str | None = ALICE, **extra: str) -> dict[str, str]:
        """A CLI that reaches the server only: no tool modules, and a Redis URL that
        nothing answers (any use of it would fail)."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CHORDAL_", "ANTHROPIC_"))}
        env.update({"CHORDAL_API_URL": self.url, "CHORDAL_REDIS_URL": "redis://127.0.0.1:1/0",
                    "PYTHONPATH": str(ROOT), **extra})
        if key is not None:
            env["CHORDAL_API_KEY"] = key
        return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("remote")
    r = redis.Redis.from_url(redis_server.url(DB))
    r.flushdb()
    env = base_env(redis_server.url(DB), CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_CALLBACK_SECRET=SECRET, CHORDAL_CALLBACK_ALLOW=WORKER_ALLOW,
                   CHORDAL_CALLBACK_SECRETS=json.dumps({"alice": SECRET, "bob": BOB_SECRET}),
                   CHORDAL_CALLBACK_BACKOFF_S="0.3", CHORDAL_CALLBACK_ATTEMPTS="3",
                   CHORDAL_RECONCILE_INTERVAL_S="1")
    settings = Settings.from_env(env)
    client = Client(settings)
    worker = start_worker(env, tmp / "worker.log", "--concurrency=2", "--queues=chordal,llm")
    server_env = {**env, "CHORDAL_API_KEYS": f"alice={ALICE},bob={BOB}",
                  "CHORDAL_CALLBACK_ALLOW": SERVER_ALLOW,
                  "CHORDAL_API_RATE_LIMIT_PER_MIN": "100000"}
    for name in ("CHORDAL_CALLBACK_SECRET", "CHORDAL_CALLBACK_SECRETS"):
        server_env.pop(name)  # the workers sign; the API needs no secret
    server = None
    try:
        wait_for_queues(client, {"chordal", "llm"}, worker)
        server = start_server(server_env, tmp / "server.log")
        yield Stack(server, worker, client, env, r)
    finally:
        if server is not None:
            server.stop()
        worker.stop()


def sleep_plan(seconds: float, steps: int = 1) -> dict[str, Any]:
    return {"goal": f"sleep {seconds}", "steps": [
        {"id": f"s{i}", "tool": "sleep", "args": {"seconds": seconds}} for i in range(steps)]}


ECHO_PLAN: dict[str, Any] = {"goal": "say hello", "steps": [
    {"id": "a", "tool": "echo", "args": {"value": "hel"}},
    {"id": "b", "tool": "echo", "args": {"value": "lo"}},
    {"id": "join", "tool": "concat", "args": {"items": [{"$ref": "a"}, {"$ref": "b"}]}}]}


def ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
