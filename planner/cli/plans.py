"""Commands about plans and tools, which need no Redis: schema, validate, tools, plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.table import Table
from rich.text import Text

from planner.cli.app import app, err, out, registry, settings, user_errors
from planner.cli.runs import parse_models
from planner.errors import PlanInvalid
from planner.language.plan import load_plan_data, plan_json_schema
from planner.language.validation import Limits, ValidPlan, validate
from planner.settings import Settings
from planner.tools.registry import ToolRegistry


def load_valid_plan(path: Path, s: Settings, tools: ToolRegistry) -> ValidPlan:
    return validate(load_plan_data(path), tools, Limits.from_settings(s))


@app.command()
@user_errors
def schema() -> None:
    """Print the plan's JSON Schema."""
    print(json.dumps(plan_json_schema(), indent=2))


@app.command("validate")
@user_errors
def validate_cmd(
    plan: Annotated[Path, typer.Argument(help="Plan file (JSON).", show_default=False)],
) -> None:
    """Check a plan: exit 0 with a summary, or exit 2 listing every problem."""
    s = settings()
    valid = load_valid_plan(plan, s, registry(s))
    print(f"{plan}: valid: {valid.shape.summary()}")


@app.command()
@user_errors
def tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, with the input and "
                                                        "output schemas.")] = False,
) -> None:
    """List the registered tools: name, queue, retries, timeout, what each does (the
    first line of its docstring, which is what the planner model reads) and its arguments.
    --json keeps the full schemas."""
    reg = registry(settings())
    described = [t.describe() for t in reg.values()]
    if as_json:
        print(json.dumps(described, indent=2))
        return
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("tool", no_wrap=True, style="bold")
    table.add_column("queue", no_wrap=True)
    table.add_column("retries", justify="right", no_wrap=True)
    table.add_column("timeout", justify="right", no_wrap=True)
    table.add_column("what it does / arguments", ratio=1)
    for d in described:
        # One line: the docstring's first paragraph, cut at the column's width.
        first = " ".join(d["description"].split())
        what = (Text(first, no_wrap=True, overflow="ellipsis") if first else
                Text("(no docstring: the planner model sees no description)", style="red"))
        signature = Text(f"({arguments(d['input_schema'])}) -> "
                         f"{type_name(d['output_schema'])}", style="dim")
        table.add_row(d["name"], d["queue"], str(d["max_retries"]),
                      f"{d['timeout_s']:g}s", Group(what, signature))
    out.print(table)


def arguments(schema: dict[str, Any]) -> str:
    """``city: string, max_price: number = 200.0`` from a tool's input schema."""
    required = set(schema.get("required", []))
    parts = []
    for name, prop in schema.get("properties", {}).items():
        part = f"{name}: {type_name(prop, schema.get('$defs', {}))}"
        if name not in required:
            part += f" = {json.dumps(prop.get('default'))}"
        parts.append(part)
    return ", ".join(parts)


def type_name(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> str:
    """A JSON Schema as a short type: ``string``, ``list[Hotel]``, ``number | null``."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_name(s, defs) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        return f"list[{type_name(items, defs)}]" if isinstance(items, dict) and items else "list"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"dict[string, {type_name(schema['additionalProperties'], defs)}]"
    if kind == "object" and "properties" in schema and "title" in schema:
        return str(schema["title"])  # a pydantic model: its name
    if isinstance(kind, list):
        return " | ".join(map(str, kind))
    if kind:
        return str(kind)
    return "any"


@app.command("plan")
@user_errors
def plan_cmd(
    goal: Annotated[str, typer.Argument(help="What to plan for.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print only the plan's JSON.")
                       ] = False,
    model: Annotated[str | None, typer.Option("--model", help="The planner's model.")
                     ] = None,
) -> None:
    """Plan a goal with the model and print the plan without running it (review or edit
    it, then `chordal run --plan`)."""
    s = settings()
    tools = registry(s)
    overrides = parse_models([f"planner={model}"]) if model else None
    from planner.llm import require_model
    from planner.llm.planning import plan_goal

    outcome = plan_goal(require_model(s), s, tools, goal, overrides)
    if outcome.plan is None:
        raise PlanInvalid(outcome.problems)
    text = outcome.plan.model_dump_json(indent=2)
    if as_json:
        print(text)
        return
    summary = validate(outcome.plan, tools, Limits.from_settings(s)).shape.summary()
    err.print(f"plan for {goal!r}: {summary}", highlight=False, markup=False)
    print(text)
    tokens = sum(r.usage.total_tokens for r in outcome.responses)
    err.print(f"{outcome.attempts} model call(s), {tokens} tokens", highlight=False)
