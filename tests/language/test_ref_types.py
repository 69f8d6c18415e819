"""A ``$ref`` whose value can never be what its argument accepts is refused before the run,
naming the step, the field and both types; one that may match passes."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel

from planner.errors import PlanInvalid, Problem
from planner.language.refs import ref_type_clash
from planner.language.validation import validate
from planner.tools import Tool, load_registry, tool


class Hotel(BaseModel):
    name: str
    price: float
    stars: int | None = None
    tags: list[str] = []


@tool
def hotels(city: str) -> list[Hotel]:
    """Hotels."""
    return []


@tool
def best(city: str) -> Hotel | None:
    """The best hotel, if any."""
    return None


@tool
def count(n: int) -> int:
    """An integer in, an integer out."""
    return n


@tool
def text(s: str) -> str:
    """A string in, a string out."""
    return s


@tool
def maybe(flag: bool = False) -> int | str | None:
    """An integer, a string or nothing."""
    return None


@tool
def take(n: int | None = None, x: float = 0.0, anything: Any = None,
         ints: list[int] | None = None, hotel: Hotel | None = None,
         scores: dict[str, int] | None = None, mode: Literal["fast", "slow"] = "fast",
         flag: bool = False) -> str:
    """Takes typed arguments."""
    return ""


@pytest.fixture(scope="module")
def registry() -> dict[str, Tool]:
    tools = dict(load_registry(["planner.tools.testing"]))
    tools.update({t.name: t for t in (hotels, best, count, text, maybe, take)})
    return tools


SOURCES = [
    {"id": "t", "tool": "text", "args": {"s": "x"}},
    {"id": "h", "tool": "hotels", "args": {"city": "Porto"}},
    {"id": "b", "tool": "best", "args": {"city": "Porto"}},
    {"id": "c", "tool": "count", "args": {"n": 1}},
    {"id": "m", "tool": "maybe", "args": {}},
    {"id": "e", "tool": "echo", "args": {"value": 1}},
]


def check(registry: dict[str, Tool], tool_name: str, args: dict[str, Any]) -> list[Problem]:
    plan = {"goal": "g", "steps": [*SOURCES, {"id": "z", "tool": tool_name, "args": args}]}
    try:
        validate(plan, registry)
    except PlanInvalid as exc:
        return exc.problems
    return []


def test_a_list_into_an_integer_is_refused_naming_both_types(registry):
    [problem] = check(registry, "count", {"n": {"$ref": "h"}})
    assert (problem.step, problem.field) == ("z", "args.n")
    assert problem.message == ("$ref h is a list (output of tool 'hotels'), but 'n' "
                               "expects an integer (tool 'count')")


@pytest.mark.parametrize(("args", "field", "produced", "expected"), [
    # a path into an object output (a list of models, then a property)
    ({"n": {"$ref": "h.0.tags"}}, "args.n", "a list", "an integer or null"),
    ({"n": {"$ref": "h.0"}}, "args.n", "an object", "an integer or null"),
    ({"hotel": {"$ref": "h"}}, "args.hotel", "a list", "an object or null"),
    # into a list's items, and a dict's values
    ({"ints": [1, {"$ref": "h"}]}, "args.ints[1]", "a list", "an integer"),
    ({"scores": {"a": {"$ref": "h.0.tags"}}}, "args.scores.a", "a list", "an integer"),
    # Optional output: null could match, the rest never does
    ({"x": {"$ref": "b"}}, "args.x", "an object or null", "a number"),
    # pydantic's lax mode never makes a number a string, nor a string a list
    ({"mode": {"$ref": "c"}}, "args.mode", "an integer", "a string"),
    ({"ints": {"$ref": "t"}}, "args.ints", "a string", "a list or null"),
    ({"flag": {"$ref": "h"}}, "args.flag", "a list", "a boolean"),
])
def test_refs_that_can_never_match_are_refused(registry, args, field, produced, expected):
    [problem] = check(registry, "take", args)
    assert problem.field == field
    assert f"is {produced} (output of tool" in problem.message
    assert f"expects {expected} (tool 'take')" in problem.message


@pytest.mark.parametrize(("args", "at_run_time"), [
    # a string into an integer ("42" -> 42), a number, a boolean
    ({"n": {"$ref": "t"}}, {"n": "42"}),
    ({"x": {"$ref": "h.0.name"}}, {"x": "2.5"}),
    ({"flag": {"$ref": "t"}}, {"flag": "true"}),
    # a boolean into an integer (True -> 1), an integer into a boolean (1 -> True)
    ({"n": {"$ref": "m"}}, {"n": True}),
    ({"flag": {"$ref": "c"}}, {"flag": 1}),
    ({"ints": [1, {"$ref": "t"}]}, {"ints": [1, "7"]}),
    ({"scores": {"a": {"$ref": "h.0.tags.0"}}}, {"scores": {"a": "3"}}),
])
def test_what_a_python_tool_converts_at_run_time_passes(registry, args, at_run_time):
    """The reader's own check (the one it makes at run time) takes such a value, so a plan
    that runs today is not refused."""
    assert registry["take"].check_args(at_run_time) == []
    assert check(registry, "take", args) == []


def test_calculate_takes_a_string_variable_as_it_does_at_run_time(registry):
    plan_args = {"expression": "x + 1", "variables": {"x": {"$ref": "t"}}}
    assert check(registry, "calculate", plan_args) == []
    assert registry["calculate"].check_args({"expression": "x + 1",
                                             "variables": {"x": "42"}}) == []


def test_an_mcp_tool_keeps_json_schema_types_strict(registry):
    from planner.tools.mcp.adapter import McpTool

    class Args(BaseModel):
        pass

    mcp = McpTool(name="srv.count", fn=lambda **a: 0, description="", input_model=Args,
                  output_schema={}, schema={"type": "object",
                                            "properties": {"n": {"type": "integer"}}})
    assert mcp.check_args({"n": "42"}) != []  # jsonschema refuses it at run time too
    [problem] = check({**registry, mcp.name: mcp}, "srv.count", {"n": {"$ref": "t"}})
    assert problem.message == ("$ref t is a string (output of tool 'text'), but 'n' "
                               "expects an integer (tool 'srv.count')")


@pytest.mark.parametrize("args", [
    {"n": {"$ref": "c"}},                    # integer into integer
    {"x": {"$ref": "c"}},                    # integer into number
    {"n": {"$ref": "h.0.price"}},            # number into integer: 2.0 is one
    {"n": {"$ref": "h.0.stars"}},            # Optional into Optional
    {"n": {"$ref": "m"}},                    # a union with an integer in it
    {"mode": {"$ref": "m"}},                 # ... or a string
    {"anything": {"$ref": "h"}},             # Any accepts everything
    {"n": {"$ref": "e"}},                    # Any output: known at run time only
    {"hotel": {"$ref": "b"}},                # Optional[Hotel] into Optional[Hotel]
    {"hotel": {"$ref": "h.0"}},
    {"ints": {"$ref": "h.0.tags"}},          # a list into a list (items at run time)
    {"scores": {"$ref": "e"}},
])
def test_refs_that_may_match_pass(registry, args):
    assert check(registry, "take", args) == []


def test_a_ref_as_the_whole_args(registry):
    assert check(registry, "take", {"$ref": "b"}) == []  # an object: its keys at run time
    [problem] = check(registry, "take", {"$ref": "t"})
    assert (problem.field, problem.message) == ("args", (
        "$ref t is a string (output of tool 'text'), but the args expect an object "
        "(tool 'take')"))


def test_unions_in_arguments_match_on_any_member(registry):
    # concat takes list[str] | list[list[Any]]: a string item or a list item may do.
    assert check(registry, "concat", {"items": [{"$ref": "t"}, "x"]}) == []
    assert check(registry, "concat", {"items": [{"$ref": "h.0.tags"}, ["x"]]}) == []
    [problem] = check(registry, "concat", {"items": [{"$ref": "c"}]})
    assert problem.field == "args.items[0]"
    assert "expects a string or a list" in problem.message


def test_json_schemas_as_mcp_servers_give_them():
    output = {"type": "object", "$defs": {"Row": {"type": "object", "properties": {
        "id": {"type": "integer"}, "label": {"enum": ["a", "b"]},
        "kind": {"const": 3}, "both": {"allOf": [{"type": ["string", "null"]},
                                                 {"type": "string"}]}}}},
        "properties": {"rows": {"type": "array", "items": {"$ref": "#/$defs/Row"}},
                       "pair": {"type": "array", "prefixItems": [{"type": "string"},
                                                                 {"type": "boolean"}]}}}
    wants_int = {"type": "object", "properties": {"q": {"type": "integer"}}}
    assert ref_type_clash(output, ("rows", "0", "id"), wants_int, ("q",)) is None
    assert ref_type_clash(output, ("rows", "0", "label"), wants_int, ("q",)) == (
        "a string", "an integer")
    assert ref_type_clash(output, ("rows", "0", "kind"), wants_int, ("q",)) is None
    assert ref_type_clash(output, ("rows", "0", "both"), wants_int, ("q",)) == (
        "a string", "an integer")
    assert ref_type_clash(output, ("pair", "1"), wants_int, ("q",)) == (
        "a boolean", "an integer")
    assert ref_type_clash(output, ("rows",), wants_int, ("q",)) == ("a list", "an integer")
    # Unknown or unusual schemas never refuse.
    assert ref_type_clash({}, (), wants_int, ("q",)) is None
    assert ref_type_clash(output, ("rows", "0", "id"), {"type": "object"}, ("q",)) is None
    assert ref_type_clash({"$ref": "https://example.com/s.json"}, (), wants_int,
                          ("q",)) is None
    assert ref_type_clash({"type": {"odd": 1}, "anyOf": 3}, (), wants_int, ("q",)) is None
