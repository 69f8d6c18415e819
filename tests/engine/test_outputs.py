"""What a step records: plain JSON of bounded size, or a clear permanent failure; and a
worker that lacks a step's tool fails that step clearly instead of hanging the run."""

from __future__ import annotations

from typing import Any

from planner.engine import steps
from planner.engine.outcomes import Failed
from planner.tools import ToolRegistry, load_registry, tool
from tests.engine.conftest import MakeRuntime, sent, started


@tool
def nan_out() -> float:
    """Return NaN."""
    return float("nan")


@tool
def raw_bytes() -> Any:
    """Return bytes."""
    return b"\x00raw"


@tool
def big(n: int) -> str:
    """Return n characters."""
    return "x" * n


def registry() -> ToolRegistry:
    reg = load_registry(["planner.tools.testing"])
    for t in (nan_out, raw_bytes, big):
        reg.add(t)
    return reg


def run_one(make_rt: MakeRuntime, tool_name: str, args: dict[str, Any], **env: str):
    rt = make_rt(**env)
    rt.tools = registry()
    run = started(rt, {"id": "s", "tool": tool_name, "args": args, "on_failure": "fail"})
    decision = steps.run_step(rt, run, "s", 1, "w")
    report = rt.store.report(run)
    # A step that fails for good comes back for its task to raise; one that succeeds not.
    assert isinstance(decision, Failed) if report.steps["s"].status == "failed" else not decision
    return rt, run, report


def test_nan_is_refused_not_turned_into_null(make_rt: MakeRuntime) -> None:
    _, _, report = run_one(make_rt, "nan_out", {})
    step = report.steps["s"]
    assert step.status == "failed" and step.output is None
    assert step.error is not None and "nan, which JSON cannot carry" in step.error.message
    assert report.status == "failed"


def test_an_output_that_is_not_json_fails_its_step(make_rt: MakeRuntime) -> None:
    _, _, report = run_one(make_rt, "raw_bytes", {})
    error = report.steps["s"].error
    assert error is not None and error.type == "PermanentError"
    assert "not plain JSON" in error.message and "bytes" in error.message


def test_an_output_over_the_limit_fails_its_step_saying_how_to_raise_it(
        make_rt: MakeRuntime) -> None:
    _, _, report = run_one(make_rt, "big", {"n": 5_000}, CHORDAL_MAX_OUTPUT_BYTES="1000")
    error = report.steps["s"].error
    assert error is not None and error.transient is False
    assert "5002 bytes of JSON; the limit is 1000" in error.message
    assert "CHORDAL_MAX_OUTPUT_BYTES" in error.message
    _, _, fine = run_one(make_rt, "big", {"n": 500}, CHORDAL_MAX_OUTPUT_BYTES="1000")
    assert fine.steps["s"].status == "succeeded"


def test_a_worker_without_the_tool_fails_the_step_and_says_what_to_load(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, {"id": "a", "tool": "echo", "args": {"value": 1}},
                  {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}},
                   "on_failure": "fail"})
    steps.run_step(rt, run, "a", 1, "w")
    sent(rt).clear()
    # This worker's process loaded only the built-in tools.
    rt.tools = load_registry([])
    rt._plans.clear()
    assert isinstance(steps.run_step(rt, run, "b", 1, "worker-7"), Failed)
    report = rt.store.report(run)
    error = report.steps["b"].error
    assert report.status == "failed" and error is not None and error.type == "ToolMissing"
    assert "worker worker-7 has no tool 'echo'" in error.message
    assert "CHORDAL_TOOL_MODULES" in error.message
    assert sent(rt) == []


def test_a_failed_run_is_retried_from_where_it_stopped(make_rt: MakeRuntime) -> None:
    from planner.engine import human

    rt = make_rt()
    run = started(rt, {"id": "a", "tool": "echo", "args": {"value": 1}},
                  {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}},
                   "on_failure": "fail"},
                  {"id": "c", "tool": "echo", "args": {"value": {"$ref": "b"}}})
    steps.run_step(rt, run, "a", 1, "w")
    full = rt.tools
    rt.tools = load_registry([])  # a worker without the tool: b fails, the run ends
    rt._plans.clear()
    steps.run_step(rt, run, "b", 1, "w")
    report = rt.store.report(run)
    assert report.status == "failed" and report.steps["c"].status == "cancelled"
    rt.tools = full
    rt._plans.clear()
    sent(rt).clear()
    assert human.retry(rt, run) == ["b", "c"]
    assert [m.args[1] for m in sent(rt)] == ["b"]  # a's result is kept; c waits for b
    assert rt.store.run_state(run).status == "running"
    steps.run_step(rt, run, "b", 1, "w")
    steps.run_step(rt, run, "c", 1, "w")
    report = rt.store.report(run)
    assert report.status == "running" and report.steps["c"].output == 1
    from planner.engine import join
    join.finalize(rt, run, 1)
    report = rt.store.report(run)
    assert report.status == "succeeded" and report.steps["a"].attempts == 1
    assert report.error is None and report.answer == {"c": 1}
    # Only an ended run can be retried, and only its failed or cancelled steps.
    import pytest

    from planner.errors import Conflict
    with pytest.raises(Conflict, match="only a failed or cancelled run"):
        human.retry(rt, run)
