"""Tools every Chordal worker has (``http_request`` is in ``planner.tools.builtin.http``,
``agent`` in ``planner.tools.builtin.agent``)."""

from __future__ import annotations

from typing import Any

from planner.errors import NO_MODEL, PermanentError
from planner.tools import ToolContext, tool
from planner.tools.builtin.agent import agent as agent  # registered with the built-ins
from planner.tools.builtin.calculator import calculate_expression
from planner.tools.builtin.http import http_request as http_request  # registered with the built-ins
from planner.wire import LLM_QUEUE


@tool(max_retries=0, timeout_s=5)
def calculate(expression: str, variables: dict[str, int | float] | None = None) -> int | float:
    """Evaluate arithmetic: numbers, + - * / // % **, parentheses and unary minus; names in
    the expression are read from ``variables`` (whose values may be $refs)."""
    return calculate_expression(expression, variables)


@tool(queue=LLM_QUEUE, max_retries=4, timeout_s=300)
def llm(ctx: ToolContext, prompt: str | list[Any], system: str | None = None) -> str:
    """A reasoning step executed by the model. ``prompt`` is a string or a list whose
    strings are instructions and whose other values (e.g. $refs to earlier outputs) are
    material shown as JSON."""
    if ctx.llm is None:
        raise PermanentError(f"the llm tool needs a model in the workers' environment; "
                             f"{NO_MODEL}")
    return ctx.llm([prompt] if isinstance(prompt, str) else prompt, system)
