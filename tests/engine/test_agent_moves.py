"""The agent step's pure decisions: what a recorded conversation calls for next, what a
model response comes to, and the messages of a move (no Redis, no worker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.engine.agent_moves import (
    AgentSpec,
    Fail,
    Finish,
    Publish,
    Think,
    judge,
    messages,
    next_move,
    repaired,
)
from planner.engine.compiled import CompiledPlan
from planner.language.plan import Plan, Step
from planner.language.validation import Limits
from planner.llm.model import ModelResponse, Usage
from planner.tools import ToolRegistry
from planner.vocabulary import CallStatus, TurnKind
from planner.wire import AGENT_CALL_TASK, AGENT_TURN_TASK

LIMITS = Limits()


@dataclass
class C:
    index: int
    tool: str
    status: str = CallStatus.PENDING
    args: Any = None


@dataclass
class T:
    turn: int
    kind: str
    calls: list[C] = field(default_factory=list)
    answer: Any = None
    text: str = ""
    problems: list[str] | None = None


@dataclass
class Conv:
    turns: list[T]
    conversation: int = 0


SPEC = AgentSpec.of({"task": "t", "tools": ["echo", "sleep"], "max_turns": 4})
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
TYPED = AgentSpec.of({"task": "t", "tools": ["echo"], "output_schema": SCHEMA})


def response(*blocks: dict[str, Any]) -> ModelResponse:
    return ModelResponse(list(blocks), Usage(10, 5), "m")


def text(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


def use(name: str, args: Any, i: str = "u") -> dict[str, Any]:
    return {"type": "tool_use", "id": i, "name": name, "input": args}


def test_the_spec_reads_the_resolved_arguments_with_the_tools_defaults() -> None:
    spec = AgentSpec.of({"task": "go", "tools": ["travel.hotels"]})
    assert (spec.max_turns, spec.output_schema, spec.context) == (8, None, None)
    assert spec.names() == {"travel_hotels": "travel.hotels"}


def test_an_empty_conversation_thinks_turn_zero() -> None:
    assert next_move(Conv([], 3), SPEC) == Think(3, 0)


def test_a_turn_left_thinking_is_taken_over() -> None:
    assert next_move(Conv([T(0, "tools"), T(1, "thinking")]), SPEC) == Think(0, 1)


def test_calls_without_a_result_are_published_again_and_settled_ones_never() -> None:
    turn = T(0, "tools", [C(0, "echo", "succeeded"), C(1, "sleep", "running"),
                          C(2, "echo", "pending"), C(3, "echo", "refused"),
                          C(4, "echo", "failed")])
    assert next_move(Conv([turn]), SPEC) == Publish(0, 0, ((1, "sleep"), (2, "echo")))


def test_once_every_call_settled_the_next_turn_thinks() -> None:
    turn = T(2, "tools", [C(0, "echo", "succeeded"), C(1, "echo", "failed")])
    assert next_move(Conv([T(0, "refused"), T(1, "repair"), turn], 1), SPEC) == Think(1, 3)


@pytest.mark.parametrize("kind", [TurnKind.REPAIR, TurnKind.REFUSED])
def test_a_repair_or_refused_turn_is_followed_by_the_next(kind: str) -> None:
    assert next_move(Conv([T(0, kind)]), SPEC) == Think(0, 1)


def test_a_recorded_answer_finishes() -> None:
    assert next_move(Conv([T(0, "tools"), T(1, "final", answer={"n": 1})]), SPEC) == Finish(
        {"n": 1})


def test_max_turns_and_invalid_fail_for_good_with_the_designs_errors() -> None:
    last = T(3, "max_turns", [C(0, "echo", "refused", {"value": "x" * 300})], text="hmm")
    move = next_move(Conv([last]), SPEC, "pick")
    assert isinstance(move, Fail) and move.error.type == "MaxTurns"
    assert not move.error.transient
    assert move.error.message.startswith("agent step 'pick' used its 4 turns without a final "
                                         "answer; last turn: hmm · called echo({")
    assert len(move.error.message) < 300
    bad = next_move(Conv([T(1, "invalid", problems=["answer.n: missing"])]), SPEC, "pick")
    assert isinstance(bad, Fail) and bad.error.type == "OutputInvalid"
    assert "after a repair: answer.n: missing" in bad.error.message


def test_repaired_says_whether_the_one_repair_was_used() -> None:
    assert not repaired(Conv([T(0, "tools")]))
    assert repaired(Conv([T(0, "repair"), T(1, "tools")]))


@given(st.lists(st.sampled_from(list(CallStatus)[:5]), max_size=8),
       st.integers(min_value=0, max_value=40))
def test_a_tools_turn_publishes_exactly_the_unsettled_calls(statuses: list[str],
                                                            t: int) -> None:
    calls = [C(i, "echo", s) for i, s in enumerate(statuses)]
    move = next_move(Conv([T(t, "tools", calls)]), SPEC)
    waiting = [i for i, s in enumerate(statuses) if s in ("pending", "running")]
    if waiting:
        assert move == Publish(0, t, tuple((i, "echo") for i in waiting))
    else:
        assert move == Think(0, t + 1)


# -- judge --------------------------------------------------------------------------------

def test_text_without_a_schema_is_the_answer(tools: ToolRegistry) -> None:
    v = judge(response(text("Lisbon.")), SPEC, 0, False, tools, LIMITS)
    assert (v.kind, v.answer, v.calls) == (TurnKind.FINAL, "Lisbon.", ())


def test_tool_uses_become_calls_mapped_back_to_the_tools_names(tools: ToolRegistry) -> None:
    v = judge(response(text("both"), use("echo", {"value": 1}, "a"),
                       use("sleep", {"seconds": 0}, "b")), SPEC, 0, False, tools, LIMITS)
    assert v.kind == TurnKind.TOOLS
    assert [(c.index, c.id, c.tool, c.args, c.error) for c in v.calls] == [
        (0, "a", "echo", {"value": 1}, None), (1, "b", "sleep", {"seconds": 0}, None)]
    assert v.pending == v.calls
    assert v.text == "both"


def test_a_call_to_an_unlisted_tool_is_refused_and_the_rest_run(tools: ToolRegistry) -> None:
    v = judge(response(use("concat", {"items": []}), use("echo", {"value": 2})), SPEC, 0,
              False, tools, LIMITS)
    assert v.kind == TurnKind.TOOLS
    refused, ok = v.calls
    assert refused.error is not None and refused.error.type == "CallRefused"
    assert "no tool 'concat' here" in refused.error.message
    assert ok.error is None and v.pending == (ok,)


def test_a_turn_whose_calls_are_all_refused_is_refused(tools: ToolRegistry) -> None:
    v = judge(response(use("agent", {"task": "x", "tools": []})), SPEC, 0, False, tools,
              LIMITS)
    assert v.kind == TurnKind.REFUSED and v.pending == ()


def test_tools_asked_for_at_the_last_turn_are_not_run(tools: ToolRegistry) -> None:
    v = judge(response(use("echo", {"value": 1})), SPEC, 3, False, tools, LIMITS)
    assert v.kind == TurnKind.MAX_TURNS
    assert judge(response(use("echo", {"value": 1})), SPEC, 2, False, tools,
                 LIMITS).kind == TurnKind.TOOLS


def test_a_schema_answer_through_final_answer(tools: ToolRegistry) -> None:
    v = judge(response(use("final_answer", {"answer": {"n": 3}})), TYPED, 0, False, tools,
              LIMITS)
    assert (v.kind, v.answer, v.problems) == (TurnKind.FINAL, {"n": 3}, ())


def test_a_schema_answer_in_fenced_text_is_parsed(tools: ToolRegistry) -> None:
    v = judge(response(text('```json\n{"n": 4}\n```')), TYPED, 0, False, tools, LIMITS)
    assert (v.kind, v.answer) == (TurnKind.FINAL, {"n": 4})


def test_an_answer_off_its_schema_gets_one_repair_then_is_invalid(tools: ToolRegistry
                                                                   ) -> None:
    off = response(use("final_answer", {"answer": {"n": "x"}}, "f"),
                   use("echo", {"value": 1}, "e"))
    first = judge(off, TYPED, 0, False, tools, LIMITS)
    assert first.kind == TurnKind.REPAIR
    assert first.problems == ("answer.n: 'x' is not of type 'integer'",)
    # The other call of an answering turn is not run (the model's messages say so).
    assert first.calls == () and first.pending == ()
    assert judge(off, TYPED, 1, True, tools, LIMITS).kind == TurnKind.INVALID
    # The repair runs even past max_turns: an answer is judged as an answer.
    last = AgentSpec.of({"task": "t", "tools": ["echo"], "output_schema": SCHEMA,
                         "max_turns": 1})
    assert judge(off, last, 0, False, tools, LIMITS).kind == TurnKind.REPAIR


def test_text_that_is_not_json_where_a_schema_asks_is_repaired(tools: ToolRegistry) -> None:
    v = judge(response(text("about four")), TYPED, 0, False, tools, LIMITS)
    assert v.kind == TurnKind.REPAIR and "not JSON" in v.problems[0]


# -- messages -----------------------------------------------------------------------------

def compiled(tools: ToolRegistry) -> CompiledPlan:
    agent_tool = tools.get("echo")
    assert agent_tool is not None
    plan = Plan(goal="g", steps=[Step(id="pick", tool="echo", args={"value": 1},
                                      timeout_s=60)])
    return CompiledPlan(plan, tools, hard_limit_grace_s=30)


def test_a_turns_message(tools: ToolRegistry) -> None:
    (m,) = messages(compiled(tools), "r", 2, "pick", Think(1, 3), redrive=False)
    assert (m.task, m.args, m.task_id, m.shadow) == (
        AGENT_TURN_TASK, ("r", "pick", 2, 1, 3), "r.2.pick.c1t3", "chordal.agent_turn pick t3")
    assert (m.soft_time_limit, m.time_limit, m.ignore_result, m.errback) == (60, 90, True,
                                                                             None)


def test_call_messages_go_to_their_tools_queues_under_their_limits(tools: ToolRegistry
                                                                    ) -> None:
    sleep = tools.get("sleep")
    assert sleep is not None
    ms = messages(compiled(tools), "r", 2, "pick", Publish(0, 1, ((0, "echo"), (2, "sleep"))),
                  redrive=False)
    assert [(m.task, m.args, m.task_id, m.queue, m.shadow) for m in ms] == [
        (AGENT_CALL_TASK, ("r", "pick", 2, 0, 1, 0), "r.2.pick.c0t1i0", "chordal",
         "chordal.agent pick \u2192 echo"),
        (AGENT_CALL_TASK, ("r", "pick", 2, 0, 1, 2), "r.2.pick.c0t1i2", sleep.queue,
         "chordal.agent pick \u2192 sleep")]
    assert ms[1].soft_time_limit == sleep.timeout_s
    assert ms[1].time_limit == sleep.timeout_s + 30


def test_sent_again_a_move_gets_new_ids(tools: ToolRegistry) -> None:
    a, b = (messages(compiled(tools), "r", 1, "pick", Think(0, 0))[0] for _ in range(2))
    assert a.task_id != b.task_id
    assert a.task_id is not None and a.task_id.startswith("r.1.pick.c0t0.")
    assert messages(compiled(tools), "r", 1, "pick", Finish(1)) == []


# -- the compiled plan --------------------------------------------------------------------

def test_an_agent_step_is_known_and_its_tools_queues_are_the_plans(tools: ToolRegistry
                                                                   ) -> None:
    from dataclasses import replace as copy

    from planner.language.validation import validate

    echo = tools["echo"]
    slow = copy(echo, name="slow_echo", queue="slow")
    registry = ToolRegistry([*tools.values(), slow])
    plan = validate({"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": 1}},
        {"id": "pick", "tool": "agent", "args": {"task": "t", "tools": ["slow_echo", "echo"],
                                                 "context": {"$ref": "a"}}}]},
                    registry).plan
    c = CompiledPlan(plan, registry)
    assert (c.is_agent("pick"), c.is_agent("a")) == (True, False)
    assert c.agent_tools("pick") == ["slow_echo", "echo"] and c.agent_tools("a") == []
    assert c.queue_of("pick") == "llm"
    assert c.queues() == {"chordal", "llm", "slow"}


@given(st.lists(st.sampled_from(["echo", "sleep", "concat", "agent"]), min_size=1,
                max_size=6),
       st.integers(min_value=0, max_value=5))
def test_every_tool_use_is_one_call_and_only_listed_tools_run(names: list[str],
                                                             t: int) -> None:
    from planner.tools.registry import load_registry

    registry = load_registry(["planner.tools.testing"])
    args = {"echo": {"value": 1}, "sleep": {"seconds": 0}, "concat": {"items": []},
            "agent": {"task": "x", "tools": []}}
    v = judge(response(*(use(n, args[n], f"u{i}") for i, n in enumerate(names))), SPEC, t,
              False, registry, LIMITS)
    assert [(c.index, c.id, c.tool) for c in v.calls] == [
        (i, f"u{i}", n) for i, n in enumerate(names)]
    listed = [c for c in v.calls if c.tool in SPEC.tools]
    if t + 1 >= SPEC.max_turns:
        assert v.kind == TurnKind.MAX_TURNS and v.pending == ()
    elif listed:
        assert v.kind == TurnKind.TOOLS and v.pending == tuple(listed)
    else:
        assert v.kind == TurnKind.REFUSED and v.pending == ()
