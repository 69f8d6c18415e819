"""An operator's stack, once for tests/ops: databases of its own (of the test process's
Redis), two `chordal worker`s on this host (default node names, JSON logs, spans exported
to Redis through CHORDAL_TRACE_EXPORTER), a scripted model, and Flower behind basic auth."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests.integration.conftest import (
    ROOT,
    Worker,
    _free_port,
    base_env,
    start_worker,
    wait_for_queues,
)

AUTH = ("ops", "s3cret")
#: The stack's database, where its spans go, and test_tracing's.
DB, SPANS_DB, TRACING_DB = 18, 19, 20

SCRIPT = {"responses": [
    {"role": "executor", "content": [{"type": "text", "text": "ok, summarised"}],
     "usage": {"input_tokens": 42, "output_tokens": 7}, "stop_reason": "end_turn"},
    {"role": "synthesizer", "content": [{"type": "text", "text": "what was earned"}],
     "usage": {"input_tokens": 30, "output_tokens": 5}, "stop_reason": "end_turn"},
]}


def get(url: str, auth: tuple[str, str] | None = AUTH) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return response.status, (json.loads(body) if body[:1] in (b"{", b"[")
                                     else body.decode())
    except urllib.error.HTTPError as exc:
        return exc.code, None


@dataclass
class Stack:
    client: Client
    env: dict[str, str]
    redis_url: str
    workers: list[Worker]
    flower: str

    def spans(self) -> list[dict[str, Any]]:
        r = redis.Redis.from_url(self.env["TEST_SPANS_REDIS_URL"])
        return [json.loads(x) for x in r.lrange("test:spans", 0, -1)]

    def log_lines(self) -> list[dict[str, Any]]:
        """The workers' JSON log lines (anything else in the files is Celery's banner)."""
        lines = []
        for w in self.workers:
            for text in w.log.read_text().splitlines():
                if text.startswith("{"):
                    lines.append(json.loads(text))
        return lines


@pytest.fixture(scope="package")
def stack(redis_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ops")
    base = redis_base
    for db in (DB, SPANS_DB):
        redis.Redis.from_url(f"{base}/{db}").flushdb()
    workers: list[Worker] = []
    flower: subprocess.Popen[bytes] | None = None
    try:
        script = tmp / "script.json"
        script.write_text(json.dumps(SCRIPT))
        env = base_env(f"{base}/{DB}", CHORDAL_LLM=f"scripted:{script}",
                       CHORDAL_LOG_FORMAT="json",
                       CHORDAL_TRACE_EXPORTER="tests.ops.spans:to_redis",
                       TEST_SPANS_REDIS_URL=f"{base}/{SPANS_DB}",
                       OTEL_BSP_SCHEDULE_DELAY="100")
        settings = Settings.from_env(env)
        client = Client(settings, load_registry(settings.tools.tool_modules))
        for i in range(2):
            workers.append(start_worker(env, tmp / f"worker-{i}.log", "--concurrency=1",
                                        "--queues=chordal,probe,llm"))
        for w in workers:
            wait_for_queues(client, {"chordal", "probe", "llm"}, w)
        flower_port = _free_port()
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", "flower",
             f"--port={flower_port}", "--address=127.0.0.1",
             f"--basic-auth={AUTH[0]}:{AUTH[1]}"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{flower_port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                get(f"{url}/healthcheck", None)
                break
            except OSError:
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.2)
        time.sleep(1.0)  # let it subscribe to worker events
        yield Stack(client, env, f"{base}/{DB}", workers, url)
    finally:
        if flower is not None:
            flower.terminate()
            flower.wait(timeout=10)
        for w in workers:
            w.stop()
