"""Inline steps (CHORDAL_INLINE_STEPS, planner/engine/inline.py) with real workers: a chain
gives the same results, events and attempts as through the broker, hops through the broker
at the bound, retries a transient failure through the broker, is repaired when its worker
dies mid-step, and shows its inline steps as Flower rows.

Celery's time limits apply to a whole task, so a step is inlined only when the task's soft
limit has the step's own ``timeout_s`` left: each chain here starts with a head step whose
time limit is larger than the steps after it (an ``echo`` step has 300 s)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.fixture
def inline(env: dict[str, str], workers: list[Worker], tmp_path: Path) -> Engine:
    client = client_for(env)
    worker = start_worker(env, tmp_path / "inline.log", "--concurrency=2")
    workers.append(worker)
    wait_for_queues(client, {"chordal"}, worker)
    return Engine("inline", client, env, redis.Redis.from_url(env["CHORDAL_REDIS_URL"]))


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
        inline: Engine, engine: Engine) -> None:
    fast = inline.run(chain(3))
    slow = engine.run(chain(3))
    assert fast.status == slow.status == "succeeded", (fast, slow)
    assert {s: r.output for s, r in fast.steps.items()} \
        == {s: r.output for s, r in slow.steps.items()} == {f"s{i}": 0 for i in range(4)}
    assert {s: r.attempts for s, r in fast.steps.items()} == {f"s{i}": 1 for i in range(4)}
    assert shape(inline, fast.run_id) == shape(engine, slow.run_id)
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
    published = step_messages(inline, report.run_id)
    # s1..s3 inline (CHORDAL_INLINE_MAX=3); s4 is published. (s4 and s5 are echo steps:
    # their own 300 s limit never leaves a task time for the next, so s5 is published too.)
    assert published[:2] == ["s0", "s4"] and "s1" not in published \
        and "s3" not in published, published
    assert started_counts(inline.events(report.run_id)) == {f"s{i}": 1 for i in range(6)}


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
