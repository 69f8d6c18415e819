"""Tools every Chordal worker has."""

from __future__ import annotations

from workers.tools.calculator import calculate_expression
from workers.tools.registry import tool


@tool(max_retries=0, timeout_s=5)
def calculate(expression: str, variables: dict[str, int | float] | None = None) -> int | float:
    """Evaluate arithmetic: numbers, + - * / // % **, parentheses and unary minus; names in
    the expression are read from ``variables`` (whose values may be $refs)."""
    return calculate_expression(expression, variables)
