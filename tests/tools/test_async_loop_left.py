"""When one coroutine blocks the process's loop and the loop is left behind, the other
calls waiting on it are retried (a transient error), not failed for good; and a tool
invoked from inside the loop's own thread says so instead of deadlocking."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from planner.errors import PermanentError, TransientError
from planner.tools import ToolContext, tool
from planner.tools.aio import AttemptTimeout


@tool(timeout_s=60)
async def patient(seconds: float) -> str:
    """Wait without blocking the loop."""
    await asyncio.sleep(seconds)
    return "done"


@tool(timeout_s=60)
async def hog(seconds: float) -> str:
    """Block the loop (sync sleep inside async def)."""
    time.sleep(seconds)
    return "done"


@tool(timeout_s=60)
async def nested() -> str:
    """Calls another tool's invoke from inside the loop."""
    return str(patient.invoke({"seconds": 0}, ToolContext("r", "inner", 1, timeout_s=3)))


def test_a_blocked_loop_fails_the_other_callers_transiently(monkeypatch: pytest.MonkeyPatch):
    from planner.tools import aio

    monkeypatch.setattr(aio, "CANCEL_GRACE_S", 0.2)
    monkeypatch.setattr(aio, "PING_S", 0.2)
    assert patient.invoke({"seconds": 0}, ToolContext("r", "warm", 1)) == "done"
    errors: list[BaseException] = []

    def bystander() -> None:
        try:
            patient.invoke({"seconds": 30}, ToolContext("r", "other", 1, timeout_s=45))
        except BaseException as exc:
            errors.append(exc)

    other = threading.Thread(target=bystander)
    other.start()
    time.sleep(0.3)  # its coroutine is waiting on the loop
    with pytest.raises(AttemptTimeout):
        hog.invoke({"seconds": 2}, ToolContext("r", "hog", 1, timeout_s=0.2))
    other.join(timeout=40)
    assert not other.is_alive()
    [error] = errors
    assert isinstance(error, TransientError) and not isinstance(error, PermanentError)
    assert "left behind" in str(error)
    assert patient.invoke({"seconds": 0}, ToolContext("r", "after", 1)) == "done"


def test_invoke_from_inside_the_loop_is_a_clear_error():
    start = time.monotonic()
    with pytest.raises(PermanentError, match="inside the event loop's own thread"):
        nested.invoke({}, ToolContext("r", "outer", 1, timeout_s=10))
    assert time.monotonic() - start < 5
