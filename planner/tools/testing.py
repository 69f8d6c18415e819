"""Tools for tests, examples and benchmarks. Loaded only when named in CHORDAL_TOOL_MODULES
(``CHORDAL_TOOL_MODULES=planner.tools.testing``)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import Field

from planner.errors import PermanentError, TransientError
from planner.tools import ToolContext, tool


@tool
def echo(value: Any) -> Any:
    """Return ``value`` unchanged."""
    return value


@tool(timeout_s=3_600)
def sleep(seconds: Annotated[float, Field(ge=0, le=3_600)], value: Any = None) -> Any:
    """Sleep ``seconds``, then return ``value`` if given, else ``seconds``."""
    time.sleep(seconds)
    return seconds if value is None else value


@tool
def fail(ctx: ToolContext, times: Annotated[int, Field(ge=-1)], value: Any = None,
         kind: Literal["transient", "permanent"] = "transient") -> Any:
    """Raise on the first ``times`` attempts of this step in this run (-1: always), then
    return ``value``."""
    if times == -1 or ctx.attempt <= times:
        error = TransientError if kind == "transient" else PermanentError
        raise error(f"fail: attempt {ctx.attempt} of step {ctx.step_id!r} fails as asked "
                    f"(times={times}, kind={kind})")
    return value


@tool
def concat(items: list[str] | list[list[Any]]) -> str | list[Any]:
    """Join a list of strings into one string, or a list of lists into one list."""
    if all(isinstance(item, str) for item in items):
        return "".join(items)  # type: ignore[arg-type]
    return [x for item in items for x in item]  # type: ignore[union-attr,unused-ignore]
