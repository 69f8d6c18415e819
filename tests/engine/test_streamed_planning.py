"""A plan that starts while it is written (planner/engine/streaming.py), decision by
decision on a real Redis: an in-process model streams its plan, and steps are delivered by
hand while it writes. What must hold: no join ends the run and no replanner acts while
the plan streams, both are woken by the final install, and a planning task that stopped
mid-stream plans again over what the first answer started."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from planner.engine import join, outcomes, replan, start, steps
from planner.engine.runtime import Runtime
from planner.errors import ModelTransientError
from planner.llm.model import ModelRequest, ModelResponse, Usage
from planner.vocabulary import RunStatus, StepStatus
from planner.wire import FINALIZE_TASK, REPLAN_TASK, STEP_TASK, SYNTHESIZE_TASK
from tests.engine.conftest import MakeRuntime, echo, failing, sent

STREAM = {"CHORDAL_STREAM_PLANS": "1"}


class Writer:
    """A model that writes each plan (one per planning call) 8 characters at a time;
    ``during(written)`` runs after each piece; ``drop_at``: the call raises a transient
    error (the connection dropped) once that text is written."""

    name = "writer"

    def __init__(self, *plans: dict[str, Any]) -> None:
        self.plans = list(plans)
        self.during: Callable[[str], None] = lambda written: None
        self.drop_at: str | None = None
        self.calls = 0

    def _response(self, plan: dict[str, Any]) -> ModelResponse:
        return ModelResponse([{"type": "tool_use", "id": "t1", "name": "submit_plan",
                               "input": plan}], Usage(1, 1), "writer", "tool_use")

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        return self._response(self.plans[min(self.calls, len(self.plans)) - 1])

    def stream(self, request: ModelRequest, on_json: Callable[[str], None]) -> ModelResponse:
        self.calls += 1
        plan = self.plans[min(self.calls, len(self.plans)) - 1]
        text = json.dumps(plan)
        for at in range(0, len(text), 8):
            on_json(text[at:at + 8])
            self.during(text[:at + 8])
            if self.drop_at and self.drop_at in text[:at + 8]:
                self.drop_at = None
                raise ModelTransientError("the stream was cut")
        return self._response(plan)


def plan(*plan_steps: dict[str, Any]) -> dict[str, Any]:
    return {"goal": "g", "steps": list(plan_steps)}


def once(marker: str, act: Callable[[], None]) -> Callable[[str], None]:
    done = False

    def during(written: str) -> None:
        nonlocal done
        if not done and marker in written:
            done = True
            act()
    return during


def deliver(rt: Runtime, run_id: str, step_id: str) -> Any:
    return steps.run_step(rt, run_id, step_id, rt.store.run_state(run_id).version, "w")


def test_early_steps_finishing_do_not_end_the_run_before_the_plan_is_whole(
        make_rt: MakeRuntime) -> None:
    model = Writer(plan(echo("a", 1), echo("b", 2), echo("c", 3)))
    rt = make_rt(model, **STREAM)
    run_id = rt.store.create_run("g")

    def both() -> None:
        for sid in ("a", "b"):
            assert deliver(rt, run_id, sid) is None
        # Every installed step finished: the join it sends must not end the run.
        finalizes = [m for m in sent(rt) if m.task == FINALIZE_TASK]
        assert finalizes
        join.finalize(rt, run_id, finalizes[-1].args[1])
        assert rt.store.run_state(run_id).status == RunStatus.RUNNING

    model.during = once('"id": "c"', both)
    assert start.plan_run(rt, run_id, 0) is None
    assert not rt.store.streaming(run_id)
    assert [m.args[1] for m in sent(rt) if m.task == STEP_TASK] == ["a", "b", "c"]
    assert deliver(rt, run_id, "c") is None
    run = rt.store.run_state(run_id)
    assert run.remaining == 0 and sent(rt)[-1].task == FINALIZE_TASK
    join.finalize(rt, run_id, run.version)
    assert sent(rt)[-1].task == SYNTHESIZE_TASK  # the join went through: the answer next
    assert [v.reason for v in rt.store.versions(run_id)] == ["streamed"] * 3 + ["planned"]


def test_a_failure_while_the_plan_streams_is_replanned_once_it_is_whole(
        make_rt: MakeRuntime) -> None:
    model = Writer(plan(echo("a"), failing("bad"),
                        echo("c", {"$ref": "bad"}), echo("d")))
    rt = make_rt(model, **STREAM)
    run_id = rt.store.create_run("g")

    def fail() -> None:
        assert isinstance(deliver(rt, run_id, "bad"), outcomes.Failed)
        wake = [m for m in sent(rt) if m.task == REPLAN_TASK]
        assert wake and rt.store.unhandled(run_id) == ["bad"]
        before = rt.store.run_state(run_id).version
        assert replan.replan(rt, run_id, "bad", before) is None  # not while it streams
        assert rt.store.run_state(run_id).version == before

    model.during = once('"id": "d"', fail)
    sent(rt).clear()
    assert start.plan_run(rt, run_id, 0) is None
    tail = [m.task for m in sent(rt)]
    # The final install publishes what is ready, then wakes the replanner.
    assert tail[-1] == REPLAN_TASK and tail.count(REPLAN_TASK) == 2
    assert rt.store.unhandled(run_id) == ["bad"]
    assert rt.store.versions(run_id)[-1].reason == "planned"


def test_a_stream_cut_midway_is_planned_again_over_what_it_started(
        make_rt: MakeRuntime) -> None:
    first = plan(echo("a", 1), echo("b", 2), echo("c", 3))
    second = plan(echo("a", 1), echo("b", 20), echo("e", {"$ref": "b"}))
    model = Writer(first, second)
    model.drop_at = '"id": "c"'
    rt = make_rt(model, **STREAM)
    run_id = rt.store.create_run("g")
    model.during = once('"id": "c"', lambda: [deliver(rt, run_id, s) for s in ("a", "b")])
    retry = start.plan_run(rt, run_id, 0)
    assert isinstance(retry, outcomes.Retry)  # the task retries the planning call
    assert rt.store.streaming(run_id)
    assert rt.store.run_state(run_id).status == RunStatus.RUNNING

    assert start.plan_run(rt, run_id, 1) is None  # the retry plans again
    states = rt.store.step_states(run_id)
    assert states["a"].status == StepStatus.SUCCEEDED and states["a"].attempts == 1
    assert states["b"].status == StepStatus.PENDING and states["b"].attempts == 1
    assert rt.store.versions(run_id)[-1].cancelled == ["b"]
    assert deliver(rt, run_id, "b") is None
    assert rt.store.outputs(run_id, ["b"]) == {"b": 20}
    assert rt.store.step_states(run_id)["b"].attempts == 2


def test_an_early_step_that_fails_the_run_stops_the_planning(make_rt: MakeRuntime) -> None:
    model = Writer(plan(failing("bad", on_failure="fail"), echo("later")))
    rt = make_rt(model, **STREAM)
    run_id = rt.store.create_run("g")
    model.during = once('"id": "later"', lambda: deliver(rt, run_id, "bad"))
    assert start.plan_run(rt, run_id, 0) is None
    run = rt.store.run_state(run_id)
    assert run.status == RunStatus.FAILED and not rt.store.streaming(run_id)
    assert [m.args[1] for m in sent(rt) if m.task == STEP_TASK] == ["bad"]


def test_a_plan_still_invalid_after_its_repairs_ends_the_run_and_its_early_steps(
        make_rt: MakeRuntime) -> None:
    broken = plan(echo("a"), {"id": "x", "tool": "teleport", "args": {}})
    rt = make_rt(Writer(broken), CHORDAL_PLAN_REPAIRS="1", **STREAM)
    run_id = rt.store.create_run("g")
    assert start.plan_run(rt, run_id, 0) is None
    run = rt.store.run_state(run_id)
    assert run.status == RunStatus.FAILED and run.error and run.error.type == "PlanInvalid"
    assert not rt.store.streaming(run_id)
    assert rt.store.step_states(run_id)["a"].status == StepStatus.CANCELLED
