"""Human decisions and budget pauses (planner.engine.human, metering), without Celery: a
real Redis run store, the in-memory publisher and, where a model is needed, a scripted one.
A waiting run publishes nothing; the decision moves its status and publishes what may run."""

from __future__ import annotations

import pytest

from planner.engine import human, join, start, steps
from planner.engine.dispatch import Message
from planner.errors import Conflict, TransientError
from planner.language.validation import validate
from planner.llm.roles import executor_request
from planner.llm.scripted import ScriptedModel
from planner.store.records import RunOptions
from planner.wire import DEFAULT_QUEUE, FINALIZE_TASK, LLM_QUEUE
from tests.engine.conftest import (
    MakeRuntime,
    echo,
    expected_step,
    failing,
    no_nonce,
    record,
    says,
    sent,
    started,
    step_ids,
    think,
)

PLANNED = {"goal": "two echoes", "steps": [echo("a", "A"), echo("b", {"$ref": "a"})]}
PLANNER = {"role": "planner", "content": [
    {"type": "tool_use", "id": "t1", "name": "submit_plan", "input": PLANNED}]}


def finalize_message(run: str, version: int) -> Message:
    return Message(FINALIZE_TASK, (run, version), DEFAULT_QUEUE, f"{run}.{version}.finalize")


def awaiting(rt, *plan_steps) -> str:
    run = record(rt, *plan_steps)
    assert rt.store.set_status(run, "awaiting_approval", "look first", from_=("pending",))
    return run


def test_a_planned_run_waits_for_approval_then_starts(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([PLANNER]))
    run = rt.store.create_run("two echoes", options=RunOptions(approve=True))
    assert start.plan_run(rt, run, 0) is None
    state = rt.store.run_state(run)
    assert (state.status, state.version) == ("awaiting_approval", 1)
    assert state.reason is not None and "chordal approve" in state.reason
    assert rt.store.report(run).reason == state.reason
    # Nothing runs while it waits: not a delivery, not a repeated start.
    assert isinstance(steps.run_step(rt, run, "a", 1, "w"), steps.Dropped)
    start.start_run(rt, run)
    assert sent(rt) == [] and rt.store.step_state(run, "a").attempts == 0

    human.approve(rt, run)
    assert sent(rt) == [expected_step(run, "a", 1)]
    assert rt.store.run_state(run).status == "running"
    assert [e.type for e in rt.store.events(run) if e.type.startswith("run.")] == [
        "run.created", "run.awaiting_approval", "run.pending", "run.started"]
    with pytest.raises(Conflict):
        human.approve(rt, run)
    with pytest.raises(Conflict):
        human.reject(rt, run)
    assert rt.store.run_state(run).status == "running" and len(sent(rt)) == 1


def test_an_edited_plan_is_installed_as_a_new_version_on_approval(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(None)
    run = awaiting(rt, echo("a"), echo("b", depends_on=["a"]))
    edited = validate({"goal": "test", "steps": [echo("a"), echo("z", "Z")]}, rt.tools).plan
    human.approve(rt, run, edited)
    assert sent(rt) == [expected_step(run, "a", 2), expected_step(run, "z", 2)]
    state = rt.store.run_state(run)
    assert (state.status, state.version, state.remaining) == ("running", 2, 2)
    report = rt.store.report(run)
    assert [(v.version, v.reason, v.dropped) for v in report.versions] == [
        (1, "planned", []), (2, "edited before approval", ["b"])]
    assert report.replans == 0
    assert report.steps["b"].status == "replaced"


def test_a_rejected_plan_ends_the_run_cancelled(make_rt: MakeRuntime) -> None:
    rt = make_rt(None)
    run = awaiting(rt, echo("a"), echo("b", depends_on=["a"]))
    human.reject(rt, run, "too costly")
    state = rt.store.run_state(run)
    assert state.status == "cancelled" and state.error is not None
    assert (state.error.type, state.error.message) == ("Rejected", "plan rejected: too costly")
    assert {s.status for s in rt.store.step_states(run).values()} == {"cancelled"}
    with pytest.raises(Conflict):
        human.reject(rt, run)
    with pytest.raises(Conflict):
        human.approve(rt, run)
    assert rt.store.run_state(run).status == "cancelled"
    assert sent(rt) == []

    running = started(rt, echo("a"))
    with pytest.raises(Conflict):
        human.reject(rt, running, "too late")
    assert rt.store.run_state(running).status == "running"


def test_pause_holds_new_steps_and_resume_publishes_them(make_rt: MakeRuntime) -> None:
    rt = make_rt(None)
    run = started(rt, echo("a", "A"), echo("b", "B"), echo("c", {"$ref": "a"}))
    assert rt.store.begin_step(run, "a", 1, "w", 4).state == "run"  # a runs on
    assert human.pause(rt, run, "a person asked") is True
    assert human.pause(rt, run, "again") is False
    state = rt.store.run_state(run)
    assert (state.status, state.reason) == ("paused", "a person asked")
    # b's message arrives: it does not begin, and it is no longer counted as published.
    assert isinstance(steps.run_step(rt, run, "b", 1, "w"), steps.Dropped)
    b = rt.store.step_state(run, "b")
    assert (b.status, b.attempts, b.dispatched) == ("pending", 0, False)
    # a finishes while paused: recorded, but what it unlocked waits.
    finish = rt.store.finish_step(run, "a", output="A", worker="w")
    assert finish.state == "inactive"
    assert rt.store.step_state(run, "a").status == "succeeded"
    assert sent(rt) == []

    human.resume(rt, run, budget_tokens=500)
    assert rt.store.options(run).budget_tokens == 500
    assert rt.store.run_state(run).status == "running"
    # Re-drives: b's first message was dropped while paused; each gets a new task id.
    assert no_nonce(sent(rt)) == [expected_step(run, "b", 1), expected_step(run, "c", 1)]
    with pytest.raises(Conflict):
        human.resume(rt, run)
    steps.run_step(rt, run, "b", 1, "w")
    steps.run_step(rt, run, "c", 1, "w")
    assert sent(rt)[2:] == [finalize_message(run, 1)]


def test_a_paused_run_whose_steps_are_done_resumes_to_its_join(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(None)
    run = started(rt, echo("a", "A"))
    assert rt.store.begin_step(run, "a", 1, "w", 4).state == "run"
    assert human.pause(rt, run, "wait")
    assert rt.store.finish_step(run, "a", output="A", worker="w").state == "inactive"
    join.finalize(rt, run, 1)  # a join that arrives while paused does nothing
    assert rt.store.run_state(run).status == "paused"
    human.resume(rt, run)
    assert sent(rt) == [finalize_message(run, 1)]
    join.finalize(rt, run, 1)
    assert (rt.store.run_state(run).status, rt.store.run_state(run).answer) == (
        "succeeded", {"a": "A"})


def test_crossing_the_budget_pauses_the_run_until_resumed(make_rt: MakeRuntime) -> None:
    usage = {"input_tokens": 400, "output_tokens": 200}
    rt = make_rt(ScriptedModel([says("executor", "a thought", usage=usage)]))
    run = started(rt, think("t1"), think("t2", ["more", {"$ref": "t1"}]),
                  options=RunOptions(on_budget="pause", budget_tokens=500))
    assert steps.run_step(rt, run, "t1", 1, "w") is None
    state = rt.store.run_state(run)
    assert state.status == "paused" and state.reason is not None
    assert state.reason.startswith("budget exceeded: used 600 tokens; the budget is 500")
    # The call that crossed the budget is kept: t1 succeeded; t2 waits for the resume.
    assert rt.store.outputs(run, ["t1"]) == {"t1": "a thought"}
    assert sent(rt) == []
    assert rt.store.ready_unstarted(run) == ["t2"]
    # A model call on the paused run is not made; it is made again when the run goes on.
    metered = rt.metered(run, "t2")
    assert metered is not None
    with pytest.raises(TransientError):
        metered.complete(executor_request(rt.settings, ["x"], None))
    assert rt.store.run_state(run).status == "paused"

    human.resume(rt, run, budget_tokens=5_000)
    options = rt.store.options(run)
    assert (options.on_budget, options.budget_tokens) == ("pause", 5_000)
    assert step_ids(rt) == [("t2", 1)] and sent(rt)[0].queue == LLM_QUEUE
    assert steps.run_step(rt, run, "t2", 1, "w") is None
    assert rt.store.run_state(run).status == "running"
    assert sent(rt)[1:] == [finalize_message(run, 1)]


def test_a_redelivered_plan_task_still_waits_for_approval(make_rt: MakeRuntime) -> None:
    """A worker that died between installing the plan and marking the run as awaiting
    approval: the redelivery must not start the run."""
    rt = make_rt(ScriptedModel([PLANNER]))
    run = rt.store.create_run("two echoes", options=RunOptions(approve=True))
    rt.store.install_plan(run, 1, validate(PLANNED, rt.tools).plan)  # then the crash
    assert start.plan_run(rt, run, 0) is None
    assert rt.store.run_state(run).status == "awaiting_approval" and sent(rt) == []
    human.approve(rt, run)
    assert rt.store.run_state(run).status == "running"
    sent(rt).clear()
    start.plan_run(rt, run, 0)  # a redelivery after approval starts nothing twice
    assert rt.store.run_state(run).status == "running" and sent(rt) == []


def test_what_a_paused_run_dropped_is_sent_again_on_resume(make_rt: MakeRuntime) -> None:
    """A replan and a checkpoint's review that arrive while the run is paused are
    dropped; resuming sends them again, so the run cannot hang."""
    from planner.engine import replan, review
    from planner.wire import REPLAN_TASK, REVIEW_TASK

    rt = make_rt()
    run = started(rt, echo("x", checkpoint=True), echo("after", {"$ref": "x"}),
                  failing("bad"))
    steps.run_step(rt, run, "x", 1, "w")   # held: its review is sent
    steps.run_step(rt, run, "bad", 1, "w")  # failed for good: a replan is sent
    assert {m.task for m in sent(rt)} == {REVIEW_TASK, REPLAN_TASK}
    sent(rt).clear()
    assert human.pause(rt, run, "a person looks")
    assert replan.replan(rt, run, "bad", 1) is None
    assert review.review(rt, run, "x", 1) is None
    assert rt.store.unhandled(run) == ["bad"]
    human.resume(rt, run)
    tasks = sorted(m.task for m in sent(rt))
    assert tasks == sorted([REVIEW_TASK, REPLAN_TASK]), tasks
