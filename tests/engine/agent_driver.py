"""How the agent tests drive an agent step on a real run store: a counting tool, plan and
script builders, and deliveries of the messages the in-memory publisher recorded, as a
worker's tasks would make them."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from planner.engine import agent, agent_calls, start, steps
from planner.engine.dispatch import Message
from planner.engine.runtime import Runtime
from planner.errors import TransientError
from planner.llm.scripted import ScriptedModel
from planner.store.records import RunOptions
from planner.tools import ToolRegistry, tool
from planner.tools.registry import load_registry
from planner.usage import summarize
from planner.wire import AGENT_CALL_TASK, AGENT_TURN_TASK, STEP_TASK
from tests.engine.conftest import record, sent

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


def drain_until(rt: Runtime, task: str) -> None:
    """Deliver messages until one of ``task`` is the next."""
    while True:
        todo = [m for m in sent(rt) if m.task in (STEP_TASK, AGENT_TURN_TASK,
                                                  AGENT_CALL_TASK)]
        if not todo or todo[0].task == task:
            return
        sent(rt).remove(todo[0])
        deliver(rt, todo[0])


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


class Flaky(ScriptedModel):
    """A scripted model whose first ``fails`` calls fail transiently (a 529, say)."""

    def __init__(self, fails: int, responses: list[dict[str, Any]]) -> None:
        super().__init__(responses)
        self.fails = fails

    def complete(self, request: Any) -> Any:

        if self.fails > 0:
            self.fails -= 1
            raise TransientError("overloaded")
        return super().complete(request)
