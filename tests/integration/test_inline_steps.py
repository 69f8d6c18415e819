"""Inline steps (CHORDAL_INLINE_STEPS, planner/engine/inline.py) with real workers: a chain
gives the same results, events and attempts as through the broker, hops through the broker
at the bound, retries a transient failure through the broker, is repaired when its worker
dies mid-step, and shows its inline steps as Flower rows. An inline step keeps its own time
limits (armed by the worker, workers/deadline.py): past its timeout it is recorded timed
out and retried, and past its hard stop it fails outside its tool, as its own task would.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from planner.wire import STEP_TASK
from tests.integration.conftest import Engine, Worker, base_env, start_worker, wait_for_queues
from tests.integration.helpers import plan, started_counts, step
from tests.integration.test_flower import _flower, tasks_of

DB = 26
OFF_DB = 19  # the inline-off engine the inline one is compared with
FAST = {"CHORDAL_STEP_LEASE_S": "2", "CHORDAL_RECONCILE_INTERVAL_S": "0.5",
        "CHORDAL_DISPATCH_GRACE_S": "2", "CHORDAL_LOST_GRACE_S": "2",
        "CHORDAL_INLINE_STEPS": "1", "CHORDAL_INLINE_MAX": "3"}


def head(sid: str = "h", timeout_s: float = 7_200) -> dict[str, Any]:
    return {**step(sid, value=0), "timeout_s": timeout_s}


def chain(n: int) -> dict[str, Any]:
    """A head and ``n`` echo steps, each passing the one before it on."""
    steps = [head("s0")]
    steps += [step(f"s{i}", deps=[f"s{i - 1}"], value={"$ref": f"s{i - 1}"})
              for i in range(1, n + 1)]
    return plan(*steps)


@pytest.fixture
def env(redis_base: str) -> dict[str, str]:
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    return base_env(url, **FAST)


@pytest.fixture
def inline(env: dict[str, str], workers: list[Worker], tmp_path: Path) -> Engine:
    return engine_of(env, workers, tmp_path, "inline")


@pytest.fixture
def off(redis_base: str, workers: list[Worker], tmp_path: Path) -> Engine:
    """The same engine with inline steps off: every step a message of its own."""
    url = f"{redis_base}/{OFF_DB}"
    redis.Redis.from_url(url).flushdb()
    return engine_of(base_env(url, **{**FAST, "CHORDAL_INLINE_STEPS": "0"}), workers, tmp_path,
                     "off")


def engine_of(env: dict[str, str], workers: list[Worker], tmp_path: Path, name: str
              ) -> Engine:
    client = client_for(env)
    worker = start_worker(env, tmp_path / f"{name}.log", "--concurrency=2")
    workers.append(worker)
    wait_for_queues(client, {"chordal"}, worker)
    return Engine(name, client, env, redis.Redis.from_url(env["CHORDAL_REDIS_URL"]))


def client_for(env: dict[str, str]) -> Client:
    settings = Settings.from_env(env)
    return Client(settings, load_registry(settings.tools.tool_modules))


def step_messages(engine: Engine, run_id: str) -> list[str]:
    """The steps whose chordal.step messages were published for the run, in order."""
    return [m["id"].split(".")[2] for m in engine.published(run_id)
            if m.get("task") == STEP_TASK]


def shape(engine: Engine, run_id: str) -> list[tuple[str, str | None]]:
    """The run's events as (type, step), without times or workers."""
    return [(e.type, e.step) for e in engine.events(run_id)]


def test_a_chain_runs_inline_with_the_results_events_and_attempts_of_the_broker_path(
        inline: Engine, off: Engine) -> None:
    fast = inline.run(chain(3))
    slow = off.run(chain(3))
    assert fast.status == slow.status == "succeeded", (fast, slow)
    assert {s: r.output for s, r in fast.steps.items()} \
        == {s: r.output for s, r in slow.steps.items()} == {f"s{i}": 0 for i in range(4)}
    assert {s: r.attempts for s, r in fast.steps.items()} == {f"s{i}": 1 for i in range(4)}
    assert shape(inline, fast.run_id) == shape(off, slow.run_id)
    assert step_messages(off, slow.run_id) == [f"s{i}" for i in range(4)]
    # Only the head's message went through the broker; each inline step began under the
    # id its message would have had.
    assert step_messages(inline, fast.run_id) == ["s0"]
    for i in range(1, 4):
        state = inline.client.store.step_state(fast.run_id, f"s{i}")
        assert state.task == f"{fast.run_id}.1.s{i}"
        assert [a.task for a in state.history] == [f"{fast.run_id}.1.s{i}"]


def test_a_chain_longer_than_the_bound_hops_through_the_broker_at_the_bound(
        inline: Engine) -> None:
    report = inline.run(chain(5))
    assert report.status == "succeeded", report
    # s1..s3 inline (CHORDAL_INLINE_MAX=3); s4 is published, and s5 runs in its task.
    assert step_messages(inline, report.run_id) == ["s0", "s4"]
    assert started_counts(inline.events(report.run_id)) == {f"s{i}": 1 for i in range(6)}


def test_a_chain_of_steps_with_equal_timeouts_runs_inline(inline: Engine) -> None:
    """Each step has its own stops, so a task whose step has the same timeout as the next
    still runs it (Celery's limits, counted from the task's start, would not allow it)."""
    report = inline.run(plan(*(step(f"e{i}", deps=[f"e{i - 1}"] if i else [], value=i)
                               for i in range(3))))
    assert report.status == "succeeded", report
    assert step_messages(inline, report.run_id) == ["e0"]


def timed_out(engine: Engine) -> tuple[Any, list[str]]:
    """A step past its timeout after a head, and what its attempts recorded."""
    slow = {**step("slow", "sleep", ["h"], seconds=30, value="late"), "timeout_s": 1,
            "max_retries": 1, "on_failure": "skip"}
    report = engine.run(plan(head(), slow, step("after", deps=["slow"], value=1)))
    history = engine.client.store.step_state(report.run_id, "slow").history
    return report, [a.error.type if a.error else "" for a in history]


def test_an_inline_step_past_its_timeout_times_out_and_retries_as_its_own_task_would(
        inline: Engine, off: Engine) -> None:
    fast, fast_errors = timed_out(inline)
    slow, slow_errors = timed_out(off)
    assert fast.status == slow.status == "succeeded", (fast, slow)
    assert fast.steps["slow"].status == slow.steps["slow"].status == "skipped"
    assert fast_errors == slow_errors == ["Timeout", "Timeout"], (fast_errors, slow_errors)
    # The first attempt ran inline (no message); its retry went through the broker.
    assert step_messages(inline, fast.run_id).count("slow") == 1
    assert step_messages(off, slow.run_id).count("slow") == 2
    assert shape(inline, fast.run_id) == shape(off, slow.run_id)


def test_an_inline_step_that_ignores_its_soft_limit_is_stopped_and_its_policy_applies(
        inline: Engine) -> None:
    stuck = {**step("stuck", "stubborn", ["h"], seconds=30), "on_failure": "skip"}
    report = inline.run(plan(head(), stuck, step("after", deps=["stuck"], value=1)))
    assert report.status == "succeeded", report
    state = report.steps["stuck"]
    assert state.status == "skipped" and state.attempts == 2  # max_retries=1
    assert state.error is not None and state.error.type == "TaskFailed"
    assert step_messages(inline, report.run_id).count("stuck") == 1  # the retry's


def test_a_transient_failure_of_an_inline_step_retries_through_the_broker(
        inline: Engine) -> None:
    report = inline.run(plan(head(), step("f", "fail", ["h"], times=1, value="ok"),
                             step("after", deps=["f"], value={"$ref": "f"})))
    assert report.status == "succeeded", report
    assert report.steps["f"].attempts == 2 and report.steps["after"].output == "ok"
    # The first attempt ran inline; its retry is a message of its own, under the same id.
    assert step_messages(inline, report.run_id).count("f") == 1
    history = inline.client.store.step_state(report.run_id, "f").history
    assert [a.task for a in history] == [f"{report.run_id}.1.f"] * 2


@pytest.mark.slow
def test_a_worker_killed_during_an_inline_step_is_repaired(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = client_for(env)
    first = start_worker(env, tmp_path / "first.log", "--concurrency=1")
    workers.append(first)
    wait_for_queues(client, {"chordal"}, first)
    run_id = client.submit(plan(head(timeout_s=7_200),
                                step("slow", "sleep", ["h"], seconds=3, value="done"),
                                step("after", deps=["slow"], value={"$ref": "slow"})))
    deadline = time.monotonic() + 30
    while client.store.step_state(run_id, "slow").status != "running":
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert client.store.step_state(run_id, "slow").task == f"{run_id}.1.slow"  # inline
    first.kill()
    second = start_worker(env, tmp_path / "second.log", "--concurrency=1")
    workers.append(second)
    report = client.wait(run_id, timeout=60)
    assert report.status == "succeeded", report
    assert report.steps["slow"].attempts == 2 and report.steps["after"].output == "done"
    repaired = [(e.data["kind"], e.data["step"]) for e in client.store.events(run_id)
                if e.type == "run.repaired"]
    assert ("lease_expired", "slow") in repaired, repaired


@pytest.mark.slow
def test_inline_steps_are_flower_rows_named_as_steps(inline: Engine) -> None:
    flower = contextmanager(_flower)(inline.env)
    with flower as url:
        report = inline.run(chain(2))
        assert report.status == "succeeded", report
        ours = tasks_of(url, report.run_id, 3, "SUCCESS")
        for i in (1, 2):
            row = ours[f"{report.run_id}.1.s{i}"]
            assert row["name"] == f"chordal.step echo s{i}", row
            assert row["state"] == "SUCCESS" and report.run_id in row["args"]


def test_a_step_in_a_queue_the_worker_does_not_consume_is_published(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = client_for(env)
    worker = start_worker(env, tmp_path / "chordal-only.log", "--concurrency=1",
                          "--queues=chordal")
    workers.append(worker)
    wait_for_queues(client, {"chordal"}, worker)
    engine = Engine("inline", client, env, redis.Redis.from_url(env["CHORDAL_REDIS_URL"]))
    run_id = client.submit(plan(head(), step("o", "orphan", ["h"], value=1)))
    deadline = time.monotonic() + 30
    while "o" not in step_messages(engine, run_id):
        assert time.monotonic() < deadline, "the orphan step was never published"
        time.sleep(0.1)
    assert client.store.step_state(run_id, "o").status == "pending"  # no worker took it
    client.cancel(run_id)
