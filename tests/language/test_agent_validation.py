"""An ``agent`` step is checked when the plan is: what its ``tools`` list may hold, that the
arguments shaping the conversation are written in the plan, that its ``output_schema`` is a
JSON Schema, and that the steps reading its answer read what that schema declares. Every
tool call its model asks for is checked again, by ``validate_call``, before it runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from planner.errors import PermanentError, PlanInvalid, Problem
from planner.language.validation import Limits, validate, validate_call
from planner.llm.roles import catalogue
from planner.tools import Tool, ToolContext, load_registry, tool
from planner.tools.agent import MAX_TURNS
from planner.wire import LLM_QUEUE

HOTEL = {"type": "object", "properties": {"hotel": {"type": "string"},
                                          "price_per_night": {"type": "number"}},
         "required": ["hotel", "price_per_night"]}


@tool(name="travel.hotels")
def dotted(city: str) -> list[str]:
    """Hotels in a city."""
    return [city]


@tool(name="travel_hotels")
def underscored(city: str) -> list[str]:
    """Hotels in a city, again."""
    return [city]


@tool(name="final_answer")
def answer_tool(text: str) -> str:
    """A user tool that happens to have the reserved name."""
    return text


@pytest.fixture
def reg() -> dict[str, Tool]:
    found = dict(load_registry(["planner.tools.testing"]))
    for t in (dotted, underscored, answer_tool):
        found[t.name] = t
    return found


def agent(step_id: str = "pick", **args: Any) -> dict[str, Any]:
    return {"id": step_id, "tool": "agent",
            "args": {"task": "pick the cheapest hotel", "tools": ["echo"], **args}}


def problems(steps: list[dict[str, Any]], tools: dict[str, Tool]) -> list[Problem]:
    with pytest.raises(PlanInvalid) as info:
        validate({"goal": "g", "steps": steps}, tools)
    return info.value.problems


def only(found: list[Problem], field: str) -> str:
    [message] = [p.message for p in found if p.field == field]
    return message


# -- the tool ---------------------------------------------------------------------------------


def test_agent_is_a_built_in_on_the_llm_queue_with_its_limits():
    t = load_registry()["agent"]
    assert (t.queue, t.max_retries, t.timeout_s) == (LLM_QUEUE, 2, 300)
    with pytest.raises(PermanentError, match="never invoked"):
        t.invoke({"task": "x", "tools": ["echo"]}, ToolContext("r", "s", 1))


def test_the_catalogue_shows_the_planner_when_and_how_to_use_it(reg):
    [entry] = [e for e in json.loads(catalogue(reg)) if e["name"] == "agent"]
    assert "concrete steps instead" in entry["description"]
    assert "reading earlier results" in entry["description"]
    schema = entry["input_schema"]
    assert schema["required"] == ["task", "tools"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["tools"]["items"] == {"type": "string"}
    turns = schema["properties"]["max_turns"]
    assert (turns["minimum"], turns["maximum"], turns["default"]) == (1, MAX_TURNS, 8)
    assert {"type": "object", "additionalProperties": True} in (
        schema["properties"]["output_schema"]["anyOf"])
    assert all(p.get("description") for p in schema["properties"].values())


def test_tool_context_carries_a_call_id_for_idempotency():
    assert ToolContext("r", "s", 1).call_id is None
    ctx = ToolContext("r", "s", 2, call_id="t1.c0")
    assert f"{ctx.run_id}:{ctx.step_id}:{ctx.call_id}" == "r:s:t1.c0"


# -- the plan's checks ------------------------------------------------------------------------


def test_a_well_formed_agent_step_and_its_readers_are_valid(reg):
    valid = validate({"goal": "g", "steps": [
        {"id": "hotels", "tool": "echo", "args": {"value": ["Casa", "Lx"]}},
        agent(tools=["travel.hotels", "echo"], max_turns=3, output_schema=HOTEL,
              context={"hotels": {"$ref": "hotels"}, "budget": 600},
              task={"$ref": "hotels.0"}),
        {"id": "cost", "tool": "calculate", "args": {
            "expression": "2 * p", "variables": {"p": {"$ref": "pick.price_per_night"}}}},
    ]}, reg)
    assert valid.plan.step("pick").dependencies() == {"hotels"}
    assert valid.shape.critical_path == ["hotels", "pick", "cost"]


def test_max_turns_out_of_range_is_the_input_schemas_message(reg):
    found = problems([agent(max_turns=51)], reg)
    assert only(found, "args.max_turns") == (
        "Input should be less than or equal to 50 (tool 'agent')")
    assert "greater than or equal to 1" in only(problems([agent(max_turns=0)], reg),
                                                "args.max_turns")


@pytest.mark.parametrize("field,args", [
    ("args.tools", {"tools": {"$ref": "hotels"}}),
    ("args.tools[1]", {"tools": ["echo", {"$ref": "hotels.0"}]}),
    ("args.max_turns", {"max_turns": {"$ref": "hotels.0"}}),
    ("args.output_schema", {"output_schema": {"$ref": "hotels"}}),
])
def test_what_shapes_the_conversation_is_written_in_the_plan(reg, field, args):
    found = problems([{"id": "hotels", "tool": "echo", "args": {"value": [1]}},
                      agent(**args)], reg)
    assert Problem("pick", field, "must be written in the plan, not a $ref") in found


def test_an_unknown_listed_tool_is_named_with_the_registered_ones(reg):
    found = problems([agent(tools=["echo", "nope"])], reg)
    assert only(found, "args.tools[1]") == (
        f"unknown tool 'nope' (registered: {', '.join(sorted(reg))})")


def test_agents_do_not_nest(reg):
    found = problems([agent(tools=["agent"])], reg)
    assert only(found, "args.tools[0]") == (
        "an agent step cannot list the 'agent' tool: agents do not nest")


def test_a_tool_listed_twice(reg):
    found = problems([agent(tools=["echo", "sleep", "echo"])], reg)
    assert only(found, "args.tools[2]") == "'echo' is listed twice"


def test_two_tools_with_one_name_for_the_model(reg):
    found = problems([agent(tools=["travel.hotels", "travel_hotels"])], reg)
    assert only(found, "args.tools[1]") == (
        "'travel.hotels' and 'travel_hotels' have the same name for the model "
        "('travel_hotels'); list one of them")


def test_final_answer_is_reserved_only_with_an_output_schema(reg):
    found = problems([agent(tools=["final_answer"], output_schema=HOTEL)], reg)
    assert only(found, "args.tools[0]") == (
        "'final_answer' is reserved for the agent's answer when output_schema is set")
    validate({"goal": "g", "steps": [agent(tools=["final_answer"])]}, reg)


def test_an_output_schema_that_is_no_json_schema(reg):
    found = problems([agent(output_schema={"type": "strng"})], reg)
    message = only(found, "args.output_schema")
    assert message.startswith("not a valid JSON Schema: ")
    assert "'strng' is not valid under any of the given schemas" in message


def test_every_problem_of_an_agent_step_at_once(reg):
    found = problems([agent(tools=["agent", "echo", "echo", "ghost"], max_turns=99,
                            output_schema={"type": 3})], reg)
    assert {p.field for p in found} == {"args.tools[0]", "args.tools[2]", "args.tools[3]",
                                        "args.max_turns", "args.output_schema"}


# -- $refs into an agent step -------------------------------------------------------------------


def test_a_ref_into_an_agent_reads_its_output_schema(reg):
    found = problems([agent(output_schema=HOTEL),
                      {"id": "x", "tool": "calculate", "args": {
                          "expression": "n", "variables": {"n": {"$ref": "pick"}}}},
                      {"id": "y", "tool": "echo", "args": {"value": {"$ref": "pick.stars"}}}],
                     reg)
    assert only(found, "args.variables.n") == (
        "$ref pick is an object (output of tool 'agent'), but 'variables.n' expects "
        "an integer or a number (tool 'calculate')")
    assert only(found, "args.value") == (
        "$ref pick.stars: tool 'agent' output has no key 'stars' (keys: hotel, "
        "price_per_night)")


def test_an_agent_without_output_schema_answers_text(reg):
    found = problems([agent(),
                      {"id": "y", "tool": "echo", "args": {"value": {"$ref": "pick.hotel"}}},
                      {"id": "z", "tool": "concat", "args": {"items": {"$ref": "pick"}}}], reg)
    assert only(found, "args.value") == "$ref pick.hotel: tool 'agent' output is string; it " \
                                        "has no 'hotel'"
    assert only(found, "args.items") == (
        "$ref pick is a string (output of tool 'agent'), but 'items' expects a list "
        "(tool 'concat')")


def test_a_bad_output_schema_is_reported_once_not_at_every_reader(reg):
    found = problems([agent(output_schema={"type": 3}),
                      {"id": "y", "tool": "echo", "args": {"value": {"$ref": "pick.a.b"}}}],
                     reg)
    assert [p.step for p in found] == ["pick"]


# -- validate_call ------------------------------------------------------------------------------


def call(name: str, args: Any, allowed=("echo", "calculate", "travel.hotels"), reg=None,
         limits: Limits | None = None) -> list[Problem]:
    return validate_call(name, args, allowed, reg, limits or Limits())


def test_a_good_call_has_no_problem(reg):
    assert call("calculate", {"expression": "1 + 2"}, reg=reg) == []
    assert call("travel.hotels", {"city": "Lisbon"}, reg=reg) == []


def test_a_call_of_a_tool_the_step_does_not_list(reg):
    assert call("sleep", {"seconds": 1}, reg=reg) == [Problem(
        None, "tool", "no tool 'sleep' here; this step may call: calculate, echo, "
                      "travel.hotels")]


def test_a_call_of_the_agent_tool(reg):
    [p] = call("agent", {"task": "x", "tools": ["echo"]}, allowed=("agent", "echo"), reg=reg)
    assert "agents do not nest" in p.message


def test_a_call_with_args_off_the_tools_schema(reg):
    assert call("calculate", {"expression": 5, "x": 1}, reg=reg) == [
        Problem(None, "args.expression", "Input should be a valid string (tool 'calculate')"),
        Problem(None, "args.x", "unexpected argument (tool 'calculate')")]
    assert call("calculate", {}, reg=reg) == [
        Problem(None, "args.expression", "missing (tool 'calculate')")]


def test_a_call_with_refs(reg):
    found = call("calculate", {"expression": "n", "variables": {"n": {"$ref": "a.b"}}},
                 reg=reg)
    assert found == [Problem(None, "args.variables.n",
                             "agent tool calls take plain values, not $refs")]


def test_a_call_with_unsafe_json(reg):
    [p] = call("echo", {"value": float("nan")}, reg=reg)
    assert (p.field, p.message) == ("args.value", "nan is not a JSON number")
    deep: Any = 1
    for _ in range(80):
        deep = [deep]
    [p] = call("echo", {"value": deep}, reg=reg)
    assert "nested more than 64 levels deep" in p.message
    [p] = call("echo", ["not", "an", "object"], reg=reg)
    assert p.field == "args"


def test_a_call_over_max_args_bytes(reg):
    [p] = call("echo", {"value": "x" * 200}, reg=reg, limits=Limits(max_args_bytes=100))
    assert (p.field, p.message) == ("args", "212 bytes of JSON; the limit is 100")


def test_the_visibility_timeout_check_is_not_the_models_to_fix(reg):
    # the same tool as a plan step is refused; as a call, the model could do nothing about it
    limits = Limits(max_attempt_s=10.0)
    assert call("echo", {"value": 1}, reg=reg, limits=limits) == []
    with pytest.raises(PlanInvalid, match="CHORDAL_VISIBILITY_TIMEOUT_S"):
        validate({"goal": "g", "steps": [{"id": "e", "tool": "echo", "args": {"value": 1}}]},
                 reg, limits)


# -- the planner prompt's example ---------------------------------------------------------------


@pytest.fixture
def travel(reg) -> dict[str, Tool]:
    @tool(name="travel.hotels")
    def hotels(city: str) -> dict[str, list[str]]:
        """Hotels."""
        return {"hotels": [city]}

    @tool(name="travel.availability")
    def availability(hotel: str, nights: int) -> dict[str, Any]:
        """Availability."""
        return {}

    @tool(name="travel.transfer")
    def transfer(hotel: str, airport: str) -> int:
        """Minutes."""
        return 0

    return {**reg, **{t.name: t for t in (hotels, availability, transfer)}}


def test_the_planner_prompts_agent_example_is_a_valid_plan(travel):
    from importlib import resources

    text = resources.files("planner.llm").joinpath("prompts/planner.md").read_text("utf-8")
    [example] = re.findall(r"## Agent steps.*?```json\n(.*?)```", text, flags=re.S)
    valid = validate({"goal": "a weekend in Lisbon", "steps": json.loads(example)}, travel)
    assert valid.shape.critical_path == ["hotels", "pick_hotel", "hotel_cost"]


def test_the_docs_agent_example_is_a_valid_step(travel):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "tools.md").read_text("utf-8")
    [example] = re.findall(r"## The agent tool.*?```json\n(.*?)```", doc, flags=re.S)
    hotels = {"id": "hotels", "tool": "travel.hotels", "args": {"city": "Lisbon"}}
    validate({"goal": "g", "steps": [hotels, json.loads(example)]}, travel)
