"""Any JSON-shaped input gets Chordal's own clear error naming the field, never an
exception from a serializer, and a rejected plan writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from planner.client import Client
from planner.errors import ChordalError, InvalidInput, PlanInvalid, PlanLoadError
from planner.jsonvalue import json_problems
from planner.language.plan import load_plan_data
from planner.language.validation import Limits, validate
from planner.settings import Settings
from planner.store.keys import RUN_INDEX
from tests import redis_server

ROOT = Path(__file__).resolve().parents[2]


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def plan_with(args: object = None, goal: str = "g", description: str = "") -> dict:
    return {"goal": goal, "steps": [{"id": "s", "tool": "echo", "description": description,
                                     "args": {"value": args}}]}


CASES = {
    "900 deep": (plan_with(nested(900)), "s", "nested more than"),
    "10,000 deep": (plan_with(nested(10_000)), "s", "nested more than"),
    "surrogate in args": (plan_with("\ud800x"), "s", "lone surrogate"),
    "surrogate in goal": (plan_with(1, goal="go \udfff"), None, "lone surrogate"),
    "5,000-digit integer": (plan_with(10 ** 5_000), "s", "bits; the limit"),
    "NaN": (plan_with(float("nan")), "s", "nan is not a JSON number"),
    "Infinity": (plan_with([1, float("inf")]), "s", "inf is not a JSON number"),
    "10 MB goal": (plan_with(1, goal="x" * 10_000_000), None, "CHORDAL_MAX_GOAL_BYTES"),
    "1 MB description": (plan_with(1, description="d" * 1_000_000), "s",
                         "CHORDAL_MAX_DESCRIPTION_BYTES"),
    "bytes": (plan_with(b"raw"), "s", "bytes is not JSON"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_plans_get_one_clear_problem_each(tools, name):
    plan, step, message = CASES[name]
    with pytest.raises(PlanInvalid) as info:
        validate(plan, tools, Limits())
    assert any(p.step == step and message in p.message for p in info.value.problems), \
        info.value.problems


@pytest.mark.parametrize("plan", [[], "plan", None, 42])
def test_a_plan_that_is_not_an_object_is_named_as_such(tools, plan):
    with pytest.raises(PlanInvalid, match="a plan is a JSON object"):
        validate(plan, tools, Limits())


def test_problems_are_found_without_recursion_and_once_per_kind():
    assert json_problems(nested(100_000), 64)[0][1] == "nested more than 64 levels deep"
    assert len(json_problems([float("nan")] * 1_000, 8)) == 1
    assert json_problems({"ok": [1, "two", None, True, 2.5]}, 8) == []


@pytest.fixture
def client(tools):
    url = redis_server.url(2)
    redis.Redis.from_url(url).flushdb()
    return Client(Settings.from_env({"CHORDAL_REDIS_URL": url}), tools)


@pytest.mark.parametrize("name", sorted(CASES))
def test_submit_rejects_and_writes_nothing(client, name):
    with pytest.raises(ChordalError):
        client.submit(CASES[name][0])
    assert client.store.r.dbsize() == 0 and client.store.r.zcard(RUN_INDEX) == 0


@pytest.mark.parametrize("plan", [[], "x", None])
def test_submit_of_a_non_object_writes_nothing(client, plan):
    with pytest.raises(PlanInvalid):
        client.submit(plan)
    assert client.store.r.dbsize() == 0


def test_a_hostile_goal_is_refused_before_anything_is_written(client, monkeypatch):
    monkeypatch.setenv("CHORDAL_LLM", "scripted:examples/scripted/weekend-getaway.json")
    monkeypatch.chdir(ROOT)
    for goal in ("x" * 100_000, "bad \ud800"):
        with pytest.raises(InvalidInput, match="goal: "):
            client.submit_goal(goal)
    assert client.store.r.dbsize() == 0


@pytest.mark.parametrize("text,message", [
    ('{"goal": "g", "steps": [{"id": "s", "tool": "echo", "args": {"value": '
     + "1" * 5_000 + "}}]}", "not a usable JSON value"),
    ("[" * 10_000 + "]" * 10_000, "nested too deep"),
])
def test_validate_command_reports_unreadable_files_in_one_line(tmp_path, text, message):
    path = tmp_path / "plan.json"
    path.write_text(text)
    with pytest.raises(PlanLoadError, match=message):
        load_plan_data(path)
    result = subprocess.run([sys.executable, "-m", "planner.cli", "validate", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_nan_in_a_plan_file_is_refused(tmp_path, tools):
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan_with(1)).replace("1", "NaN"))
    with pytest.raises(PlanInvalid, match="not a JSON number"):
        validate(load_plan_data(path), tools, Limits())
