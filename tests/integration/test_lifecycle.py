"""The run lifecycle's seams, with real workers (issue #17, items 5-8 and 10): a step whose
task is revoked (Flower's Terminate), a rejected run that is retried, a cancelled run
retried while its step still runs, a worker paused past its lease and resumed, and the
attempts of a step across retries. Fencing by attempt number: an outcome from an attempt
that is not the current one is recorded as ``superseded`` and changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from planner import RunOptions
from planner.client import Client
from planner.errors import Conflict
from planner.settings import Settings
from planner.tools import load_registry
from tests.integration.conftest import ROOT, Worker, base_env, start_worker, wait_for_queues
from tests.integration.probe import tracked_log

DB = 2
FAST = {"CHORDAL_STEP_LEASE_S": "2", "CHORDAL_RECONCILE_INTERVAL_S": "0.5",
        "CHORDAL_DISPATCH_GRACE_S": "2"}


def client_for(env: dict[str, str]) -> Client:
    settings = Settings.from_env(env)
    return Client(settings, load_registry(settings.tools.tool_modules))


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60) -> float:
    """Poll ``check`` until it holds; return the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def one_step(sid: str = "s", on_failure: str = "fail", **args: Any) -> dict[str, Any]:
    return {"goal": "lifecycle", "steps": [
        {"id": sid, "tool": "tracked", "args": args, "on_failure": on_failure}]}


def chordal(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planner.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def event_types(client: Client, run_id: str, step: str) -> list[str]:
    return [e.type for e in client.store.events(run_id) if e.step == step]


@pytest.fixture
def env(redis_base: str) -> dict[str, str]:
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    return base_env(url, **FAST)


def started(env: dict[str, str], workers: list[Worker], log: Path, *args: str) -> Client:
    client = client_for(env)
    worker = start_worker(env, log, *args)
    workers.append(worker)
    wait_for_queues(client, {"chordal"}, worker)
    return client


# -- item 5: a revoked step ends ------------------------------------------------------------

@pytest.mark.parametrize("policy", ["fail", "replan"])
def test_a_step_terminated_from_celery_ends_its_run_by_its_failure_policy_and_retries(
        redis_base: str, workers: list[Worker], tmp_path: Path, policy: str) -> None:
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    # The reconciler's default timing: the step's lease (30 s) would lapse long after the
    # run must have ended.
    env = base_env(url)
    client = started(env, workers, tmp_path / "worker.log", "--concurrency=2")
    run_id = client.submit(one_step(on_failure=policy, seconds=60, later_s=0))
    wait_until("the step to run", lambda: client.store.step_state(run_id, "s").status
               == "running")
    # What Flower's "Terminate" button does.
    client.app.control.revoke(f"{run_id}.1.s", terminate=True)
    revoked_at = time.monotonic()
    report = client.wait(run_id, timeout=20)
    took = time.monotonic() - revoked_at
    assert report.status == "failed", (report, workers[0].log.read_text()[-3000:])
    assert took < 15, f"the run ended {took:.1f} s after the revoke"
    step = report.steps["s"]
    assert step.status == "failed" and step.error is not None
    assert step.error.type == "Revoked" and "terminated" in step.error.message
    assert [(a.status, a.task) for a in step.history] == [("revoked", f"{run_id}.1.s")]
    # replan: with no model, the replanner ends the run with what it earned.
    assert report.error is not None and report.error.policy == policy
    assert report.error.cause is not None and report.error.cause.type == "Revoked"

    # A re-drive gets a task id of its own: a worker discards the revoked one for hours.
    assert client.retry(run_id) == ["s"]
    again = client.wait(run_id, timeout=30)
    assert again.status == "succeeded", again
    assert again.steps["s"].output == {"attempt": 2}
    first, second = again.steps["s"].history
    assert (first.status, second.status) == ("revoked", "succeeded")
    assert second.task and second.task.startswith(f"{run_id}.1.s.")  # a new id


# -- item 6: a rejected run never runs ------------------------------------------------------

def test_a_rejected_run_cannot_be_retried_by_client_or_cli(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = started(env, workers, tmp_path / "worker.log", "--concurrency=2")
    run_id = client.submit(one_step(seconds=0), RunOptions(approve=True))
    assert client.report(run_id).status == "awaiting_approval"
    client.reject(run_id, "not this one")
    with pytest.raises(Conflict, match="rejected"):
        client.retry(run_id)
    refused = chordal(env, "retry", run_id)
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert "rejected" in refused.stderr
    cancelled = client.submit(one_step(seconds=0), RunOptions(approve=True))
    assert client.cancel(cancelled)
    with pytest.raises(Conflict, match="cancelled before it was approved"):
        client.retry(cancelled)
    time.sleep(2)  # whatever was wrongly published would have run by now
    for rid in (run_id, cancelled):
        report = client.report(rid)
        assert report.status == "cancelled"
        assert report.steps["s"].attempts == 0 and report.steps["s"].status == "cancelled"
        assert tracked_log(rid, "s") == []  # the tool never ran
        assert "run.retried" not in [e.type for e in client.store.events(rid)]


# -- item 7: cancel, then retry while the step still runs -----------------------------------

def test_retry_after_cancel_waits_for_the_attempt_still_running(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = started(env, workers, tmp_path / "worker.log", "--concurrency=2")
    run_id = client.submit(one_step(seconds=4, later_s=0.2))
    wait_until("the step to run", lambda: tracked_log(run_id, "s") != [])
    assert client.cancel(run_id)
    assert client.retry(run_id) == ["s"]
    report = client.wait(run_id, timeout=60)
    log = tracked_log(run_id, "s")
    # Never two copies at once: the retry waited for the first attempt to end.
    assert [e["running"] for e in log if e["event"] == "start"] == [1, 1], log
    assert report.status == "succeeded", report
    step = report.steps["s"]
    assert step.attempts == 2 and step.output == {"attempt": 2}  # the current attempt's
    first, second = step.history
    assert (first.attempt, first.status, first.outcome) == (1, "superseded", "succeeded")
    assert (second.attempt, second.status) == (2, "succeeded")
    superseded = [e for e in client.store.events(run_id) if e.type == "step.superseded"]
    assert [(e.step, e.data["attempt"]) for e in superseded] == [("s", 1)]
    finished = [e for e in client.store.events(run_id) if e.type == "step.finished"]
    assert [(e.step, e.status) for e in finished] == [("s", "succeeded")]


# -- item 8: a worker paused past its lease, then resumed -----------------------------------

def test_a_paused_worker_s_late_result_is_superseded(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = started(env, workers, tmp_path / "paused.log", "--concurrency=1")
    run_id = client.submit(one_step(seconds=2, later_s=5))
    wait_until("the step to run", lambda: tracked_log(run_id, "s") != [])
    paused = workers[0]
    os.killpg(paused.process.pid, signal.SIGSTOP)
    try:
        other = start_worker(env, tmp_path / "other.log", "--concurrency=1")
        workers.append(other)
        # Its lease lapses (2 s), the other worker's reconciler takes the step over.
        wait_until("a second attempt", lambda: len(tracked_log(run_id, "s")) >= 2,
                   timeout=90)
    finally:
        os.killpg(paused.process.pid, signal.SIGCONT)
    # The paused attempt's tool returns now, while attempt 2 still runs: fenced.
    wait_until("the late result", lambda: "step.superseded" in event_types(client, run_id, "s"))
    state = client.store.step_state(run_id, "s")
    assert state.status == "running" and state.attempts == 2
    report = client.wait(run_id, timeout=60)
    assert report.status == "succeeded", report
    step = report.steps["s"]
    assert step.output == {"attempt": 2} and step.attempts == 2
    assert [(a.attempt, a.status) for a in step.history] == [(1, "superseded"),
                                                            (2, "succeeded")]
    assert step.history[0].outcome == "succeeded"
    assert step.history[1].worker == step.worker
    types = event_types(client, run_id, "s")
    assert types.count("step.finished") == 1 and types.count("step.superseded") == 1


# -- item 10: attempts keep counting across retries -----------------------------------------

def test_retries_keep_counting_attempts(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = started(env, workers, tmp_path / "worker.log", "--concurrency=2")
    # Fails for good on attempts 1 and 2 of this step, succeeds on the 3rd.
    run_id = client.submit({"goal": "g", "steps": [
        {"id": "x", "tool": "fail", "on_failure": "fail",
         "args": {"times": 2, "kind": "permanent", "value": "third time"}}]})
    assert client.wait(run_id, timeout=30).status == "failed"
    client.retry(run_id)
    second = client.wait(run_id, timeout=30)
    assert second.status == "failed" and second.steps["x"].attempts == 2
    client.retry(run_id)
    third = client.wait(run_id, timeout=30)
    assert third.status == "succeeded", third
    step = third.steps["x"]
    assert step.attempts == 3 and step.output == "third time"
    assert [(a.attempt, a.status) for a in step.history] == [
        (1, "failed"), (2, "failed"), (3, "succeeded")]
    assert all(a.error is not None for a in step.history[:2])
    started_events = [e.data for e in client.store.events(run_id) if e.type == "step.started"]
    assert started_events == [1, 2, 3]
