"""What the agent store tests share: a run with a running agent step ``pick``, and the
moves of its conversation through the store's scripts."""

from __future__ import annotations

from typing import Any

from planner.language.plan import Plan
from planner.store.keys import RunKeys
from planner.store.records import ErrorRecord
from planner.store.runs import NewCall, RunStore

BAD_ARGS = ErrorRecord(type="CallRefused", message="args.text: Field required")
FLAKY = ErrorRecord(type="TransientError", message="flaky", transient=True)
BOOM = ErrorRecord(type="PermanentError", message="boom")
CONTENT = [{"type": "text", "text": "Checking both."},
           {"type": "tool_use", "id": "tu0", "name": "echo", "input": {"text": "a"}},
           {"type": "tool_use", "id": "tu1", "name": "echo", "input": {"text": "b"}},
           {"type": "tool_use", "id": "tu2", "name": "nope", "input": {}}]
CALLS = [NewCall(0, "echo", {"text": "a"}, id="tu0", queue="io"),
         NewCall(1, "echo", {"text": "b"}, id="tu1", queue="io"),
         NewCall(2, "nope", {}, id="tu2", refused=BAD_ARGS)]


def agent_plan(max_turns: int = 4) -> Plan:
    return Plan.model_validate({"goal": "g", "steps": [
        {"id": "pick", "tool": "agent",
         "args": {"task": "pick one", "tools": ["echo"], "max_turns": max_turns}},
        {"id": "after", "tool": "echo", "args": {"text": {"$ref": "pick"}},
         "depends_on": ["pick"]}]})


def started(store: RunStore, max_turns: int = 4) -> str:
    """A running run whose agent step ``pick`` runs its attempt 1 (task ``S``)."""
    run_id = store.create_run("g", agent_plan(max_turns))
    assert store.start_run(run_id)
    assert store.begin_step(run_id, "pick", 1, "w", 3, task_id="S").attempt == 1
    return run_id


def thinking(store: RunStore, run_id: str, turn: int = 0, task: str = "S", **kw: Any):
    begun = store.begin_turn(run_id, "pick", 0, turn, "w", task_id=task, **kw)
    assert begun.state == "run", begun
    return begun


def tools_turn(store: RunStore, run_id: str, calls=CALLS, task: str = "S"):
    """Turn 0 asks for ``calls``."""
    thinking(store, run_id, 0, task, attempt=1)
    return store.record_turn(run_id, "pick", 0, 0, task, kind="tools", content=CONTENT,
                             text="Checking both.", stop_reason="tool_use",
                             usage={"input_tokens": 550, "output_tokens": 20},
                             latency_ms=412.5, calls=calls, handoff_s=60)


def settle(store: RunStore, run_id: str, index: int, output: Any = None, turn: int = 0):
    assert store.begin_call(run_id, "pick", 0, turn, index, f"w{index}", 3,
                            task_id=f"C{index}").state == "run"
    return store.finish_call(run_id, "pick", 0, turn, index, attempt=1, outcome="succeeded",
                             output=output if output is not None else {"i": index})


def events(store: RunStore, run_id: str, kind: str) -> list[tuple[str, Any]]:
    return [(str(e.status), e.data) for e in store.events(run_id) if e.type == kind]


def lease(store: RunStore, run_id: str, name: str) -> float:
    return float(store.r.hget(RunKeys(run_id).leases, name) or 0)


def lapse(store: RunStore, run_id: str, name: str) -> None:
    store.r.hset(RunKeys(run_id).leases, name, "1.0")
