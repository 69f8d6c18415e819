"""The run store against a real Redis, no workers: the fixture and the helpers the store
tests share."""

from __future__ import annotations

import pytest

from planner.language.plan import Plan
from planner.store.records import ErrorRecord
from planner.store.runs import Finish, RunStore
from tests import redis_server

# A database no other test uses (tests/llm/test_usage.py holds 5; the engine tests 4; the
# integration tests 6-11; the benchmarks 12): every store test flushes it.
DB = 13
DIAMOND = [("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"])]
BOOM = ErrorRecord(type="PermanentError", message="boom", attempt=1)


@pytest.fixture
def store() -> RunStore:
    s = RunStore.from_url(redis_server.url(DB))
    s.r.flushdb()
    return s


def plan(steps=DIAMOND, goal: str = "g") -> Plan:
    """A plan of echo steps: ``(id, [dependencies])`` each."""
    return Plan.model_validate({"goal": goal, "steps": [
        {"id": sid, "tool": "echo", "args": {"text": sid}, "depends_on": deps}
        for sid, deps in steps]})


def running(store: RunStore, p: Plan | None = None) -> str:
    run_id = store.create_run("g", p or plan())
    assert store.start_run(run_id)
    return run_id


def done(store: RunStore, run_id: str, sid: str, output=None) -> Finish:
    """Begin and finish a step (it must be ready)."""
    assert store.begin_step(run_id, sid, 1, "w", 3).state == "run"
    return store.finish_step(run_id, sid, output=output or sid.upper(), worker="w")
