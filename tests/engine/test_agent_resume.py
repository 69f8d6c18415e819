"""An agent step resumes: a worker may die between any two writes, a run may stop, pause,
go on or be retried; a redelivered or re-sent message picks the conversation up where its
record says, and a tool call that has a result never runs again."""

from __future__ import annotations

from planner.engine.outcomes import Retry
from planner.engine.steps import Dropped
from planner.llm.scripted import ScriptedModel
from planner.store.records import RunOptions
from planner.vocabulary import RunStatus, StepStatus, TurnKind
from planner.wire import AGENT_CALL_TASK, AGENT_TURN_TASK
from tests.engine.agent_driver import (
    COUNTS,
    Flaky,
    deliver,
    drain,
    drain_until,
    executor_calls,
    pick,
    says,
    started,
    tools,
    turn,
    turns,
    use,
)
from tests.engine.conftest import MakeRuntime, echo, sent

__all__ = ["tools"]  # the fixture: the testing tools and ``count``


def test_a_turn_redelivered_after_record_turn_publishes_its_calls_and_runs_nothing(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([
        says(0, use("echo", value=1)),
        says(1, use("count", key="x")),
        says(2, "done")]))
    run = started(rt, pick())
    drain_until(rt, AGENT_TURN_TASK)
    (t1,) = [m for m in sent(rt) if m.task == AGENT_TURN_TASK]
    assert turn(rt, t1) is None
    # The worker died after record_turn, before its calls were published.
    sent(rt).clear()
    calls_before = executor_calls(rt, run)
    again = turn(rt, t1)
    assert isinstance(again, Dropped)
    assert executor_calls(rt, run) == calls_before  # no model call made again
    (call,) = sent(rt)
    assert call.task == AGENT_CALL_TASK and call.args[4:] == (1, 0)
    assert call.task_id is not None and call.task_id.startswith(f"{run}.1.pick.c0t1i0.")
    drain(rt)
    assert COUNTS == {"x": 1}
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED


def test_a_call_redelivered_after_its_result_never_runs_again(make_rt: MakeRuntime
                                                                ) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x"), use("count", key="y")),
                                says(1, "done")]))
    run = started(rt, pick())
    drain_until(rt, AGENT_CALL_TASK)
    first, second = [m for m in sent(rt) if m.task == AGENT_CALL_TASK]
    assert deliver(rt, first) is None
    # Redelivered while its sibling has no result: nothing runs, nothing is published.
    sent(rt).clear()
    assert isinstance(deliver(rt, first), Dropped)
    assert sent(rt) == [] and COUNTS == {"x": 1}
    # The last call finished, and its worker died before it published the next turn.
    assert deliver(rt, second) is None
    sent(rt).clear()
    assert isinstance(deliver(rt, second), Dropped)
    assert COUNTS == {"x": 1, "y": 1}
    (nxt,) = sent(rt)
    assert nxt.task == AGENT_TURN_TASK and nxt.args[3:] == (0, 1)
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert COUNTS == {"x": 1, "y": 1}


def test_a_step_redriven_after_turn_zero_resumes_with_its_calls(make_rt: MakeRuntime
                                                                 ) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x")), says(1, "done")]))
    run = started(rt, pick())
    (step,) = sent(rt)
    sent(rt).clear()
    assert deliver(rt, step) is None
    sent(rt).clear()  # the call's message was lost with the worker
    rt.store.take_leases(run, ["pick"], 0)  # and its lease lapsed
    assert deliver(rt, step) is None  # the re-drive resumes: no model call made again
    assert executor_calls(rt, run) == 1
    (call,) = sent(rt)
    assert call.task == AGENT_CALL_TASK
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert COUNTS == {"x": 1}


def test_a_budget_crossed_by_a_turn_stops_the_agent_at_the_next_turn(make_rt: MakeRuntime
                                                                     ) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x"),
                                     usage={"input_tokens": 600, "output_tokens": 10})]))
    run = started(rt, pick(), options=RunOptions(budget_tokens=500))
    drain(rt)
    assert rt.store.run_state(run).status == RunStatus.FAILED
    assert executor_calls(rt, run) == 1
    assert turns(rt, run) == [TurnKind.TOOLS]
    assert COUNTS == {}  # recorded; nothing published after the stop


def test_a_cancelled_run_stops_its_agent_at_the_next_turn(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x")), says(1, "done")]))
    run = started(rt, pick())
    drain_until(rt, AGENT_CALL_TASK)
    (call,) = [m for m in sent(rt) if m.task == AGENT_CALL_TASK]
    rt.store.finish_run(run, RunStatus.CANCELLED)
    sent(rt).clear()
    assert isinstance(deliver(rt, call), Dropped)
    assert COUNTS == {} and sent(rt) == []
    assert executor_calls(rt, run) == 1


def test_a_run_paused_at_its_budget_picks_its_agent_up_where_it_stopped(
        make_rt: MakeRuntime) -> None:
    from planner.engine import human

    rt = make_rt(ScriptedModel([says(0, use("count", key="x"),
                                     usage={"input_tokens": 600, "output_tokens": 10}),
                                says(1, "done")]))
    run = started(rt, pick(), options=RunOptions(budget_tokens=500, on_budget="pause"))
    drain(rt)
    assert rt.store.run_state(run).status == RunStatus.PAUSED
    assert turns(rt, run) == [TurnKind.TOOLS] and COUNTS == {}
    human.resume(rt, run, budget_tokens=100_000)
    # The recorded turn's call is published again; nothing runs twice.
    calls = [m for m in sent(rt) if m.task == AGENT_CALL_TASK]
    assert [m.args[3:] for m in calls] == [(0, 0, 0)]
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert COUNTS == {"x": 1} and executor_calls(rt, run) == 2


def test_a_model_error_at_turn_zero_hands_the_turn_to_a_task_of_its_own(
        make_rt: MakeRuntime) -> None:

    rt = make_rt(Flaky(2, [says(0, use("count", key="x")), says(1, "done")]))
    run = started(rt, pick())
    (step,) = sent(rt)
    sent(rt).clear()
    assert deliver(rt, step) is None
    (again,) = sent(rt)
    assert again.task == AGENT_TURN_TASK and again.args[3:] == (0, 0)
    assert again.countdown is not None and again.countdown > 0
    assert turns(rt, run) == [TurnKind.THINKING]
    sent(rt).clear()
    rt.store.take_leases(run, ["pick"], 0)  # the countdown passed
    # Its own task fails transiently too: a Celery retry (same task id) takes it over.
    assert isinstance(deliver(rt, again), Retry)
    rt.store.take_leases(run, ["pick"], 0)
    assert deliver(rt, again) is None
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert COUNTS == {"x": 1}


def test_a_turn_that_crosses_the_budget_is_recorded_before_the_run_stops(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x"), usage={"input_tokens": 300}),
                                says(1, use("count", key="y"), usage={"input_tokens": 300})]))
    run = started(rt, echo("first", 1), pick() | {"depends_on": ["first"]},
                  options=RunOptions(budget_tokens=500))
    decisions = drain(rt)
    assert isinstance(decisions[-1], Dropped) and "budget" in decisions[-1].why
    run_state = rt.store.run_state(run)
    assert run_state.status == RunStatus.FAILED
    assert run_state.error is not None and run_state.error.type == "BudgetExceeded"
    assert turns(rt, run) == [TurnKind.TOOLS, TurnKind.TOOLS]
    assert COUNTS == {"x": 1}  # turn 1's call recorded, never run
    report = rt.store.report(run)
    assert report.answer == {"partial": {"first": 1}}


def test_an_answer_that_crosses_the_budget_is_kept(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, "the answer", usage={"input_tokens": 600})]))
    run = started(rt, pick(), options=RunOptions(budget_tokens=500))
    drain(rt)
    assert rt.store.run_state(run).status == RunStatus.FAILED
    assert rt.store.outputs(run, ["pick"]) == {"pick": "the answer"}


def test_a_turn_stopped_before_its_call_by_a_budget_pause_runs_on_resume(
        make_rt: MakeRuntime) -> None:
    from planner.engine import human

    rt = make_rt(ScriptedModel([says(0, use("count", key="x"), usage={"input_tokens": 400}),
                                says(1, "done")]))
    run = started(rt, pick(), options=RunOptions(budget_tokens=500, on_budget="pause"))
    drain_until(rt, AGENT_TURN_TASK)
    (t1,) = [m for m in sent(rt) if m.task == AGENT_TURN_TASK]
    sent(rt).clear()
    # Something else spent the budget meanwhile: turn 1 begins, and its call is refused.
    rt.store.record_usage(run, "executor", "m", None, {"calls": 1, "input_tokens": 200})
    assert isinstance(turn(rt, t1), Dropped)
    assert rt.store.run_state(run).status == RunStatus.PAUSED
    assert turns(rt, run) == [TurnKind.TOOLS, TurnKind.THINKING]
    human.resume(rt, run, budget_tokens=100_000)
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert turns(rt, run) == [TurnKind.TOOLS, TurnKind.FINAL]


def test_a_retried_agent_step_starts_a_new_conversation(make_rt: MakeRuntime) -> None:
    from planner.engine import human

    rt = make_rt(ScriptedModel([says(0, use("count", key="x"))]))
    run = started(rt, pick(max_turns=1) | {"on_failure": "fail"})
    drain(rt)
    assert rt.store.run_state(run).status == RunStatus.FAILED
    first = rt.store.conversation(run, "pick")
    assert [t.kind for t in first.turns] == [TurnKind.MAX_TURNS]
    assert human.retry(rt, run, "pick") == ["pick"]
    drain(rt)
    again = rt.store.conversation(run, "pick")
    assert again.conversation != first.conversation
    assert [t.kind for t in again.turns] == [TurnKind.MAX_TURNS]
    # The old one stays readable; neither ran a call asked for at the last turn.
    assert rt.store.conversation(run, "pick", first.conversation).turns == first.turns
    assert COUNTS == {}
