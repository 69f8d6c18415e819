"""Metrics fixtures: a database of our own (16 of the test process's Redis; the workers'
tests count its runs), a real prefork worker serving /metrics, and the fake Messages API."""

from __future__ import annotations

import shutil
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests import redis_server
from tests.fake_anthropic import API_KEY, FakeAnthropic, text
from tests.integration.conftest import _free_port, base_env, start_worker, wait_for_queues

TOOLS = "planner.tools.testing,tests.integration.probe"


DB, STORE_DB = 16, 17


@pytest.fixture(scope="package")
def redis_url() -> str:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="package")
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(lambda role, body: text(f"{role} answer"))
    yield server
    server.close()


class Scraper:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def text(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as reply:
            return str(reply.read().decode())

    def samples(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample: (name, labels) -> value."""
        return {(s.name, frozenset(s.labels.items())): s.value
                for family in text_string_to_metric_families(self.text())
                for s in family.samples}

    def value(self, name: str, **labels: str) -> float:
        """A sample's value (0 if absent), summed over the labels not given."""
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples().items() if n == name and want <= ls)


@pytest.fixture(scope="package")
def worker_env(redis_url: str, fake: FakeAnthropic) -> dict[str, str]:
    # A 4 s first retry delay (halved at most by the jitter), so a test can see a step that
    # a worker holds on its retry's countdown.
    return base_env(redis_url, CHORDAL_TOOL_MODULES=TOOLS,
                    CHORDAL_METRICS_PORT=str(_free_port()),
                    CHORDAL_RETRY_BACKOFF_S="4", CHORDAL_RETRY_BACKOFF_MAX_S="4",
                    ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=fake.url,
                    CHORDAL_LLM="anthropic", CHORDAL_LLM_MAX_RETRIES="0")


@pytest.fixture(scope="package")
def client(worker_env: dict[str, str]) -> Iterator[Client]:
    settings = Settings.from_env(worker_env)
    # The client checks that a model is configured before it submits a goal.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANTHROPIC_API_KEY", API_KEY)
        yield Client(settings, load_registry(settings.tools.tool_modules))


@pytest.fixture(scope="package")
def scraper(worker_env: dict[str, str], client: Client,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraper]:
    """One prefork worker with two pool processes; nothing consumes queue ``orphan``."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = start_worker(worker_env, log, "--concurrency=2", "--queues=chordal,llm")
    try:
        wait_for_queues(client, {"chordal", "llm"}, worker)
        scraper = Scraper(int(worker_env["CHORDAL_METRICS_PORT"]))
        deadline = time.monotonic() + 20
        while True:
            try:
                scraper.text()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)
        yield scraper
    finally:
        worker.stop()
        # The directory the worker chose for its pool's values files (docs/metrics.md).
        port = worker_env["CHORDAL_METRICS_PORT"]
        shutil.rmtree(Path(tempfile.gettempdir()) / f"chordal-metrics-{port}",
                      ignore_errors=True)


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
