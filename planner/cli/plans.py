"""Commands about plans and tools, which need no Redis: schema, validate, tools, plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from planner.cli.app import app, err, out, registry, settings, user_errors
from planner.cli.runs import parse_models
from planner.errors import PlanInvalid
from planner.language.plan import load_plan_data, plan_json_schema
from planner.language.validation import Limits, ValidPlan, validate
from planner.llm import require_model
from planner.llm.planning import plan_goal
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
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered tools with their input and output schemas."""
    reg = registry(settings())
    described = [t.describe() for t in reg.values()]
    if as_json:
        print(json.dumps(described, indent=2))
        return
    for d in described:
        out.print(f"[bold]{d['name']}[/]  queue={d['queue']} retries={d['max_retries']} "
                  f"timeout={d['timeout_s']}s", highlight=False)
        out.print(f"  {d['description']}", highlight=False)
        out.print(f"  input:  {json.dumps(d['input_schema'].get('properties', {}))}",
                  highlight=False, soft_wrap=True)
        out.print(f"  output: {json.dumps(d['output_schema'])}", highlight=False,
                  soft_wrap=True)


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
