"""An agent step's decisions on a real run store: its turns and tool calls delivered one by
one from the in-memory publisher (``MemoryPublisher``), with a scripted executor model
(tests/engine/agent_driver.py drives them)."""

from __future__ import annotations

from typing import Any

from planner.engine import agent_calls
from planner.engine.outcomes import Failed
from planner.engine.steps import Dropped
from planner.llm.scripted import ScriptedModel
from planner.tools import ToolRegistry
from planner.vocabulary import CallStatus, RunStatus, StepStatus, TurnKind
from planner.wire import AGENT_CALL_TASK, FINALIZE_TASK
from tests.engine.agent_driver import (
    COUNTS,
    SCHEMA,
    deliver,
    drain,
    drain_until,
    executor_calls,
    pick,
    says,
    started,
    tools,
    turns,
    use,
)
from tests.engine.conftest import MakeRuntime, echo, sent

__all__ = ["tools"]  # the fixture: the testing tools and ``count``


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


def test_an_agent_checkpoint_holds_its_dependents_for_review(make_rt: MakeRuntime) -> None:
    from planner.wire import REVIEW_TASK

    rt = make_rt(ScriptedModel([says(0, "answer")]))
    run = started(rt, pick() | {"checkpoint": True}, echo("after", {"$ref": "pick"}))
    drain(rt)
    assert rt.store.step_state(run, "pick").held == 1
    assert [m.args[1] for m in sent(rt) if m.task == REVIEW_TASK] == ["pick"]
    assert rt.store.step_state(run, "after").status == StepStatus.PENDING
