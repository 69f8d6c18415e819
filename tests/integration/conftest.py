"""Engine fixtures: a real Redis, real worker processes, a real client. No eager mode.

Redis: database 9 of this test process's own Redis (tests/redis_server.py). RabbitMQ-brokered
tests run when 127.0.0.1:5672 answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.store.records import RunEvent, RunReport
from planner.tools import load_registry
from tests import redis_server
from tests.fake_anthropic import API_KEY, FakeAnthropic, text

ROOT = Path(__file__).resolve().parents[2]
TOOL_MODULES = "planner.tools.testing,tests.integration.probe"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


_free_port = redis_server.free_port


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@contextlib.contextmanager
def virtual_host(name: str) -> Iterator[str]:
    """The URL of a RabbitMQ virtual host of this session's own, when rabbitmqctl can make
    one: the queues' names are fixed (chordal, llm, ...), and another suite's workers on
    the same broker (the rabbitmq-brokered integration tests, another checkout's tests)
    would take this one's messages. Without rabbitmqctl, the default virtual host."""
    if not _reachable("127.0.0.1", 5672):
        pytest.skip("RabbitMQ is not reachable on 127.0.0.1:5672")
    vhost = f"chordal-test-{os.getpid()}-{name}"
    ctl = shutil.which("rabbitmqctl")
    try:
        if ctl is None:
            raise OSError("no rabbitmqctl")
        for args in (("add_vhost", vhost), ("set_permissions", "-p", vhost, "guest",
                                            ".*", ".*", ".*")):
            subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        yield AMQP_URL
        return
    try:
        yield AMQP_URL.rstrip("/") + "/" + vhost
    finally:
        subprocess.run([ctl, "delete_vhost", vhost], capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def redis_base() -> str:
    """``redis://host:port`` of the Redis the engine tests use (no database number); the
    probe's database is flushed, and tests.integration.probe records publishes from this
    process (roots) too."""
    base = redis_server.base()
    os.environ["TEST_PROBE_REDIS_URL"] = f"{base}/{PROBE_DB}"
    redis.Redis.from_url(os.environ["TEST_PROBE_REDIS_URL"]).flushdb()
    return base


PROBE_DB = 7


def base_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CHORDAL_", "ANTHROPIC_"))}
    env["TEST_PROBE_REDIS_URL"] = redis_url.rsplit("/", 1)[0] + f"/{PROBE_DB}"
    env.update({
        "CHORDAL_REDIS_URL": redis_url,
        "CHORDAL_TOOL_MODULES": TOOL_MODULES,
        "CHORDAL_RETRY_BACKOFF_S": "0.05",
        "CHORDAL_RETRY_BACKOFF_MAX_S": "0.2",
        # Tools that ignore the soft time limit are killed 1 s later, not 30 s.
        "CHORDAL_HARD_LIMIT_GRACE_S": "1",
        "PYTHONPATH": str(ROOT),
    })
    env.update(extra)
    return env


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes: no cleanup, no acks."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


CHORDAL_WORKER = (sys.executable, "-m", "planner.cli", "worker")


def start_worker(env: dict[str, str], log: Path, *args: str,
                 command: tuple[str, ...] = CHORDAL_WORKER) -> Worker:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "--loglevel=INFO", *args],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            # A test process killed (a timeout) leaves no worker behind to slow later runs.
            preexec_fn=redis_server.die_with_parent if sys.platform == "linux" else None)
    return Worker(process, log)


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers a test starts (``workers.append(start_worker(...))``), stopped after it."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGCONT)  # a test that failed mid-pause
        worker.stop()


def wait_for_queues(client: Client, queues: set[str], worker: Worker,
                    timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while client.missing_queues(queues, timeout=0.5):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{worker.log.read_text()[-3000:]}")


@dataclass
class Engine:
    """A client and the worker(s) behind it, on one broker."""

    name: str
    client: Client
    env: dict[str, str]
    redis: redis.Redis

    def published(self, run_id: str) -> list[dict[str, Any]]:
        """Messages published for this run (by the client and the workers)."""
        probe = redis.Redis.from_url(os.environ["TEST_PROBE_REDIS_URL"])
        rows = [json.loads(x) for x in probe.lrange("chordal:test:published", 0, -1)]
        return [r for r in rows if r["id"] and r["id"].startswith(f"{run_id}.")]

    def run(self, plan: dict[str, Any], timeout: float = 60, **kw: Any) -> RunReport:
        run_id = self.client.submit(plan, **kw)
        report = self.client.wait(run_id, timeout)
        assert report.ended, f"run timed out: {report}"
        return report

    def events(self, run_id: str) -> list[RunEvent]:
        return self.client.store.events(run_id, count=100_000)


def _make_engine(name: str, redis_url: str, tmp: Path, broker: str | None,
                 **extra: str) -> Iterator[Engine]:
    if broker:
        extra["CHORDAL_BROKER_URL"] = broker
    env = base_env(redis_url, **extra)
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    settings = Settings.from_env(env)
    client = Client(settings, load_registry(settings.tools.tool_modules))
    # Explicit queues: "orphan" stays unconsumed, for the no-worker test.
    worker = start_worker(env, tmp / f"worker-{name}.log", "--concurrency=4",
                          "--queues=chordal,probe,llm")
    try:
        wait_for_queues(client, {"chordal", "probe", "llm"}, worker)
        yield Engine(name, client, env, r)
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def engine(redis_base: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Redis broker, Redis run store, one prefork worker with 4 processes."""
    yield from _make_engine("redis", f"{redis_base}/9", tmp_path_factory.mktemp("redis"),
                            None)


@pytest.fixture(scope="session")
def rabbit_engine(redis_base: str, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Engine]:
    """RabbitMQ broker (a virtual host of this test process's own), Redis run store and
    results."""
    with virtual_host("engine") as url:
        yield from _make_engine("rabbitmq", f"{redis_base}/8",
                                tmp_path_factory.mktemp("rabbit"), url)


@pytest.fixture(params=["redis", "rabbitmq"])
def any_engine(request: pytest.FixtureRequest) -> Engine:
    """Parametrises a test over both brokers."""
    name = "engine" if request.param == "redis" else "rabbit_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def fake_claude() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(lambda role, body: text(f"{role} answer"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def model_engine(redis_base: str, tmp_path_factory: pytest.TempPathFactory,
                 fake_claude: FakeAnthropic) -> Iterator[Engine]:
    """Workers whose model is Claude through the real SDK, served by the fake server.
    The SDK does not retry here (CHORDAL_LLM_MAX_RETRIES=0): the Celery task must."""
    # The client checks that a model is configured before it submits a goal.
    os.environ["ANTHROPIC_API_KEY"] = API_KEY
    yield from _make_engine("model", f"{redis_base}/6", tmp_path_factory.mktemp("model"),
                            None, ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=fake_claude.url,
                            CHORDAL_LLM_MAX_RETRIES="0", CHORDAL_LLM="anthropic")
