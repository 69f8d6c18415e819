"""Leases and the reconciler with real workers: a worker killed mid-step, a client that
knows tools its workers lack, and the stuck-runs listing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests.integration.conftest import (
    ROOT,
    TOOL_MODULES,
    Worker,
    base_env,
    start_worker,
    wait_for_queues,
)
from tests.integration.helpers import plan, step

DB = 3
FAST = {"CHORDAL_STEP_LEASE_S": "2", "CHORDAL_RECONCILE_INTERVAL_S": "0.5",
        "CHORDAL_DISPATCH_GRACE_S": "2"}


@pytest.fixture
def env(redis_base: str) -> dict[str, str]:
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    return base_env(url, **FAST)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


def client_for(env: dict[str, str]) -> Client:
    settings = Settings.from_env(env)
    return Client(settings, load_registry(settings.tools.tool_modules))


def test_a_step_whose_worker_was_killed_resumes_on_another_within_seconds(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = client_for(env)
    first = start_worker(env, tmp_path / "first.log", "--concurrency=1")
    workers.append(first)
    wait_for_queues(client, {"chordal"}, first)
    run_id = client.submit(plan(step("slow", "sleep", seconds=3, value="done"),
                                step("after", "echo", ["slow"], value={"$ref": "slow"})))
    deadline = time.monotonic() + 30
    while client.store.step_state(run_id, "slow").status != "running":
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    first.kill()  # the whole worker: no errback, no ack, no redelivery for hours
    killed_at = time.monotonic()
    second = start_worker(env, tmp_path / "second.log", "--concurrency=1")
    workers.append(second)
    report = client.wait(run_id, timeout=60)
    assert report.status == "succeeded", report
    assert report.steps["after"].output == "done"
    assert report.steps["slow"].attempts == 2
    # The lease (2 s) lapsed, the second worker's reconciler took the lock over (the dead
    # one's lapses within 5 s) and re-drove the step: seconds, not the visibility timeout.
    assert time.monotonic() - killed_at < 30
    repaired = [e.data for e in client.store.events(run_id) if e.type == "run.repaired"]
    assert [(r["kind"], r["step"]) for r in repaired] == [("lease_expired", "slow")]
    error = client.store.step_state(run_id, "slow").error
    assert error is not None and error.type == "WorkerLost"


def test_chordal_run_warns_when_no_live_worker_has_a_step_s_tool(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency=1")
    workers.append(worker)
    client = client_for(env)
    wait_for_queues(client, {"chordal"}, worker)
    deadline = time.monotonic() + 20
    while not client.workers():  # its first record comes when it is ready
        assert time.monotonic() < deadline, worker.log.read_text()[-2000:]
        time.sleep(0.1)
    [info] = client.workers()
    assert "chordal" in info.queues and "echo" in info.tools
    assert info.modules == TOOL_MODULES.split(",")

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan({**step("me", "whoami"), "on_failure": "fail"})))
    knows_more = dict(env, CHORDAL_TOOL_MODULES=TOOL_MODULES + ",tests.integration.extra_tools")
    result = subprocess.run([sys.executable, "-m", "planner.cli", "run", "--plan", str(path),
                             "--wait", "--json", "--timeout", "60"], env=knows_more,
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "warning: step 'me': no live worker on queue 'chordal' has tool 'whoami'" in \
        result.stderr
    assert "CHORDAL_TOOL_MODULES" in result.stderr
    # Submitted all the same: the worker fails the step with the same advice, never hangs.
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "failed"
    assert report["steps"]["me"]["error"]["type"] == "ToolMissing"


def test_stuck_runs_are_listed_with_what_they_wait_for(
        env: dict[str, str], tmp_path: Path) -> None:
    client = client_for(env)  # no worker at all: nothing moves
    run_id = client.submit(plan(step("a", "echo", value=1)))
    time.sleep(2.2)
    [stuck] = client.stuck()
    assert stuck.run_id == run_id and stuck.quiet_s is not None and stuck.quiet_s >= 2
    assert stuck.waiting_for == "steps a that cannot start"
    result = subprocess.run([sys.executable, "-m", "planner.cli", "runs", "--stuck",
                             "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["run_id"] == run_id
    refused = subprocess.run([sys.executable, "-m", "planner.cli", "runs", "--stuck",
                              "--status", "running"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "--stuck" in refused.stderr
