"""The checks an ``agent`` step adds to a plan's validation: what its tools list may hold,
and that its ``output_schema`` is a JSON Schema; and the schema of its output, which
``$ref``s into it are checked against."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from planner.errors import Problem
from planner.language.plan import Step
from planner.language.refs import iter_refs
from planner.tools.agent import AGENT_TOOL, ANSWER_TOOL, api_name
from planner.tools.tool import Tool

#: Arguments that shape the conversation itself, so they must be known when the plan is
#: checked: which tools the model may call, how many turns, what its answer must be.
WRITTEN = ("tools", "max_turns", "output_schema")

#: An agent's output without an ``output_schema``: the text of its answer.
TEXT_OUTPUT: dict[str, Any] = {"type": "string"}


def agent_problems(s: Step, tools: Mapping[str, Tool]) -> list[Problem]:
    """Every problem of agent step ``s`` that its tool's input schema does not already
    report (pydantic says when ``max_turns`` is out of range or ``tools`` is no list)."""
    out: list[Problem] = []
    for loc, _ in iter_refs(s.args):
        if loc and loc[0] in WRITTEN:
            out.append(Problem(s.id, _field(loc), "must be written in the plan, not a $ref"))
    schema = s.args.get("output_schema")
    listed = s.args.get("tools")
    if isinstance(listed, list):
        out.extend(_listed_problems(s.id, listed, tools, isinstance(schema, Mapping)))
    if isinstance(schema, Mapping) and not _has_ref(schema) and (
            why := schema_problem(schema)):
        out.append(Problem(s.id, "args.output_schema", f"not a valid JSON Schema: {why}"))
    return out


def _listed_problems(step_id: str, listed: list[Any], tools: Mapping[str, Tool],
                     answers: bool) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    by_api: dict[str, str] = {}
    for i, name in enumerate(listed):
        if not isinstance(name, str):
            continue  # the input schema says it is not a string
        field = f"args.tools[{i}]"
        model_name = api_name(name)
        if name == AGENT_TOOL:
            out.append(Problem(step_id, field, "an agent step cannot list the 'agent' tool: "
                                               "agents do not nest"))
        elif name in seen:
            out.append(Problem(step_id, field, f"{name!r} is listed twice"))
        elif answers and name == ANSWER_TOOL:
            out.append(Problem(step_id, field, f"{ANSWER_TOOL!r} is reserved for the "
                                               "agent's answer when output_schema is set"))
        elif answers and model_name == ANSWER_TOOL:
            out.append(Problem(step_id, field, (
                f"{name!r} has the name {ANSWER_TOOL!r} for the model, which is reserved "
                "for the agent's answer when output_schema is set")))
        elif tools.get(name) is None:
            known = ", ".join(sorted(tools)) or "none"
            out.append(Problem(step_id, field, f"unknown tool {name!r} (registered: {known})"))
        elif (other := by_api.get(model_name)) is not None:
            out.append(Problem(step_id, field, (
                f"{other!r} and {name!r} have the same name for the model ({model_name!r}); "
                "list one of them")))
        seen.add(name)
        by_api.setdefault(model_name, name)
    return out


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` is not a JSON Schema (of the draft it names, else 2020-12), or None."""
    from jsonschema.exceptions import SchemaError
    from jsonschema.validators import Draft202012Validator, validator_for

    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        return str(exc.message)
    return None


def agent_output_schema(s: Step) -> Mapping[str, Any]:
    """What agent step ``s`` outputs: its ``output_schema``, else text. One that is not a
    checkable schema (a $ref, not an object, invalid: reported on the step itself) says
    nothing, so the steps reading it get no second report of the same mistake."""
    schema = s.args.get("output_schema")
    if schema is None:
        return TEXT_OUTPUT
    if not isinstance(schema, Mapping) or _has_ref(schema) or schema_problem(schema):
        return {}
    return schema


def _has_ref(value: Any) -> bool:
    return next(iter_refs(value), None) is not None


def _field(loc: tuple[str | int, ...]) -> str:
    return "args" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
