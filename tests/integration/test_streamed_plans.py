"""A plan that starts while it is written (CHORDAL_STREAM_PLANS): the planner's answer is
streamed by the real SDK from the fake Messages API, and real workers run each step as
soon as it and what it reads are written. Order is read from the run's events (the Redis
clock), never from timings."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from planner import RunOptions
from planner.store.records import RunEvent
from tests.fake_anthropic import API_KEY, FakeAnthropic, text, tool_use
from tests.integration.conftest import Engine, _make_engine

TEN = {"goal": "g", "steps": [
    {"id": "a", "tool": "echo", "args": {"value": 1}},
    {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}}},
    {"id": "c", "tool": "echo", "args": {"value": [{"$ref": "a"}, 2]}},
    {"id": "d", "tool": "echo", "args": {"value": "d"}},
    {"id": "e", "tool": "concat", "args": {"items": ["x", {"$ref": "d"}]}},
    {"id": "f", "tool": "echo", "args": {"value": {"b": {"$ref": "b"}, "c": {"$ref": "c"}}}},
    {"id": "g", "tool": "echo", "args": {"value": 7}, "depends_on": ["e"]},
    {"id": "h", "tool": "echo", "args": {"value": {"$ref": "g"}}},
    {"id": "i", "tool": "concat", "args": {"items": [{"$ref": "e"}, "!"]}},
    {"id": "last", "tool": "echo", "args": {"value": [{"$ref": "f"}, {"$ref": "h"}]}},
]}
FIRST = {"goal": "g", "steps": [
    {"id": "keep", "tool": "echo", "args": {"value": 1}},
    {"id": "gone", "tool": "echo", "args": {"value": 2}},
    {"id": "changed", "tool": "echo", "args": {"value": 3}},
    {"id": "bad", "tool": "teleport", "args": {}},
]}
REPAIRED = {"goal": "g", "steps": [
    {"id": "keep", "tool": "echo", "args": {"value": 1}},
    {"id": "changed", "tool": "echo", "args": {"value": 30}},
    {"id": "after", "tool": "echo", "args": {"value": {"$ref": "changed"}}},
]}


def planner(plans: dict[str, list[dict[str, Any]]]) -> Callable[[str, dict[str, Any]],
                                                                 dict[str, Any]]:
    def answer(role: str, body: dict[str, Any]) -> dict[str, Any]:
        if role == "planner":
            first = json.dumps(body["messages"][0]["content"])
            goal = next(g for g in plans if g in first)
            turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
            return tool_use("submit_plan", plans[goal][min(turn, len(plans[goal]) - 1)])
        return text("the answer")
    return answer


@pytest.fixture(scope="module")
def stream_engine(redis_base: str, tmp_path_factory: pytest.TempPathFactory,
                  fake_claude: FakeAnthropic) -> Iterator[Engine]:
    """The model engine's workers with CHORDAL_STREAM_PLANS=1 (``model_engine`` plans
    whole, the default)."""
    os.environ["ANTHROPIC_API_KEY"] = API_KEY  # the client checks a model is configured
    yield from _make_engine("model-stream", f"{redis_base}/28",
                            tmp_path_factory.mktemp("stream"), None, ANTHROPIC_API_KEY=API_KEY,
                            ANTHROPIC_BASE_URL=fake_claude.url, CHORDAL_LLM_MAX_RETRIES="0",
                            CHORDAL_LLM="anthropic", CHORDAL_STREAM_PLANS="1")


def until(engine: Engine, done: Callable[[list[RunEvent]], bool]) -> Callable[[], None]:
    """A hold for the fake: wait (bounded) until the newest run's events satisfy ``done``."""
    def wait() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = engine.client.store.r.zrange("chordal:runs", -1, -1)
            if runs and done(engine.events(runs[0])):
                return
            time.sleep(0.02)
    return wait


def position(events: list[RunEvent], kind: str, step: str, status: str | None = None) -> int:
    return next(i for i, e in enumerate(events)
                if e.type == kind and e.step == step and (status is None or e.status == status))


def outputs(engine: Engine, run_id: str) -> dict[str, Any]:
    report = engine.client.wait(run_id, 60)
    assert report.status == "succeeded", report
    return {sid: (s.output, s.attempts) for sid, s in report.steps.items()}


def test_the_first_step_starts_before_the_last_is_written_with_the_same_results(
        stream_engine: Engine, model_engine: Engine, fake_claude: FakeAnthropic) -> None:
    fake_claude.serve(planner({"ten steps": [TEN]}))
    fake_claude.hold('"id": "last"', until(stream_engine, lambda ev: any(
        e.type == "step.finished" and e.step == "a" for e in ev)))
    run_id = stream_engine.client.submit_goal("ten steps")
    streamed = outputs(stream_engine, run_id)
    events = stream_engine.events(run_id)
    assert position(events, "step.started", "a") < position(events, "plan.step_written", "last")
    written = [e.step for e in events if e.type == "plan.step_written"]
    assert written == [s["id"] for s in TEN["steps"]]
    report = stream_engine.client.report(run_id)
    assert report.versions[-1].reason == "planned" and report.versions[-1].cancelled == []
    assert {v.reason for v in report.versions[:-1]} == {"streamed"}
    assert [s.id for s in report.plan.steps] == [s["id"] for s in TEN["steps"]]

    fake_claude.serve(planner({"ten steps": [TEN]}))
    whole_id = model_engine.client.submit_goal("ten steps")
    assert outputs(model_engine, whole_id) == streamed
    assert model_engine.client.report(whole_id).answer == report.answer == "the answer"
    assert not [e for e in model_engine.events(whole_id) if e.type == "plan.step_written"]
    assert fake_claude.of_role("planner")[-1].body.get("stream") is None
    assert streamed["last"][0] == [{"b": 1, "c": [1, 2]}, 7]


def test_an_invalid_streamed_plan_is_repaired_and_its_contradicted_steps_cancelled(
        stream_engine: Engine, fake_claude: FakeAnthropic) -> None:
    fake_claude.serve(planner({"fix me": [FIRST, REPAIRED]}))
    # The bad step is written only once the three early ones have finished.
    fake_claude.hold('"id": "bad"', until(stream_engine, lambda ev: {
        e.step for e in ev if e.type == "step.finished"} >= {"keep", "gone", "changed"}))
    run_id = stream_engine.client.submit_goal("fix me")
    got = outputs(stream_engine, run_id)
    assert fake_claude.of_role("planner")[0].body.get("stream") is True
    # "keep" kept its early result (one attempt); "changed" ran again as it now reads.
    assert got == {"keep": (1, 1), "changed": (30, 2), "after": (30, 1), "gone": (2, 1)}
    report = stream_engine.client.report(run_id)
    assert report.steps["gone"].status == "replaced"
    assert report.versions[-1].cancelled == ["changed", "gone"]
    assert report.versions[-1].reason == "planned"
    events = stream_engine.events(run_id)
    cancelled = {e.step: e.data["action"] for e in events
                 if e.type == "step.cancelled"}
    assert cancelled == {"changed": "reset", "gone": "drop"}
    assert len(fake_claude.of_role("planner")) == 2  # the repair was asked, unstreamed
    assert fake_claude.of_role("planner")[1].body.get("stream") is None


def test_a_run_that_needs_approval_plans_whole(stream_engine: Engine,
                                              fake_claude: FakeAnthropic) -> None:
    fake_claude.serve(planner({"approve me": [TEN]}))
    run_id = stream_engine.client.submit_goal("approve me", RunOptions(approve=True))
    deadline = time.monotonic() + 30
    while stream_engine.client.report(run_id).status != "awaiting_approval":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not any(e.type == "plan.step_written" for e in stream_engine.events(run_id))
    stream_engine.client.cancel(run_id)


SLOW_FIRST = {"goal": "g", "steps": [
    {"id": "slow", "tool": "sleep", "args": {"seconds": 1.5, "value": 1}},
    {"id": "bad", "tool": "teleport", "args": {}},
]}
SLOW_REPAIRED = {"goal": "g", "steps": [
    {"id": "slow", "tool": "sleep", "args": {"seconds": 0.1, "value": 2}},
]}


@pytest.mark.slow  # the new attempt comes back when the old one's lease would lapse (~30 s)
def test_a_changed_step_still_running_is_run_again_after_its_old_attempt(
        stream_engine: Engine, fake_claude: FakeAnthropic) -> None:
    fake_claude.serve(planner({"slow fix": [SLOW_FIRST, SLOW_REPAIRED]}))
    fake_claude.hold('"id": "bad"', until(stream_engine, lambda ev: any(
        e.type == "step.started" and e.step == "slow" for e in ev)))
    run_id = stream_engine.client.submit_goal("slow fix")
    report = stream_engine.client.wait(run_id, 60)
    assert report.status == "succeeded", report
    slow = report.steps["slow"]
    assert (slow.output, slow.attempts) == (2, 2)
    first, second = slow.history
    assert first.status in ("superseded", "cancelled") and second.status == "succeeded"
    # The tool never ran twice at once: the new attempt began after the old one ended.
    assert first.finished_at and second.started_at and first.finished_at <= second.started_at
    assert report.versions[-1].cancelled == ["slow"]
