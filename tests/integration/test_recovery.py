"""A worker that dies between recording an outcome and acting on it loses nothing: the
redelivered message finishes the job. Simulated by writing the outcome, then delivering."""

from __future__ import annotations

import time

import pytest

from planner.engine.dispatch import step_message
from planner.errors import Conflict, Unavailable
from planner.language.plan import Plan
from planner.store.records import ErrorRecord
from tests.integration.conftest import Engine
from tests.integration.helpers import plan, started_counts, step


def staged(engine: Engine, p: dict) -> tuple[str, object]:
    """A running run whose messages were never published."""
    compiled = engine.client.compile(p)
    store = engine.client.store
    run_id = store.create_run(compiled.plan.goal, compiled.plan, compiled.deps)
    store.start_run(run_id)
    return run_id, compiled


def deliver(engine: Engine, compiled, run_id: str, step_id: str) -> None:
    engine.client.runtime.publish([step_message(compiled, run_id, 1, step_id)])


def test_succeeded_step_redelivered_publishes_what_it_unlocked(engine: Engine):
    run_id, compiled = staged(engine, plan(step("a", value=1),
                                           step("b", value={"$ref": "a"})))
    store = engine.client.store
    # The worker recorded a's result, then died before publishing b.
    assert store.begin_step(run_id, "a", 1, "w", 1).state == "run"
    store.finish_step(run_id, "a", output=1, worker="w")
    deliver(engine, compiled, run_id, "a")
    report = engine.client.wait(run_id, 30)
    assert report.status == "succeeded", report
    assert report.answer == {"b": 1}
    assert started_counts(engine.events(run_id)) == {"a": 1, "b": 1}


def test_failed_step_redelivered_applies_its_policy(engine: Engine):
    failing = step("x", value=1)
    failing["on_failure"] = "fail"
    run_id, compiled = staged(engine, plan(failing, step("y", deps=["x"])))
    store = engine.client.store
    # The worker recorded the failure, then died before failing the run.
    store.begin_step(run_id, "x", 1, "w", 1)
    store.fail_step(run_id, "x", ErrorRecord(type="PermanentError", message="boom"), "w")
    assert store.report(run_id).status == "running"
    deliver(engine, compiled, run_id, "x")
    report = engine.client.wait(run_id, 30)
    assert report.status == "failed"
    assert report.error.step == "x" and report.error.cause.message == "boom"
    assert report.steps["y"].status == "cancelled"


def test_a_late_duplicate_failure_does_not_reopen_a_finished_step(engine: Engine):
    store = engine.client.store
    run_id, _ = staged(engine, plan(step("a")))
    store.begin_step(run_id, "a", 1, "w", 3)
    store.finish_step(run_id, "a", output="a", worker="w")
    assert store.record_retry(run_id, "a", ErrorRecord(type="X", message="late")) is False
    assert store.report(run_id).steps["a"].status == "succeeded"
    assert store.fail_step(run_id, "a", ErrorRecord(type="X", message="late"), "w") is False


def test_run_ids_and_plan_versions_are_taken_once(engine: Engine):
    store = engine.client.store
    p = Plan.model_validate(plan(step("a")))
    run_id = store.create_run("g", p, run_id=f"mine-{time.time_ns()}")
    with pytest.raises(Conflict, match="is taken"):
        store.create_run("other", p, run_id=run_id)
    assert store.report(run_id).goal == "g"
    assert store.install_plan(run_id, 1, p).state == "stale"


def test_an_unreachable_broker_fails_the_run_with_one_clear_error(engine: Engine):
    from planner.client import Client
    from planner.settings import Settings
    from tests.integration.conftest import _free_port

    env = {k: v for k, v in engine.env.items() if k.startswith("CHORDAL_")}
    env["CHORDAL_BROKER_URL"] = f"redis://127.0.0.1:{_free_port()}/0"
    settings = Settings.from_env(env)
    client = Client(settings, engine.client.tools)
    t0 = time.monotonic()
    with pytest.raises(Unavailable, match=r"cannot publish to the broker at redis://127\.0\.0\.1"):
        client.submit(plan(step("a")))
    assert time.monotonic() - t0 < 30
    newest = engine.client.store.r.zrevrange("chordal:runs", 0, 0)[0]
    report = engine.client.report(newest)
    assert report.status == "failed" and report.error.type == "BrokerError"
