"""Async tools for the tests (``async def``), loaded by the workers that test them."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from planner import logs
from planner.errors import TransientError
from planner.tools import ToolContext, tool


def _note(marker: str | None, line: str) -> None:
    if marker:
        with Path(marker).open("a") as f:
            f.write(line + "\n")


@tool(timeout_s=60)
async def nap(seconds: float, value: Any = None, marker: str | None = None
              ) -> dict[str, Any]:
    """Sleep ``seconds`` without blocking the loop; say where it ran."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        _note(marker, "cancelled")
        raise
    _note(marker, "finished")
    return {"value": value, "pid": os.getpid(), "loop": id(asyncio.get_running_loop()),
            "log": dict(logs.current())}


@tool
async def flaky(ctx: ToolContext, times: int, value: Any = None) -> Any:
    """Raise a transient error on the first ``times`` attempts, then return ``value``."""
    await asyncio.sleep(0.01)
    if ctx.attempt <= times:
        raise TransientError(f"flaky: attempt {ctx.attempt} fails as asked")
    return value
