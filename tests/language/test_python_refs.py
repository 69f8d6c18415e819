"""``planner.Ref`` in a plan built in Python is the ``{"$ref": ...}`` it stands for, however
the plan is made, dumped, written, validated or sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner import Plan, Ref, Step, load_plan_data, validate
from planner.errors import PlanInvalid
from planner.remote._wire import plan_body


def python_plan() -> Plan:
    return Plan(goal="refs from Python", steps=[
        Step(id="a", tool="echo", args={"value": {"hotels": [{"name": "x"}, {"name": "y"}]}}),
        Step(id="b", tool="echo", args={"value": {
            "all": Ref("a"),
            "first": Ref("a", ("hotels", 0, "name")),
            "names": [Ref("a.hotels.0.name"), {"second": Ref("a.hotels.1.name")}]}}),
    ])


EXPECTED_B = {"value": {"all": {"$ref": "a"}, "first": {"$ref": "a.hotels.0.name"},
                        "names": [{"$ref": "a.hotels.0.name"},
                                  {"second": {"$ref": "a.hotels.1.name"}}]}}


def test_ref_forms_are_one_reference():
    assert Ref("a.x.0") == Ref("a", ("x", "0")) == Ref("a", ("x", 0))  # type: ignore[arg-type]
    assert Ref("a.x.0").to_json() == {"$ref": "a.x.0"}
    assert Ref("a").to_json() == {"$ref": "a"}


def test_a_step_holds_refs_as_json_and_depends_on_them():
    plan = python_plan()
    assert plan.steps[1].args == EXPECTED_B
    assert plan.steps[1].dependencies() == {"a"}


def test_every_dump_writes_refs_as_json():
    plan = python_plan()
    assert plan.model_dump()["steps"][1]["args"] == EXPECTED_B
    assert plan.model_dump(mode="json")["steps"][1]["args"] == EXPECTED_B
    assert json.loads(plan.model_dump_json())["steps"][1]["args"] == EXPECTED_B
    assert json.loads(json.dumps(plan.model_dump()))["steps"][1]["args"] == EXPECTED_B
    # A Ref put into a step's args after it was made is written as JSON all the same.
    plan.steps[0].args["late"] = Ref("b")
    assert json.loads(plan.model_dump_json())["steps"][0]["args"]["late"] == {"$ref": "b"}


def test_a_written_plan_file_loads_and_validates(tools, tmp_path: Path):
    path = tmp_path / "plan.json"
    path.write_text(python_plan().model_dump_json(indent=2, exclude_none=True))
    valid = validate(load_plan_data(path), tools)
    assert valid.plan.steps[1].args == EXPECTED_B
    assert valid.shape.critical_path == ["a", "b"]


def test_validate_takes_a_plan_or_a_mapping_with_refs(tools):
    assert validate(python_plan(), tools).shape.edges == 1
    mapping = {"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": 1}},
        {"id": "b", "tool": "echo", "args": {"value": [Ref("a")]}}]}
    valid = validate(mapping, tools)
    assert valid.plan.steps[1].args == {"value": [{"$ref": "a"}]}
    assert valid.shape.critical_path == ["a", "b"]


def test_a_ref_to_no_step_is_named_as_such(tools):
    plan = Plan(goal="g", steps=[Step(id="a", tool="echo", args={"value": Ref("nope")})])
    with pytest.raises(PlanInvalid) as info:
        validate(plan, tools)
    [problem] = info.value.problems
    assert (problem.step, problem.field) == ("a", "args.value")
    assert "no step has id 'nope'" in problem.message


def test_the_http_clients_send_refs_as_json():
    mapping = {"goal": "g", "steps": [{"id": "b", "tool": "echo",
                                       "args": {"value": [Ref("a.x")]}}]}
    assert json.loads(json.dumps(plan_body(mapping)))["steps"][0]["args"] == {
        "value": [{"$ref": "a.x"}]}
    assert json.loads(json.dumps(plan_body(python_plan())))["steps"][1]["args"] == \
        EXPECTED_B
