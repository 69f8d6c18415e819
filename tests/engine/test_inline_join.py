"""The join done in the last step's task (CHORDAL_INLINE_JOIN, on by default) against the
join as a task of its own: the same answer, steps, attempts and events; no
``chordal.finalize`` message; safe under a redelivery and a concurrent join; and the join
message still sent when the inline join cannot be done."""

from __future__ import annotations

from typing import Any

import pytest

from planner.engine import join, outcomes, start, steps
from planner.engine.dispatch import Message
from planner.engine.runtime import Runtime
from planner.language.validation import validate
from planner.llm.scripted import ScriptedModel
from planner.store.records import ErrorRecord, RunOptions
from planner.tools import ToolRegistry, tool
from planner.tools.registry import load_registry
from planner.vocabulary import RunStatus
from planner.wire import FINALIZE_TASK, STEP_TASK, SYNTHESIZE_TASK
from tests.engine.conftest import MakeRuntime, echo, record, says, sent

#: What the ``replans`` tool does while it runs (set by the test).
DURING: list[Any] = []


@tool
def replans() -> str:
    """A tool during which a replan installs a new plan version."""
    DURING.pop()()
    return "done"


@pytest.fixture
def tools() -> ToolRegistry:
    registry = load_registry(["planner.tools.testing"])
    registry.add(replans)
    return registry


#: A diamond with a skipped branch: two sinks, a ref, a step skipped for good.
PLAN = (echo("a", "A"), echo("b", {"$ref": "a"}, depends_on=["a"]),
        {"id": "c", "tool": "fail", "args": {"times": -1, "kind": "permanent"},
         "depends_on": ["a"], "on_failure": "skip"},
        echo("d", {"$ref": "b"}, depends_on=["b", "c"]), echo("e", 5))


def started(rt: Runtime, *plan_steps: dict[str, Any], options: RunOptions | None = None
            ) -> str:
    """A run started, its first messages in ``sent(rt)``."""
    run = record(rt, *plan_steps, options=options)
    start.start_run(rt, run)
    return run


def deliver(rt: Runtime, m: Message) -> Any:
    if m.task == STEP_TASK:
        return steps.run_step(rt, m.args[0], m.args[1], m.args[2], "w", task_id=m.task_id)
    assert m.task == FINALIZE_TASK, m
    return join.finalize(rt, *m.args)


def drive(rt: Runtime) -> list[str]:
    """Deliver every step and join message, in order, until none is left; the tasks
    delivered."""
    delivered = []
    while todo := [m for m in sent(rt) if m.task in (STEP_TASK, FINALIZE_TASK)]:
        sent(rt).remove(todo[0])
        delivered.append(todo[0].task)
        deliver(rt, todo[0])
    return delivered


def outcome(rt: Runtime, run: str) -> tuple[Any, ...]:
    """What a run ended with, times and ids left out."""
    report = rt.store.report(run)
    attempts = {sid: [(a.attempt, a.status, a.worker) for a in st.history]
                for sid, st in report.steps.items()}
    events = [(e.type, e.step, e.status) for e in rt.store.events(run)]
    return (report.status, report.answer, report.error,
            {sid: (st.status, st.output, st.attempts) for sid, st in report.steps.items()},
            attempts, events)


def test_the_inline_join_ends_a_run_as_the_join_task_does(make_rt: MakeRuntime) -> None:
    slow = make_rt()
    run = started(slow, *PLAN)
    assert FINALIZE_TASK in drive(slow)
    expected = outcome(slow, run)
    assert expected[0] == RunStatus.SUCCEEDED and expected[1] == {"d": "A", "e": 5}

    fast = make_rt(CHORDAL_INLINE_JOIN="true")
    run = started(fast, *PLAN)
    assert FINALIZE_TASK not in drive(fast)
    assert outcome(fast, run) == expected
    assert sent(fast) == []


def test_a_redelivered_last_step_and_a_late_join_change_nothing(make_rt: MakeRuntime
                                                               ) -> None:
    rt = make_rt(CHORDAL_INLINE_JOIN="true")
    run = started(rt, echo("a", 1), echo("b", 2, depends_on=["a"]))
    messages = list(sent(rt))
    drive(rt)
    ended = outcome(rt, run)
    assert ended[0] == RunStatus.SUCCEEDED and ended[1] == {"b": 2}
    last = next(m for m in messages if m.task == STEP_TASK)
    step_message = Message(STEP_TASK, (run, "b", 1), last.queue, task_id=f"{run}.1.b")
    # The last step's message again (a redelivery), and a join that a recovery sent.
    assert isinstance(deliver(rt, step_message), steps.Dropped)
    join.finalize(rt, run, 1)
    assert outcome(rt, run) == ended
    assert [e.type for e in rt.store.events(run)].count("run.finished") == 1
    assert sent(rt) == []


def test_a_join_that_fails_inline_is_sent_as_a_task(make_rt: MakeRuntime,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rt = make_rt(CHORDAL_INLINE_JOIN="true")
    run = started(rt, echo("a", 1))
    real = join.finalize
    calls: list[str] = []

    def broken(rt: Runtime, run_id: str, version: int) -> None:
        calls.append(run_id)
        if len(calls) == 1:
            raise ConnectionError("Redis went away")
        real(rt, run_id, version)

    monkeypatch.setattr(join, "finalize", broken)
    step = next(m for m in sent(rt) if m.task == STEP_TASK)
    sent(rt).remove(step)
    assert deliver(rt, step) is None
    assert rt.store.run_state(run).status == RunStatus.RUNNING
    assert [m.task for m in sent(rt)] == [FINALIZE_TASK]
    drive(rt)
    assert rt.store.report(run).status == RunStatus.SUCCEEDED
    assert rt.store.report(run).answer == {"a": 1}


def test_a_run_whose_answer_a_model_writes_sends_the_synthesizer_at_once(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says("synthesizer", "all done")]), CHORDAL_INLINE_JOIN="true")
    run = started(rt, echo("a", 1), options=RunOptions(synthesize=True))
    drive(rt)
    assert [m.task for m in sent(rt)] == [SYNTHESIZE_TASK]
    assert join.synthesize(rt, run, 1, 0) is None
    assert rt.store.report(run).status == RunStatus.SUCCEEDED
    assert rt.store.report(run).answer == "all done"


def test_a_step_that_finishes_under_a_newer_version_notes_its_dependents_published(
        make_rt: MakeRuntime) -> None:
    """Its finish was given the queues of the version it began in: the dependents the
    newer version gives it are noted after their publish, as without the fold."""
    rt = make_rt(CHORDAL_INLINE_JOIN="true")
    run = started(rt, {"id": "a", "tool": "replans", "args": {}}, echo("b", 1))
    v2 = validate({"goal": "test", "steps": [
        {"id": "a", "tool": "replans", "args": {}}, echo("b", 1),
        echo("n", {"$ref": "a"}, depends_on=["a"])]}, rt.tools).plan
    DURING.append(lambda: rt.store.install_plan(run, 2, v2, reason="replan"))
    first = next(m for m in sent(rt) if m.args[1] == "a")
    sent(rt).remove(first)
    assert deliver(rt, first) is None
    assert [(m.args[1], m.args[2]) for m in sent(rt) if m.args[1] == "n"] == [("n", 2)]
    raw = rt.store.r.hgetall(f"chordal:run:{{{run}}}:steps")
    assert raw["n.dispatched"] == "1" and raw["n.task"] == f"{run}.2.n"
    drive(rt)
    assert rt.store.report(run).status == RunStatus.SUCCEEDED
    assert rt.store.report(run).answer == {"b": 1, "n": "done"}


@pytest.mark.parametrize(("options", "plan_says", "model", "synthesized"), [
    # The run's option decides, whatever model the worker that ends it has (issue #20).
    (RunOptions(synthesize=True), None, False, True),
    (RunOptions(synthesize=False), True, True, False),
    # None (a run made by the store alone): the submitted plan's "synthesize".
    (None, True, False, True),
    (None, False, True, False),
    # Neither says: the rule of runs recorded before the option, a model here.
    (None, None, True, True),
    (None, None, False, False),
], ids=["option-true-no-model", "option-false-model", "plan-true-no-model",
        "plan-false-model", "neither-model", "neither-no-model"])
def test_whether_the_synthesizer_answers_is_the_run_s_not_the_last_worker_s(
        make_rt: MakeRuntime, options: RunOptions | None, plan_says: bool | None,
        model: bool, synthesized: bool) -> None:
    rt = make_rt(ScriptedModel([says("synthesizer", "all done")]) if model else None,
                 CHORDAL_INLINE_JOIN="true")
    plan = validate({"goal": "test", "steps": [echo("a", 1)], "synthesize": plan_says},
                    rt.tools).plan
    run = rt.store.create_run(plan.goal, plan, options=options)
    start.start_run(rt, run)
    drive(rt)
    if not synthesized:
        assert sent(rt) == []
        assert rt.store.report(run).answer == {"a": 1}
        return
    assert [m.task for m in sent(rt)] == [SYNTHESIZE_TASK]
    assert rt.store.run_state(run).status == RunStatus.RUNNING
    # The llm queue's worker writes it: with no model there, as a model-less join does.
    assert join.synthesize(rt, run, 1, 0) is None
    assert rt.store.report(run).answer == ("all done" if model else {"a": 1})


def test_a_failed_run_s_partial_answer_is_the_synthesizer_s_when_the_run_asks(
        make_rt: MakeRuntime) -> None:
    """end_failed decides as the join does: a run that is synthesized is marked ending and
    its partial answer is the llm queue's, even from a worker without a model."""
    rt = make_rt(None, CHORDAL_INLINE_JOIN="true")
    run = started(rt, echo("a", 1), echo("b", 2, depends_on=["a"]),
                  options=RunOptions(synthesize=True))
    sent(rt).remove(next(m for m in sent(rt) if m.task == STEP_TASK))
    outcomes.end_failed(rt, run, ErrorRecord(type="Other", message="gave up"))
    assert [m.task for m in sent(rt)] == [SYNTHESIZE_TASK]
    assert rt.store.run_state(run).ending is not None
    other = started(rt, echo("a", 1), options=RunOptions(synthesize=False))
    sent(rt).clear()
    outcomes.end_failed(rt, other, ErrorRecord(type="Other", message="gave up"))
    assert sent(rt) == [] and rt.store.report(other).partial
