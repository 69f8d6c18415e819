"""An agent step's decisions on a real run store: its turns and tool calls delivered one by
one from the in-memory publisher (``MemoryPublisher``), with a scripted executor model. A
worker may die between any two writes: a redelivered message resumes, and a tool call that
has a result never runs again."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from planner.engine import agent, agent_calls, start, steps
from planner.engine.dispatch import Message
from planner.engine.outcomes import Failed
from planner.engine.runtime import Runtime
from planner.engine.steps import Dropped
from planner.llm.scripted import ScriptedModel
from planner.store.records import RunOptions
from planner.tools import ToolRegistry, tool
from planner.tools.registry import load_registry
from planner.usage import summarize
from planner.vocabulary import CallStatus, RunStatus, StepStatus, TurnKind
from planner.wire import AGENT_CALL_TASK, AGENT_TURN_TASK, FINALIZE_TASK, STEP_TASK
from tests.engine.conftest import MakeRuntime, echo, record, sent

#: How many times each ``count`` key was counted (the tool's side effect).
COUNTS: Counter[str] = Counter()


@tool
def count(key: str) -> int:
    """Count ``key`` once more; return the count."""
    COUNTS[key] += 1
    return COUNTS[key]


@pytest.fixture
def tools() -> ToolRegistry:
    COUNTS.clear()
    registry = load_registry(["planner.tools.testing"])
    registry.add(count)
    return registry


def pick(tools: list[str] | None = None, **args: Any) -> dict[str, Any]:
    return {"id": "pick", "tool": "agent", "args": {
        "task": "pick one", "tools": tools or ["count", "echo"], **args}}


def says(turn: int, *content: dict[str, Any] | str, **extra: Any) -> dict[str, Any]:
    blocks = [{"type": "text", "text": c} if isinstance(c, str) else c for c in content]
    return {"role": "executor", "step": "pick", "turn": turn, "content": blocks, **extra}


def use(name: str, **args: Any) -> dict[str, Any]:
    return {"type": "tool_use", "name": name, "input": args}


def started(rt: Runtime, *plan_steps: dict[str, Any], options: RunOptions | None = None
            ) -> str:
    """A run started: its first messages are in ``sent(rt)``."""
    run = record(rt, *plan_steps, options=options)
    start.start_run(rt, run)
    return run


def deliver(rt: Runtime, m: Message, worker: str = "w") -> Any:
    """One delivery of ``m`` (as the worker's task would make it)."""
    a: tuple[Any, ...] = m.args
    if m.task == STEP_TASK:
        return steps.run_step(rt, a[0], a[1], a[2], worker, task_id=m.task_id)
    if m.task == AGENT_TURN_TASK:
        return turn(rt, m, worker)
    assert m.task == AGENT_CALL_TASK
    return agent_calls.run_call(rt, a[0], a[1], a[2], a[3], a[4], a[5], worker,
                                task_id=m.task_id)


def turn(rt: Runtime, m: Message, worker: str = "w") -> Any:
    a: tuple[Any, ...] = m.args
    return agent.run_turn(rt, a[0], a[1], a[2], a[3], a[4], worker, m.task_id, 0)


def drain(rt: Runtime) -> list[Any]:
    """Deliver every step, turn and call message sent, in order, until none is left."""
    decisions: list[Any] = []
    while True:
        todo = [m for m in sent(rt) if m.task in (STEP_TASK, AGENT_TURN_TASK,
                                                  AGENT_CALL_TASK)]
        if not todo:
            return decisions
        m = todo[0]
        sent(rt).remove(m)
        decisions.append(deliver(rt, m))


def executor_calls(rt: Runtime, run: str) -> int:
    usage = summarize(rt.store.usage_fields(run), rt.settings.budget.prices)
    return usage.by_role["executor"].calls if "executor" in usage.by_role else 0


def turns(rt: Runtime, run: str) -> list[str]:
    return [str(t.kind) for t in rt.store.conversation(run, "pick").turns]


def test_an_agent_calls_tools_over_turns_and_a_dependent_refs_its_answer(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([
        says(0, "Counting both.", use("count", key="x"), use("count", key="y")),
        says(1, use("echo", value="seen"), match="Context (JSON)"),
        says(2, "picked y")]))
    run = started(rt, echo("a", "A"), pick(context={"$ref": "a"}),
                  echo("after", {"$ref": "pick"}))
    first = [m for m in sent(rt)]
    assert [m.args[1] for m in first] == ["a"]
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert rt.store.outputs(run, ["pick", "after"]) == {"pick": "picked y",
                                                        "after": "picked y"}
    assert COUNTS == {"x": 1, "y": 1}
    assert executor_calls(rt, run) == 3
    assert turns(rt, run) == [TurnKind.TOOLS, TurnKind.TOOLS, TurnKind.FINAL]
    conv = rt.store.conversation(run, "pick")
    assert [(c.tool, c.status, c.output) for c in conv.turns[0].calls] == [
        ("count", CallStatus.SUCCEEDED, 1), ("count", CallStatus.SUCCEEDED, 1)]
    assert any(m.task == FINALIZE_TASK for m in sent(rt))


def test_the_calls_of_a_turn_are_messages_of_their_own(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x"), use("echo", value=1))]))
    run = started(rt, pick())
    assert deliver(rt, sent(rt)[0]) is None
    calls = sent(rt)[1:]
    assert [(m.task, m.args, m.task_id, m.shadow) for m in calls] == [
        (AGENT_CALL_TASK, (run, "pick", 1, 0, 0, 0), f"{run}.1.pick.c0t0i0",
         "chordal.agent pick \u2192 count"),
        (AGENT_CALL_TASK, (run, "pick", 1, 0, 0, 1), f"{run}.1.pick.c0t0i1",
         "chordal.agent pick \u2192 echo")]


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


def drain_until(rt: Runtime, task: str) -> None:
    """Deliver messages until one of ``task`` is the next."""
    while True:
        todo = [m for m in sent(rt) if m.task in (STEP_TASK, AGENT_TURN_TASK,
                                                  AGENT_CALL_TASK)]
        if not todo or todo[0].task == task:
            return
        sent(rt).remove(todo[0])
        deliver(rt, todo[0])


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


def test_a_tool_error_reaches_the_model_and_it_recovers(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([
        says(0, use("fail", times=-1, kind="permanent"), use("nope", x=1)),
        says(1, "recovered", match="is_error")]))
    run = started(rt, pick(tools=["fail", "echo"]))
    decisions = drain(rt)
    assert any(isinstance(d, Failed) for d in decisions)  # the call's task: FAILURE
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    calls = rt.store.conversation(run, "pick").turns[0].calls
    assert [(c.tool, c.status) for c in calls] == [("fail", CallStatus.FAILED),
                                                   ("nope", CallStatus.REFUSED)]
    assert rt.store.outputs(run, ["pick"]) == {"pick": "recovered"}


def test_max_turns_fails_the_step_for_good(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, use("echo", value=1)),
                                says(1, "still looking", use("echo", value=2))]))
    run = started(rt, pick(max_turns=2) | {"on_failure": "fail"})
    drain(rt)
    state = rt.store.step_state(run, "pick")
    assert state.status == StepStatus.FAILED
    assert state.error is not None and state.error.type == "MaxTurns"
    assert "used its 2 turns" in state.error.message
    assert "still looking" in state.error.message
    assert rt.store.run_state(run).status == RunStatus.FAILED
    assert executor_calls(rt, run) == 2
    # The calls asked for at the last turn never ran.
    assert [c.status for c in rt.store.conversation(run, "pick").turns[1].calls] == [
        CallStatus.REFUSED]


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_an_answer_off_its_schema_gets_one_repair_turn(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, use("final_answer", answer={"n": "x"})),
                                says(1, use("final_answer", answer={"n": 2}),
                                     match="is not of type")]))
    run = started(rt, pick(output_schema=SCHEMA), echo("after", {"$ref": "pick.n"}))
    drain(rt)
    assert turns(rt, run) == [TurnKind.REPAIR, TurnKind.FINAL]
    assert rt.store.outputs(run, ["pick", "after"]) == {"pick": {"n": 2}, "after": 2}


def test_a_second_miss_is_output_invalid(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, use("final_answer", answer={"n": "x"})),
                                says(1, use("final_answer", answer={"m": 1}))]))
    run = started(rt, pick(output_schema=SCHEMA) | {"on_failure": "fail"})
    drain(rt)
    state = rt.store.step_state(run, "pick")
    assert state.error is not None and state.error.type == "OutputInvalid"
    assert turns(rt, run) == [TurnKind.REPAIR, TurnKind.INVALID]


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


def test_uncovered_steps_cover_the_tools_an_agent_may_call(make_rt: MakeRuntime,
                                                           tools: ToolRegistry) -> None:
    from planner.client import Client
    from planner.store.keys import worker_key
    from planner.store.records import WorkerInfo

    rt = make_rt()
    client = Client(rt.settings, tools)
    # A worker on every queue, with the agent tool and echo, not count.
    rt.store.r.set(worker_key("w1"), WorkerInfo(
        hostname="w1", queues=["chordal", "llm"],
        tools={"agent": "llm", "echo": "chordal"}).model_dump_json())
    plan = {"goal": "g", "steps": [pick(tools=["count", "echo"])]}
    (problem,) = client.uncovered_steps(plan)
    assert problem.startswith("step 'pick': no live worker on queue 'chordal' has tool "
                              "'count'")
    assert client.compile(plan).queues() == {"chordal", "llm"}


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


class Flaky(ScriptedModel):
    """A scripted model whose first ``fails`` calls fail transiently (a 529, say)."""

    def __init__(self, fails: int, responses: list[dict[str, Any]]) -> None:
        super().__init__(responses)
        self.fails = fails

    def complete(self, request: Any) -> Any:
        from planner.errors import TransientError

        if self.fails > 0:
            self.fails -= 1
            raise TransientError("overloaded")
        return super().complete(request)


def test_a_model_error_at_turn_zero_hands_the_turn_to_a_task_of_its_own(
        make_rt: MakeRuntime) -> None:
    from planner.engine.outcomes import Retry

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


def test_a_model_error_with_no_retries_left_fails_the_step(make_rt: MakeRuntime) -> None:
    from planner.errors import PermanentError

    class Broken(ScriptedModel):
        def complete(self, request: Any) -> Any:
            raise PermanentError("bad request")

    rt = make_rt(Broken([]))
    run = started(rt, pick() | {"on_failure": "fail"})
    (step,) = sent(rt)
    assert isinstance(deliver(rt, step), Failed)
    state = rt.store.step_state(run, "pick")
    assert state.error is not None and state.error.type == "ModelError"
    assert "bad request" in state.error.message


def test_a_revoked_call_fails_with_revoked_and_the_model_reads_it(make_rt: MakeRuntime
                                                                   ) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x")),
                                says(1, "ok", match="Revoked")]))
    run = started(rt, pick())
    drain_until(rt, AGENT_CALL_TASK)
    (call,) = [m for m in sent(rt) if m.task == AGENT_CALL_TASK]
    sent(rt).clear()
    # Flower's Terminate (the worker's task_revoked hook).
    agent_calls.call_revoked(rt, call.args, True, call.task_id)
    (c,) = rt.store.conversation(run, "pick").turns[0].calls
    assert c.status == CallStatus.FAILED and c.error is not None
    assert c.error.type == "Revoked"
    # A worker discards a revoked id's message; were it run, it would not run the tool.
    assert isinstance(deliver(rt, call), Dropped)
    drain(rt)
    assert COUNTS == {}
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED


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


def test_an_agent_checkpoint_holds_its_dependents_for_review(make_rt: MakeRuntime) -> None:
    from planner.wire import REVIEW_TASK

    rt = make_rt(ScriptedModel([says(0, "answer")]))
    run = started(rt, pick() | {"checkpoint": True}, echo("after", {"$ref": "pick"}))
    drain(rt)
    assert rt.store.step_state(run, "pick").held == 1
    assert [m.args[1] for m in sent(rt) if m.task == REVIEW_TASK] == ["pick"]
    assert rt.store.step_state(run, "after").status == StepStatus.PENDING
