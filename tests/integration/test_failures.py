"""Retries, failure policies, timeouts, and a worker killed mid-step."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests.integration.conftest import (
    Engine,
    base_env,
    start_worker,
    wait_for_queues,
)
from tests.integration.helpers import plan, started_counts, step


def fail_step(sid: str, times: int, kind: str = "transient", policy: str = "replan",
              retries: int | None = None, **kw) -> dict:
    s = step(sid, "fail", times=times, kind=kind, value=f"{sid}-ok", **kw)
    s["on_failure"] = policy
    if retries is not None:
        s["max_retries"] = retries
    return s


def test_transient_errors_are_retried_until_success(any_engine: Engine):
    report = any_engine.run(plan(fail_step("flaky", 2, retries=3),
                                 step("after", value={"$ref": "flaky"})))
    assert report.status == "succeeded", report
    flaky = report.steps["flaky"]
    assert flaky.attempts == 3 and flaky.output == "flaky-ok"
    retries = [e for e in any_engine.events(report.run_id) if e.type == "step.retrying"]
    assert len(retries) == 2
    assert report.answer == {"after": "flaky-ok"}


def test_transient_errors_stop_at_max_retries(engine: Engine):
    report = engine.run(plan(fail_step("flaky", -1, retries=2, policy="fail")))
    assert report.status == "failed"
    assert report.steps["flaky"].attempts == 3
    assert report.steps["flaky"].error.transient is True


def test_permanent_errors_are_not_retried(engine: Engine):
    report = engine.run(plan(fail_step("broken", 1, kind="permanent", retries=5,
                                       policy="fail")))
    assert report.status == "failed"
    broken = report.steps["broken"]
    assert broken.attempts == 1 and broken.status == "failed"
    assert broken.error.type == "PermanentError"
    assert report.error.step == "broken"


def test_skip_policy_runs_dependents_with_null(any_engine: Engine):
    report = any_engine.run(plan(
        fail_step("optional", -1, kind="permanent", policy="skip"),
        step("other", value="o"),
        step("uses", value={"got": {"$ref": "optional"}, "other": {"$ref": "other"}}),
    ))
    assert report.status == "succeeded", report
    assert report.steps["optional"].status == "skipped"
    assert report.steps["optional"].error.type == "PermanentError"
    assert report.steps["uses"].output == {"got": None, "other": "o"}


def test_fail_policy_fails_the_run_at_once_and_starts_nothing_more(engine: Engine):
    report = engine.run(plan(
        fail_step("boom", -1, kind="permanent", policy="fail"),
        step("slow", "sleep", seconds=1.0),
        step("later", deps=["slow"]),
        step("never", deps=["boom"]),
    ))
    assert report.status == "failed"
    assert report.error.step == "boom" and "boom" in report.error.message
    time.sleep(1.5)  # let "slow" finish: its dependents must still not start
    after = engine.client.report(report.run_id)
    assert after.status == "failed"
    assert after.steps["later"].status == "cancelled"  # abandoned, never started
    assert after.steps["later"].attempts == 0
    assert after.steps["never"].status == "cancelled"


def test_replan_without_a_model_ends_the_run_with_what_it_earned(engine: Engine):
    report = engine.run(plan(step("kept", value=1),
                             fail_step("lost", -1, kind="permanent", deps=["kept"]),
                             fail_step("lost2", -1, kind="permanent", deps=["kept"])))
    assert report.status == "failed" and report.partial
    error = report.error
    assert error.policy == "replan" and error.step in ("lost", "lost2")
    assert "replanning needs a model" in error.message
    assert error.completed == ["kept"]
    assert report.steps["kept"].output == 1
    assert report.answer == {"partial": {"kept": 1}}


def test_a_step_that_times_out_is_retried_then_its_policy_applies(engine: Engine):
    slow = step("slow", "sleep", seconds=10)
    slow.update(timeout_s=0.5, max_retries=1, on_failure="skip")
    t0 = time.monotonic()
    report = engine.run(plan(slow, step("next", value={"$ref": "slow"})), timeout=30)
    assert time.monotonic() - t0 < 8
    assert report.status == "succeeded"
    assert report.steps["slow"].status == "skipped"
    assert report.steps["slow"].attempts == 2
    assert report.steps["slow"].error.type == "Timeout"
    assert report.answer == {"next": None}


@pytest.fixture
def kill_env(redis_base: str) -> Iterator[dict[str, str]]:
    url = f"{redis_base}/10"
    redis.Redis.from_url(url).flushdb()
    # A short visibility timeout, so the killed worker's step comes back in seconds.
    yield base_env(url, CHORDAL_VISIBILITY_TIMEOUT_S="10")


@pytest.mark.slow
def test_worker_killed_mid_step_loses_nothing(kill_env: dict[str, str], tmp_path: Path):
    settings = Settings.from_env(kill_env)
    tools = load_registry(settings.tools.tool_modules)
    client = Client(settings, tools)
    victim = start_worker(kill_env, tmp_path / "victim.log", "--concurrency=1")
    rescuer = None
    try:
        wait_for_queues(client, {"chordal"}, victim)
        # Step timeouts must stay under the short visibility timeout (validation says so).
        steps = [step("first", value="f"),
                 step("long", "sleep", seconds=3, value="done", deps=["first"]),
                 step("last", value={"$ref": "long"})]
        for s in steps:
            s["timeout_s"] = 6
        run_id = client.submit(plan(*steps))
        deadline = time.monotonic() + 20
        while client.report(run_id).steps["long"].status != "running":
            assert time.monotonic() < deadline, "step never started"
            time.sleep(0.05)
        victim.kill()
        assert client.report(run_id).steps["long"].status == "running"

        # A worker with no --queues consumes every Chordal queue.
        rescuer = start_worker(kill_env, tmp_path / "rescuer.log")
        wait_for_queues(client, tools.queues | {"chordal"}, rescuer)
        report = client.wait(run_id, timeout=60)
        assert report.status == "succeeded", report
        assert report.answer == {"last": "done"}
        assert report.steps["long"].attempts == 2
        events = client.store.events(run_id, count=10_000)
        finished = [e.step for e in events if e.type == "step.finished"]
        assert sorted(finished) == ["first", "last", "long"]  # each succeeded once
        assert started_counts(events) == {"first": 1, "long": 2, "last": 1}
    finally:
        victim.stop()
        if rescuer:
            rescuer.stop()


def test_a_tool_that_ignores_its_soft_limit_is_killed_and_its_policy_applies(engine: Engine):
    stuck = step("stuck", "stubborn", seconds=30)
    stuck["on_failure"] = "skip"
    t0 = time.monotonic()
    report = engine.run(plan(stuck, step("after", value={"$ref": "stuck"})), timeout=60)
    assert time.monotonic() - t0 < 20
    assert report.status == "succeeded", report
    s = report.steps["stuck"]
    assert s.status == "skipped" and s.attempts == 2  # max_retries=1
    assert s.error.type == "TaskFailed"
    assert report.answer == {"after": None}
