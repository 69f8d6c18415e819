"""``async def`` tools on real workers (prefork and threads pools): awaited on the process's
one event loop, reused across calls; cancelled at their time limit like a sync tool, the
loop serving the next call; their transient errors retried."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests.integration.conftest import TOOL_MODULES, base_env, start_worker, wait_for_queues

DB = 10  # databases of session-wide fixtures are taken (see tests/*/conftest.py)


@pytest.fixture(scope="module", params=["prefork", "threads"])
def pool_client(request: pytest.FixtureRequest, redis_base: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Client]]:
    pool = request.param
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, CHORDAL_TOOL_MODULES=f"{TOOL_MODULES},tests.integration.async_tools")
    settings = Settings.from_env(env)
    client = Client(settings, load_registry(settings.tools.tool_modules))
    # prefork with one process: every call below runs in the same process, on its loop.
    worker = start_worker(env, tmp_path_factory.mktemp(pool) / "worker.log",
                          f"--pool={pool}", "--concurrency=1" if pool == "prefork"
                          else "--concurrency=3")
    try:
        wait_for_queues(client, {"chordal"}, worker)
        yield pool, client
    finally:
        worker.stop()


def test_an_async_tool_runs_to_success_on_the_process_loop(
        pool_client: tuple[str, Client]) -> None:
    _, client = pool_client
    plan = {"goal": "async", "steps": [
        {"id": "a", "tool": "nap", "args": {"seconds": 0.05, "value": 1}},
        {"id": "b", "tool": "nap", "args": {"seconds": 0.05, "value": {"$ref": "a.value"}}},
    ]}
    report = client.wait(client.submit(plan), timeout=60)
    assert report.status == "succeeded", report.model_dump_json(indent=1)
    a, b = report.steps["a"].output, report.steps["b"].output
    assert (a["value"], b["value"]) == (1, 1)
    # One loop per process, reused (not a loop per call), and the coroutine ran in the
    # step's log context.
    assert (a["pid"], a["loop"]) == (b["pid"], b["loop"])
    assert a["log"]["step_id"] == "a" and a["log"]["attempt"] == 1
    assert a["log"]["run_id"] == report.run_id


def test_an_async_tool_past_its_timeout_is_cancelled_and_the_loop_serves_on(
        pool_client: tuple[str, Client], tmp_path: Path) -> None:
    pool, client = pool_client
    marker = tmp_path / "slow.txt"
    steps = [
        {"id": "first", "tool": "nap", "args": {"seconds": 0}},
        {"id": "slow", "tool": "nap", "args": {"seconds": 4, "marker": str(marker)},
         "timeout_s": 1, "max_retries": 1, "on_failure": "skip", "depends_on": ["first"]},
        {"id": "after", "tool": "nap", "args": {"seconds": 0}, "depends_on": ["slow"]},
    ]
    if pool == "prefork":  # the threads pool cannot cut a sync tool short
        steps.append({"id": "sync", "tool": "sleep", "args": {"seconds": 4},
                      "timeout_s": 1, "max_retries": 1, "on_failure": "skip"})
    report = client.wait(client.submit({"goal": "timeouts", "steps": steps}), timeout=60)
    assert report.status == "succeeded", report.model_dump_json(indent=1)
    slow = report.steps["slow"]
    assert slow.status == "skipped" and slow.attempts == 2
    assert slow.error is not None
    assert (slow.error.type, slow.error.transient, slow.error.message) == (
        "Timeout", True, "attempt 2 timed out after 1.0 s")
    if pool == "prefork":
        sync = report.steps["sync"]
        assert sync.status == "skipped" and sync.attempts == 2 and sync.error is not None
        assert sync.error.model_dump(exclude={"traceback"}) == \
            slow.error.model_dump(exclude={"traceback"})
    # The same process and loop ran the call after the timeouts.
    first, after = report.steps["first"].output, report.steps["after"].output
    assert (first["pid"], first["loop"]) == (after["pid"], after["loop"])
    # Both attempts were cancelled, and neither went on to finish on the loop.
    time.sleep(4.5)  # past the end of a 4 s nap that was not cancelled
    assert marker.read_text().split() == ["cancelled", "cancelled"]


def test_an_async_tool_transient_error_is_retried(pool_client: tuple[str, Client]) -> None:
    _, client = pool_client
    plan = {"goal": "flaky", "steps": [
        {"id": "f", "tool": "flaky", "args": {"times": 2, "value": "ok"}, "max_retries": 3}]}
    report = client.wait(client.submit(plan), timeout=60)
    assert report.status == "succeeded", report.model_dump_json(indent=1)
    assert report.steps["f"].output == "ok" and report.steps["f"].attempts == 3
