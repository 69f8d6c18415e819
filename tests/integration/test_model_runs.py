"""Goals planned, executed and synthesized by Claude (the real SDK against the fake
Messages API server), on real workers."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from planner import RunOptions
from planner.store.records import RunReport
from planner.usage import cost_usd
from tests.fake_anthropic import FakeAnthropic, overloaded, rate_limited, text, tool_use
from tests.integration.conftest import ROOT, Engine

TRIP = {"goal": "ignored: the goal is the user's", "steps": [
    {"id": "lisbon", "tool": "echo", "args": {"value": {"city": "Lisbon", "rent": 1150}}},
    {"id": "berlin", "tool": "echo", "args": {"value": {"city": "Berlin", "rent": 1300}}},
    {"id": "compare", "tool": "llm", "description": "Compare the two",
     "args": {"prompt": ["Which city is cheaper?", {"$ref": "lisbon"}, {"$ref": "berlin"}]}},
]}
BROKEN = {"goal": "g", "steps": [{"id": "x", "tool": "teleport", "args": {}}]}


def responder(plans: dict[str, list[Any]]):
    """Planner: the plans for the goal, one per turn (the last repeats). Executor: names the
    cities it was shown. Synthesizer: a fixed sentence."""

    def answer(role: str, body: dict[str, Any]) -> dict[str, Any]:
        first = json.dumps(body["messages"][0]["content"])
        if role == "planner":
            goal = next(g for g in plans if g in first)
            turn = sum(1 for m in body["messages"] if m["role"] == "assistant")
            return tool_use("submit_plan", plans[goal][min(turn, len(plans[goal]) - 1)])
        if role == "executor":
            shown = json.dumps(body["messages"])
            return text("Lisbon is cheaper" if "Lisbon" in shown and "1300" in shown
                        else "no data")
        return text("Lisbon is cheaper than Berlin by 150 a month.")

    return answer


@pytest.fixture
def fake(fake_claude: FakeAnthropic) -> FakeAnthropic:
    return fake_claude.serve(responder({"compare rents": [TRIP], "broken goal": [BROKEN],
                                        "fixable goal": [BROKEN, TRIP]}))


def test_a_goal_is_planned_executed_and_synthesized(model_engine: Engine, fake):
    run_id = model_engine.client.submit_goal("compare rents in Lisbon and Berlin")
    report = model_engine.client.wait(run_id, 60)
    assert report.status == "succeeded", report
    assert report.answer == "Lisbon is cheaper than Berlin by 150 a month."
    assert report.steps["compare"].output == "Lisbon is cheaper"
    assert [s.id for s in report.plan.steps] == ["lisbon", "berlin", "compare"]
    assert report.plan.goal == "compare rents in Lisbon and Berlin"
    usage = report.usage
    assert usage is not None
    assert {r: u.calls for r, u in usage.by_role.items()} == {
        "executor": 1, "planner": 1, "synthesizer": 1}
    assert usage.by_step["compare"].calls == 1
    total = usage.total
    assert total.input_tokens == 300 and total.output_tokens == 150
    assert total.cache_read_input_tokens + total.cache_creation_input_tokens == 1200
    prices = model_engine.client.settings.budget.prices
    expected = sum(cost_usd(model_engine.client.settings.model.__getattribute__(f"{r}_model"), {
        "input_tokens": 100, "output_tokens": 50,
        "cache_read_input_tokens": usage.by_role[r].cache_read_input_tokens,
        "cache_creation_input_tokens": usage.by_role[r].cache_creation_input_tokens},
        prices) for r in ("planner", "executor", "synthesizer"))
    assert total.cost_usd == pytest.approx(expected, abs=1e-6)
    assert total.cost_usd > 0
    executor = fake.of_role("executor")[0].body
    assert "Which city is cheaper?" in executor["messages"][0]["content"]
    assert '"rent": 1300' in executor["messages"][0]["content"]  # the $ref, resolved
    assert executor["model"] == model_engine.client.settings.model.executor_model


def test_cli_run_goal_reports_usage_and_plan(model_engine: Engine, fake):
    result = subprocess.run(
        [sys.executable, "-m", "planner.cli", "run", "compare rents, please", "--wait",
         "--json"], env=model_engine.env, cwd=ROOT, capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 0, result.stderr
    report = RunReport.model_validate_json(result.stdout)
    assert report.usage is not None and report.usage.total.calls == 3
    assert report.plan is not None and report.plan.steps[2].tool == "llm"
    plan = subprocess.run(
        [sys.executable, "-m", "planner.cli", "plan", "compare rents now", "--json"],
        env=model_engine.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["steps"][0]["id"] == "lisbon"


def test_429_in_an_llm_step_is_retried_by_the_task_after_retry_after(model_engine, fake):
    fake.inject("executor", status=429, headers={"retry-after": "1"}, body=rate_limited())
    report = model_engine.client.wait(model_engine.client.submit_goal("compare rents"), 60)
    assert report.status == "succeeded", report
    assert report.steps["compare"].attempts == 2
    first, second = fake.of_role("executor")
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.95


def test_529_while_planning_is_retried_by_the_plan_task(model_engine, fake):
    fake.inject("planner", status=529, body=overloaded())
    report = model_engine.client.wait(model_engine.client.submit_goal("compare rents"), 60)
    assert report.status == "succeeded", report
    assert [r.status for r in fake.of_role("planner")] == [529, 200]


def test_an_invalid_plan_is_repaired_then_runs(model_engine, fake):
    report = model_engine.client.wait(model_engine.client.submit_goal("fixable goal"), 60)
    assert report.status == "succeeded", report
    assert report.usage.by_role["planner"].calls == 2


def test_repair_exhausted_fails_the_run_with_the_last_plan(model_engine, fake):
    report = model_engine.client.wait(model_engine.client.submit_goal("broken goal"), 60)
    assert report.status == "failed"
    error = report.error
    assert error.type == "PlanInvalid" and error.plan == BROKEN
    assert any("unknown tool 'teleport'" in p for p in error.problems or [])
    assert report.usage.by_role["planner"].calls == 3  # 1 + 2 repairs
    assert report.steps == {}


def test_budget_stops_the_run_with_partial_results(model_engine, fake):
    think = {"goal": "g", "steps": [
        {"id": "first", "tool": "echo", "args": {"value": 1}},
        {"id": "think", "tool": "llm", "args": {"prompt": ["go", {"$ref": "first"}]}},
        {"id": "after", "tool": "echo", "args": {"value": {"$ref": "think"}}},
    ]}
    fake.responder = responder({"tight budget": [think]})
    # Each fake call costs 550 tokens: planning fits, the llm step crosses 1,000.
    run_id = model_engine.client.submit_goal("tight budget", RunOptions(budget_tokens=1000))
    report = model_engine.client.wait(run_id, 60)
    assert report.status == "failed"
    assert report.error.type == "BudgetExceeded"
    assert "budget is 1000" in report.error.message
    assert report.answer == {"partial": {"first": 1}}
    assert report.steps["after"].status == "cancelled" and report.partial
    assert report.steps["after"].attempts == 0
    assert "synthesizer" not in report.usage.by_role


def test_budget_in_usd(model_engine, fake):
    run_id = model_engine.client.submit_goal("compare rents", RunOptions(budget_usd=0.000001))
    report = model_engine.client.wait(run_id, 60)
    assert report.status == "failed" and report.error.type == "BudgetExceeded"
    assert report.usage.by_role == {"planner": report.usage.by_role["planner"]}


def test_models_can_be_chosen_per_run(model_engine: Engine, fake):
    result = subprocess.run(
        [sys.executable, "-m", "planner.cli", "run", "compare rents", "--wait", "--json",
         "--model", "planner=claude-sonnet-5-5", "--model", "synthesizer=claude-opus-5-5"],
        env=model_engine.env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert fake.of_role("planner")[0].body["model"] == "claude-sonnet-5-5"
    assert fake.of_role("synthesizer")[0].body["model"] == "claude-opus-5-5"
    assert fake.of_role("executor")[0].body["model"] == \
        model_engine.client.settings.model.executor_model
    bad = subprocess.run(
        [sys.executable, "-m", "planner.cli", "run", "x", "--model", "boss=claude"],
        env=model_engine.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown role 'boss'" in bad.stderr
