"""A step whose Celery task was revoked ends at once, by its ``on_failure`` policy; a late
result of the attempt it stopped is superseded (the worker path is in
tests/integration/test_lifecycle.py)."""

from __future__ import annotations

from planner.engine import human, steps
from planner.wire import FINALIZE_TASK, STEP_TASK
from tests.engine.conftest import MakeRuntime, echo, sent, started


def test_a_step_revoked_before_it_ran_fails_its_run(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="fail"), echo("b", depends_on=["a"]))
    steps.step_revoked(rt, run, "a", "w1", terminated=False)
    state = rt.store.run_state(run)
    assert state.status == "failed" and state.error is not None
    assert state.error.cause is not None and state.error.cause.type == "Revoked"
    a = rt.store.step_state(run, "a")
    assert a.status == "failed" and a.error is not None and "discarded" in a.error.message
    assert a.history == []  # it never began: no attempt to mark
    steps.step_revoked(rt, run, "a", "w1", terminated=False)  # again: nothing more
    assert sent(rt) == []


def test_a_terminated_skip_step_is_skipped_and_its_late_result_superseded(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="skip"), echo("b", depends_on=["a"]))
    begin = rt.store.begin_step(run, "a", 1, "w1", 1)
    steps.step_revoked(rt, run, "a", "w1", terminated=True)
    a = rt.store.step_state(run, "a")
    assert a.status == "skipped" and [h.status for h in a.history] == ["revoked"]
    assert [m.args[1] for m in sent(rt) if m.task == STEP_TASK] == ["b"]
    late = rt.store.finish_step(run, "a", output="late", worker="w1", attempt=begin.attempt)
    assert late.state == "superseded"
    assert rt.store.outputs(run, ["a"]) == {"a": None}


def test_a_revoked_step_retried_runs_under_a_new_task_id(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="fail"))
    rt.store.begin_step(run, "a", 1, "w1", 1)
    steps.step_revoked(rt, run, "a", "w1", terminated=True)
    assert human.retry(rt, run) == ["a"]
    [message] = sent(rt)
    assert message.task_id != f"{run}.1.a" and message.task_id.startswith(f"{run}.1.a.")
    assert steps.run_step(rt, run, "a", 1, "w2") is None
    a = rt.store.step_state(run, "a")
    assert (a.status, a.attempts) == ("succeeded", 2)
    assert [h.status for h in a.history] == ["revoked", "succeeded"]
    assert sent(rt)[-1].task == FINALIZE_TASK


def test_a_revoke_of_a_task_the_step_no_longer_runs_under_is_left_alone(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="fail"))
    rt.store.begin_step(run, "a", 1, "w1", 3, task_id=f"{run}.1.a.0123abcd")
    assert rt.store.step_state(run, "a").history[0].task == f"{run}.1.a.0123abcd"
    steps.step_revoked(rt, run, "a", "w0", terminated=False, task_id=f"{run}.1.a")
    assert rt.store.step_state(run, "a").status == "running"
    assert rt.store.run_state(run).status == "running"
    steps.step_revoked(rt, run, "a", "w1", terminated=True, task_id=f"{run}.1.a.0123abcd")
    assert rt.store.run_state(run).status == "failed"
