"""The ``chordal`` command line. User errors are one line on stderr and exit 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from planner.errors import ChordalError, PlanInvalid
from planner.plan import load_plan_data, plan_json_schema
from planner.settings import Settings
from planner.validation import Limits, ValidPlan, validate
from workers.tools.registry import ToolRegistry, load_registry

app = typer.Typer(
    name="chordal",
    help="Plan-and-execute LLM agents that run on Celery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def user_errors(fn: F) -> F:
    """Turn a :class:`ChordalError` into one readable line (or the list of plan problems)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except PlanInvalid as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None
        except ChordalError as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return Settings.from_env()


def registry(s: Settings) -> ToolRegistry:
    return load_registry(s.tool_modules)


def load_valid_plan(path: Path, s: Settings, tools: ToolRegistry) -> ValidPlan:
    return validate(load_plan_data(path), tools, Limits(s.max_steps, s.max_args_bytes))


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


def main() -> None:
    try:
        app()
    except ChordalError as exc:  # raised outside a command (e.g. while parsing options)
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    main()
