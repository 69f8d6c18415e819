"""docs/tools.md's examples are run, so they stay true."""

import re
from pathlib import Path

import pytest

from planner import Plan, Ref, Step, validate
from planner.errors import PlanInvalid
from planner.tools import Tool, load_registry

DOC = (Path(__file__).resolve().parents[1] / "docs" / "tools.md").read_text()


def run(marker: str) -> dict:
    [snippet] = [b for b in re.findall(r"```python\n(.*?)```", DOC, flags=re.S)
                 if marker in b]
    namespace: dict = {}
    exec(compile(snippet, "docs/tools.md", "exec"), namespace)
    return namespace


def test_tool_snippet_defines_typed_tools():
    namespace = run("def find_hotels")
    hotels = namespace["find_hotels"]
    assert isinstance(hotels, Tool) and hotels.queue == "search"
    assert hotels.input_schema["required"] == ["city"]
    assert namespace["whoami"].context_param == "ctx"


def test_the_async_tool_example_registers_with_the_awaited_type():
    forecast = run("async def")["forecast"]
    assert isinstance(forecast, Tool) and forecast.timeout_s == 20
    assert forecast.input_schema["required"] == ["city"]
    assert set(forecast.output_schema["properties"]) == {"city", "summary"}


def test_the_python_plan_example_is_valid_with_its_refs_as_json():
    plan: Plan = run("Ref(")["plan"]
    tools = load_registry(["planner.tools.testing"])
    valid = validate(plan, tools)
    assert valid.shape.critical_path == ["hotels", "cost", "summary"]
    dumped = plan.model_dump(mode="json")["steps"]
    assert dumped[1]["args"]["variables"] == {"p": {"$ref": "hotels.0.price"}}
    assert dumped[2]["args"]["value"] == {"hotel": {"$ref": "hotels.0.name"},
                                          "total": {"$ref": "cost"}}


def test_the_quoted_refusal_is_what_validation_says():
    namespace = run("def find_hotels")
    tools = dict(load_registry(["planner.tools.testing"]))
    tools["find_hotels"] = namespace["find_hotels"]
    plan = Plan(goal="g", steps=[
        Step(id="hotels", tool="find_hotels", args={"city": "Porto"}),
        Step(id="cost", tool="calculate", args={"expression": "2 * p",
                                                "variables": {"p": Ref("hotels.0")}})])
    quoted = re.search(r"```\n(step 'cost'.*?)```", DOC, flags=re.S)
    assert quoted is not None
    with pytest.raises(PlanInvalid) as info:
        validate(plan, tools)
    assert [str(p) for p in info.value.problems] == [" ".join(quoted.group(1).split())]
