"""The adaptive loop on real workers: replanning after a failure, human approval, and a
budget pause, with Claude through the real SDK against the fake Messages API server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest

from planner import RunOptions
from planner.store.records import RunReport
from tests.fake_anthropic import FakeAnthropic, text, tool_use
from tests.integration.conftest import ROOT, Engine
from tests.integration.helpers import started_counts

# The first plan: a slow branch that has nothing to do with the failure, a quick step whose
# result the replan reuses, and a step that fails for good, with a step that reads it.
ROUTE = {"goal": "g", "steps": [
    {"id": "slow", "tool": "sleep", "args": {"seconds": 2.5, "value": "slow-done"}},
    # Long enough that "slow" has surely started when "bad" fails.
    {"id": "quick", "tool": "sleep", "args": {"seconds": 0.3, "value": {"n": 1}}},
    {"id": "bad", "tool": "fail", "args": {"times": -1, "kind": "permanent"},
     "depends_on": ["quick"]},
    {"id": "after_bad", "tool": "echo", "args": {"value": {"$ref": "bad"}}},
]}
# The replanner routes around it: reads the completed step, waits for the running one.
AROUND = {"goal": "g", "steps": [
    {"id": "fix", "tool": "echo", "args": {"value": {"$ref": "quick.n"}}},
    {"id": "final", "tool": "echo", "args": {"value": [{"$ref": "fix"}, {"$ref": "slow"}]}},
]}
TWO_FAILURES = {"goal": "g", "steps": [
    {"id": "kept", "tool": "sleep", "args": {"seconds": 0.3, "value": "kept"}},
    {"id": "bad1", "tool": "fail", "args": {"times": -1, "kind": "permanent"},
     "depends_on": ["kept"]},
    {"id": "wait", "tool": "sleep", "args": {"seconds": 0.8}},
    {"id": "bad2", "tool": "fail", "args": {"times": -1, "kind": "permanent"},
     "depends_on": ["wait"]},
]}
INSTEAD = {"goal": "g", "steps": [
    {"id": "instead", "tool": "echo", "args": {"value": {"$ref": "kept"}}}]}
DOOMED = {"goal": "g", "steps": [
    {"id": "earned", "tool": "echo", "args": {"value": 42}},
    {"id": "doomed", "tool": "fail", "args": {"times": -1, "kind": "permanent"}}]}
THINK = {"goal": "g", "steps": [
    {"id": "think1", "tool": "llm", "args": {"prompt": "first thought"}},
    {"id": "think2", "tool": "llm", "args": {"prompt": ["second", {"$ref": "think1"}]}}]}
PLANS = {"route around": ROUTE, "two failures": TWO_FAILURES, "doomed": DOOMED,
         "think twice": THINK}
REPLANS: dict[str, list[dict[str, Any]]] = {
    "route around": [AROUND], "two failures": [INSTEAD],
    # Never valid: the repairs run out.
    "doomed": [{"goal": "g", "steps": [{"id": "x", "tool": "teleport", "args": {}}]}]}


def responder(role: str, body: dict[str, Any]) -> dict[str, Any]:
    shown = json.dumps(body["messages"])
    goal = next((g for g in PLANS if g in shown), None)
    if role == "planner" and goal:
        return tool_use("submit_plan", PLANS[goal])
    if role == "replanner" and goal:
        turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
        answers = REPLANS[goal]
        return tool_use("submit_plan", answers[min(turn, len(answers) - 1)])
    if role == "synthesizer":
        return text("partial answer: only part of it" if "The run failed" in shown
                    else "the whole answer")
    return text("a thought")


@pytest.fixture
def fake(fake_claude: FakeAnthropic) -> FakeAnthropic:
    return fake_claude.serve(responder)


def test_a_failed_step_is_replanned_keeping_earned_and_running_work(model_engine: Engine,
                                                                      fake):
    client = model_engine.client
    report = client.wait(client.submit_goal("route around the failure"), 60)
    assert report.status == "succeeded", report
    assert report.answer == "the whole answer"
    # Both versions are in the report, with what the replan changed.
    assert [v.version for v in report.versions] == [1, 2] and report.replans == 1
    v2 = report.versions[1]
    assert v2.reason == "replan" and v2.failed == ["bad"]
    assert v2.dropped == ["after_bad", "bad"] and set(v2.added) == {"fix", "final"}
    assert set(v2.kept) == {"quick", "slow"}
    steps = report.steps
    assert steps["bad"].status == "failed" and steps["after_bad"].status == "replaced"
    assert steps["fix"].output == 1
    # The running step was kept: it ran once, and its late result fed the new version.
    assert steps["final"].output == [1, "slow-done"]
    counts = started_counts(model_engine.events(report.run_id))
    assert counts["slow"] == 1 and counts["quick"] == 1 and "after_bad" not in counts
    # Nothing waited for the replanner that did not need to: the new step started while
    # the unrelated slow branch was still running.
    times = client.store.step_times(report.run_id)
    assert times["fix"][0] < times["slow"][1]
    assert len(fake.of_role("replanner")) == 1
    shown = json.loads(fake.of_role("replanner")[0].body["messages"][0]["content"]
                       .split("JSON:\n")[1].rsplit("\nSubmit", 1)[0])
    assert [s["id"] for s in shown["completed_steps"]] == ["quick"]
    assert [s["id"] for s in shown["running_steps"]] == ["slow"]
    assert shown["failed_steps"][0]["error"]["type"] == "PermanentError"
    assert shown["cannot_run"] == ["after_bad"]
    events = [e for e in model_engine.events(report.run_id) if e.type == "plan.installed"]
    assert [e.data["version"] for e in events] == [1, 2]


def test_a_failure_while_the_replanner_thinks_never_starts_a_second_one(
        model_engine: Engine, fake):
    fake.inject("replanner", delay_s=1.5)  # bad2 fails while the replanner thinks
    client = model_engine.client
    report = client.wait(client.submit_goal("two failures at once"), 60)
    assert report.status == "succeeded", report
    assert len(fake.of_role("replanner")) == 1
    assert report.steps["bad1"].status == "failed"
    assert report.steps["bad2"].status == "failed"  # recorded, and routed around
    assert report.steps["instead"].output == "kept"
    assert report.plan is not None
    assert [s.id for s in report.plan.steps] == ["kept", "wait", "instead"]


def test_replans_exhausted_end_failed_with_a_partial_answer(model_engine: Engine, fake):
    client = model_engine.client
    report = client.wait(client.submit_goal("doomed from the start", RunOptions(max_replans=0)), 60)
    assert report.status == "failed" and report.partial
    assert report.answer == "partial answer: only part of it"
    assert report.error is not None and report.error.type == "ReplanLimit"
    assert "max_replans=0" in report.error.message
    assert report.steps["earned"].status == "succeeded"
    assert not fake.of_role("replanner")
    assert "earned" in json.dumps(fake.of_role("synthesizer")[0].body["messages"])


def test_a_replan_that_stays_invalid_ends_failed_with_a_partial_answer(
        model_engine: Engine, fake):
    client = model_engine.client
    report = client.wait(client.submit_goal("doomed again"), 60)
    assert report.status == "failed" and report.partial, report
    assert report.error is not None and report.error.type == "PlanInvalid"
    assert any("teleport" in p for p in report.error.problems or [])
    assert len(fake.of_role("replanner")) == 3  # 1 + 2 repairs
    assert report.answer == "partial answer: only part of it"
    assert all(s.status not in ("running", "pending") for s in report.steps.values())


def test_a_plan_waits_for_approval_and_runs_edited(engine: Engine):
    client = engine.client
    plan = {"goal": "g", "steps": [{"id": "a", "tool": "echo", "args": {"value": 1}}]}
    run_id = client.submit(plan, RunOptions(approve=True))
    report = client.wait(run_id, 5)  # returns at once: the run waits for a person
    assert report.status == "awaiting_approval" and "approve" in (report.reason or "")
    time.sleep(0.5)
    assert "step.started" not in [e.type for e in engine.events(run_id)]
    edited = {"goal": "g", "steps": [{"id": "b", "tool": "echo", "args": {"value": 2}}]}
    client.approve(run_id, edited)
    report = client.wait(run_id, 30)
    assert report.status == "succeeded" and report.answer == {"b": 2}
    assert report.steps["a"].status == "replaced"
    assert report.versions[-1].reason == "edited before approval"


def test_a_rejected_plan_never_runs(engine: Engine):
    client = engine.client
    plan = {"goal": "g", "steps": [{"id": "a", "tool": "echo", "args": {"value": 1}}]}
    run_id = client.submit(plan, RunOptions(approve=True))
    client.reject(run_id, "too expensive")
    report = client.report(run_id)
    assert report.status == "cancelled" and report.error is not None
    assert report.error.type == "Rejected" and "too expensive" in report.error.message
    assert report.steps["a"].status == "cancelled" and report.steps["a"].attempts == 0


def test_budget_pause_then_resume(model_engine: Engine, fake):
    client = model_engine.client
    # The planner's call (~550 tokens) fits; think1's crosses: the run pauses.
    run_id = client.submit_goal("think twice", RunOptions(budget_tokens=600, on_budget="pause"))
    report = client.wait(run_id, 60)
    assert report.status == "paused", report
    assert "budget exceeded" in (report.reason or "")
    # The paid call is kept: think1 pauses the run from inside its model call, so its
    # finish is recorded just after the pause that ended the wait.
    deadline = time.monotonic() + 20
    while (think1 := client.report(run_id).steps["think1"].status) != "succeeded":
        assert think1 == "running" and time.monotonic() < deadline, think1
        time.sleep(0.05)
    time.sleep(1.0)
    assert client.report(run_id).steps["think2"].status == "pending"
    client.resume(run_id, budget_tokens=100_000)
    report = client.wait(run_id, 60)
    assert report.status == "succeeded", report
    assert report.steps["think2"].output == "a thought"


def test_cli_approve_flow(model_engine: Engine, fake):
    def chordal(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "planner.cli", *args],
                              env=model_engine.env, cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    result = chordal("run", "route around, approved", "--approve", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["status"] == "awaiting_approval"
    assert [s["id"] for s in shown["plan"]["steps"]] == ["slow", "quick", "bad", "after_bad"]
    wrong = chordal("resume", shown["run_id"])
    assert wrong.returncode == 2 and "not paused" in wrong.stderr
    assert chordal("approve", shown["run_id"]).returncode == 0
    report = RunReport.model_validate_json(
        chordal("status", shown["run_id"], "--json").stdout)
    assert report.status in ("running", "succeeded")
    assert model_engine.client.wait(shown["run_id"], 60).status == "succeeded"


def test_cancel_while_the_replanner_thinks(model_engine: Engine, fake):
    fake.inject("replanner", delay_s=1.5)
    client = model_engine.client
    run_id = client.submit_goal("route around, then cancelled")
    deadline = time.monotonic() + 30
    while not fake.of_role("replanner"):
        assert time.monotonic() < deadline, "the replanner was never called"
        time.sleep(0.05)
    assert client.cancel(run_id)
    time.sleep(2.5)  # the replanner answers, and "slow" finishes: neither changes the run
    report = client.report(run_id)
    assert report.status == "cancelled"
    assert [v.version for v in report.versions] == [1]
    assert "fix" not in report.steps and "final" not in report.steps
    assert report.steps["slow"].status == "succeeded"  # its late result is recorded
    assert report.steps["after_bad"].status == "cancelled"
