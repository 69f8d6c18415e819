import copy

import pytest

from planner.errors import PlanInvalid, Problem
from planner.language.plan import Plan
from planner.language.validation import Limits, validate

BASE = {
    "goal": "g",
    "steps": [
        {"id": "a", "tool": "echo", "args": {"value": {"hotels": [{"name": "x"}]}}},
        {"id": "b", "tool": "calculate", "args": {"expression": "1 + 1"}},
        {"id": "c", "tool": "echo", "args": {"value": {"$ref": "a.hotels.0.name"}},
         "depends_on": ["b"]},
    ],
}


def problems(plan, tools, limits: Limits | None = None) -> list[Problem]:
    with pytest.raises(PlanInvalid) as info:
        validate(plan, tools, limits or Limits())
    return info.value.problems


def mutate(fn):
    plan = copy.deepcopy(BASE)
    fn(plan)
    return plan


def has(found: list[Problem], step, field, fragment) -> bool:
    return any(p.step == step and p.field == field and fragment in p.message for p in found)


def test_valid_plan_and_shape(tools):
    valid = validate(BASE, tools)
    assert isinstance(valid.plan, Plan)
    assert valid.shape.steps == 3 and valid.shape.edges == 2
    assert valid.shape.depth == 2 and valid.shape.widest == 2
    assert len(valid.shape.critical_path) == 2 and valid.shape.critical_path[-1] == "c"
    assert valid.plan.step("c").dependencies() == {"a", "b"}


def test_every_problem_is_listed_at_once(tools):
    plan = mutate(lambda p: p["steps"].extend([
        {"id": "a", "tool": "echo", "args": {"value": 1}},                      # duplicate
        {"id": "d", "tool": "nope", "args": {}},                                 # unknown tool
        {"id": "e", "tool": "echo", "args": {"value": 1}, "depends_on": ["zz"]},  # dangling
        {"id": "f", "tool": "echo", "args": {"value": {"$ref": "ghost.x"}}},     # dangling ref
        {"id": "g", "tool": "calculate", "args": {}},                            # missing arg
        {"id": "h", "tool": "calculate", "args": {"expression": "1", "x": 2}},   # extra arg
        {"id": "i", "tool": "calculate", "args": {"expression": 5}},             # wrong type
        {"id": "j", "tool": "echo", "args": {"value": {"$ref": "b.total"}}},     # bad path
        {"id": "k", "tool": "echo", "args": {"value": {"$ref": "k"}}},           # self ref
        {"id": "m", "tool": "echo", "args": {"value": {"$ref": "a..x"}}},        # malformed
    ]))
    found = problems(plan, tools)
    assert has(found, "a", "id", "duplicate id")
    assert has(found, "d", "tool", "unknown tool 'nope'")
    assert has(found, "e", "depends_on[0]", "no step has id 'zz'")
    assert has(found, "f", "args.value", "no step has id 'ghost'")
    assert has(found, "g", "args.expression", "missing")
    assert has(found, "h", "args.x", "unexpected argument")
    assert has(found, "i", "args.expression", "valid string")
    assert has(found, "j", "args.value", "tool 'calculate' output is integer")
    assert has(found, "k", "args.value", "own output")
    assert has(found, "m", "args.value", "empty path segment")
    assert len(found) == 10


def test_cycle_is_printed(tools):
    plan = {"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": 1}, "depends_on": ["c"]},
        {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}}},
        {"id": "c", "tool": "echo", "args": {"value": 1}, "depends_on": ["b"]},
        {"id": "d", "tool": "echo", "args": {"value": 1}},
    ]}
    [p] = problems(plan, tools)
    assert p.field == "depends_on"
    assert "cycle: a -> b -> c -> a" in p.message


def test_self_dependency(tools):
    found = problems(mutate(lambda p: p["steps"][0].update(depends_on=["a"])), tools)
    assert has(found, "a", "depends_on[0]", "itself")


def test_structural_errors_name_step_and_field(tools):
    plan = {"goal": 3, "steps": [
        {"id": "ok", "tool": "echo", "args": {"value": 1}},
        {"id": "bad id!", "tool": "echo", "args": {"value": 1}},
        {"tool": "echo", "args": {"value": 1}, "on_failure": "explode", "max_retries": -1},
        {"id": "t", "tool": "echo", "args": {"value": 1}, "timeout_s": 0, "colour": "red"},
    ], "extra": True}
    found = problems(plan, tools)
    assert has(found, None, "goal", "string")
    assert has(found, None, "extra", "unknown field")
    assert has(found, "bad id!", "id", "pattern")
    assert has(found, "#2", "id", "required")
    assert has(found, "#2", "on_failure", "'replan', 'skip' or 'fail'")
    assert has(found, "#2", "max_retries", "greater than or equal to 0")
    assert has(found, "t", "timeout_s", "greater than 0")
    assert has(found, "t", "colour", "Extra inputs")


def test_empty_and_missing_steps(tools):
    assert has(problems({"goal": "g", "steps": []}, tools), None, "steps", "non-empty")
    assert has(problems({"goal": "g"}, tools), None, "steps", "non-empty")


def test_limits_are_configurable(tools):
    big = {"goal": "g", "steps": [{"id": f"s{i}", "tool": "echo", "args": {"value": i}}
                                  for i in range(5)]}
    assert has(problems(big, tools, Limits(max_steps=4)), None, "steps", "limit is 4")
    validate(big, tools, Limits(max_steps=5))
    fat = mutate(lambda p: p["steps"][0].update(args={"value": "x" * 200}))
    assert has(problems(fat, tools, Limits(max_args_bytes=100)), "a", "args", "limit is 100")


def test_refs_skip_static_type_checks_but_not_missing_args(tools):
    plan = {"goal": "g", "steps": [
        {"id": "n", "tool": "echo", "args": {"value": "1+1"}},
        {"id": "calc", "tool": "calculate", "args": {"expression": {"$ref": "n"}}},
        {"id": "cat", "tool": "concat", "args": {"items": ["a", {"$ref": "n"}]}},
    ]}
    assert validate(plan, tools).shape.edges == 2
    # A wrong literal next to a ref is still caught; the ref itself is checked at run time.
    plan["steps"][1]["args"] = {"expression": "a + b",
                                "variables": {"a": "ten", "b": {"$ref": "n"}}}
    plan["steps"][2]["args"] = {}
    found = problems(plan, tools)
    assert has(found, "calc", "args.variables.a", "valid")
    assert has(found, "cat", "args.items", "missing")
    assert len(found) == 2


def test_plan_object_validates_too(tools):
    plan = Plan.model_validate(BASE)
    assert validate(plan, tools).plan == plan


def test_step_timeouts_must_fit_the_visibility_timeout(tools):
    from planner.settings import Settings

    # 200 s of visibility: 30 s to the hard limit and 60 s of retry delay leave 110 s.
    limits = Limits.from_settings(Settings.from_env({"CHORDAL_VISIBILITY_TIMEOUT_S": "200"}))
    plan = {"goal": "g", "steps": [
        {"id": "ok", "tool": "sleep", "args": {"seconds": 1}, "timeout_s": 109},
        {"id": "long", "tool": "sleep", "args": {"seconds": 1}, "timeout_s": 110},
        {"id": "dflt", "tool": "sleep", "args": {"seconds": 1}},  # tool default: 3600 s
    ]}
    found = problems(plan, tools, limits)
    assert has(found, "long", "timeout_s", "CHORDAL_VISIBILITY_TIMEOUT_S=200")
    assert has(found, "dflt", "timeout_s (tool 'sleep')", "3600 s")
    assert len(found) == 2
    amqp = Limits.from_settings(Settings.from_env({
        "CHORDAL_VISIBILITY_TIMEOUT_S": "200", "CHORDAL_BROKER_URL": "amqp://x//"}))
    validate(plan, tools, amqp)  # RabbitMQ has no visibility timeout to outrun
