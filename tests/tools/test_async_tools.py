"""``async def`` tools through the tool contract: schemas from the signature, the awaited
output, one loop reused, time limits and interruptions that cancel the coroutine."""

from __future__ import annotations

import asyncio
import contextvars
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from planner.errors import ConfigError, PermanentError, TransientError
from planner.tools import ToolContext, tool
from planner.tools.aio import AttemptTimeout

CTX = ToolContext(run_id="r", step_id="s", attempt=1)
seen: list[str] = []
tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="none")


class Hotel(BaseModel):
    name: str
    price: float


@tool(timeout_s=30)
async def find(ctx: ToolContext, city: str, limit: int = 2) -> list[Hotel]:
    """Find hotels."""
    await asyncio.sleep(0)
    return [Hotel(name=f"{city}-{i}", price=10.0 * i) for i in range(limit)]


@tool(timeout_s=30)
async def where(seconds: float = 0) -> dict[str, Any]:
    """Say which loop and thread it ran on, and what the caller's context held."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        seen.append("cancelled")
        raise
    seen.append("finished")
    return {"loop": id(asyncio.get_running_loop()), "thread": threading.get_ident(),
            "tag": tag.get()}


@tool(transient=(KeyError,))
async def broken(kind: str) -> int:
    """Raise."""
    await asyncio.sleep(0)
    raise KeyError(kind) if kind == "key" else ValueError(kind)


@pytest.fixture(autouse=True)
def _clear() -> Iterator[None]:
    seen.clear()
    yield


def test_schemas_come_from_the_signature_and_the_awaited_return_type():
    assert set(find.input_schema["properties"]) == {"city", "limit"}  # no ctx
    assert find.input_schema["required"] == ["city"]
    assert find.output_schema["type"] == "array"
    assert find.output_schema["items"]["$ref"].endswith("/Hotel")
    assert broken.output_schema == {"type": "integer"}
    assert find.check_args({"city": "Porto"}) == []
    assert find.check_args({"city": 3})[0]["loc"] == ("city",)


def test_invoke_awaits_and_returns_json_data():
    assert find.invoke({"city": "Porto"}, CTX) == [{"name": "Porto-0", "price": 0.0},
                                                    {"name": "Porto-1", "price": 10.0}]
    with pytest.raises(PermanentError, match="bad arguments: limit"):
        find.invoke({"city": "Porto", "limit": "many"}, CTX)


def test_one_loop_serves_every_call_and_thread_in_the_caller_context():
    token = tag.set("caller's")
    try:
        a = where.invoke({}, CTX)
        b = where.invoke({}, CTX)
    finally:
        tag.reset(token)
    other: list[dict[str, Any]] = []
    thread = threading.Thread(target=lambda: other.append(where.invoke({}, CTX)))
    thread.start()
    thread.join()
    assert a["loop"] == b["loop"] == other[0]["loop"]
    assert a["thread"] != threading.get_ident()  # the caller only waits
    assert a["tag"] == "caller's" and other[0]["tag"] == "none"


def test_errors_keep_their_type_and_classification():
    with pytest.raises(KeyError) as exc:
        broken.invoke({"kind": "key"}, CTX)
    assert broken.classify(exc.value) is TransientError
    with pytest.raises(ValueError):
        broken.invoke({"kind": "value"}, CTX)


def test_past_its_time_limit_the_coroutine_is_cancelled_and_the_loop_serves_on():
    before = where.invoke({}, CTX)["loop"]
    with pytest.raises(AttemptTimeout, match=r"timed out after 0\.2 s"):
        where.invoke({"seconds": 5}, ToolContext("r", "s", 1, timeout_s=0.2))
    assert seen == ["finished", "cancelled"]
    assert issubclass(AttemptTimeout, TransientError)
    assert where.invoke({}, CTX)["loop"] == before


def test_a_signal_in_the_waiting_thread_cancels_the_coroutine():
    """Celery's soft time limit is a signal handler raising in the calling thread."""
    class SoftLimit(Exception):
        pass

    def raise_soft_limit(signum: int, frame: Any) -> None:
        raise SoftLimit()

    before = where.invoke({}, CTX)["loop"]
    previous = signal.signal(signal.SIGALRM, raise_soft_limit)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(SoftLimit):
            where.invoke({"seconds": 5}, CTX)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert seen == ["finished", "cancelled"]
    assert where.invoke({}, CTX)["loop"] == before


def test_the_loop_cancels_at_the_limit_when_the_waiting_thread_cannot_ask(
        monkeypatch: pytest.MonkeyPatch):
    """The soft time limit, due at the same moment as the attempt's own, can raise in the
    waiting thread after its wait timed out and before its cancel reached the loop (seen
    on a loaded prefork worker: the attempt recorded timed out, its coroutine finished)."""
    from planner.tools import aio

    class SoftLimit(Exception):
        pass

    def interrupted(*_: Any) -> None:
        raise SoftLimit()  # as the signal handler would, before anything is queued

    before = where.invoke({}, CTX)["loop"]
    monkeypatch.setattr(aio._Loop, "_cancel", interrupted)
    # The caller's wait ends first and is interrupted, or the loop's timer answers first.
    with pytest.raises((SoftLimit, AttemptTimeout)):
        where.invoke({"seconds": 1}, ToolContext("r", "s", 1, timeout_s=0.2))
    time.sleep(1.2)  # past the end of a 1 s nap that was not cancelled
    assert seen == ["finished", "cancelled"]
    assert where.invoke({}, CTX)["loop"] == before


def test_a_coroutine_that_blocks_its_loop_gets_it_replaced(monkeypatch: pytest.MonkeyPatch):
    from planner.tools import aio

    monkeypatch.setattr(aio, "CANCEL_GRACE_S", 0.2)
    monkeypatch.setattr(aio, "PING_S", 0.2)

    @tool
    async def hog(seconds: float) -> str:
        """Block the loop (sync sleep inside async def)."""
        time.sleep(seconds)
        return "done"

    before = where.invoke({}, CTX)["loop"]
    with pytest.raises(AttemptTimeout):
        hog.invoke({"seconds": 1.5}, ToolContext("r", "s", 1, timeout_s=0.2))
    assert where.invoke({}, CTX)["loop"] != before  # a new loop, at once


def test_generators_are_refused_at_registration():
    with pytest.raises(ConfigError, match="a generator cannot be a tool"):
        @tool
        async def stream(n: int) -> int:  # type: ignore[misc]
            yield n


def test_validation_checks_args_and_refs_by_the_awaited_types():
    from planner.errors import PlanInvalid
    from planner.language.validation import validate

    tools = {t.name: t for t in (find, broken)}
    plan = {"goal": "g", "steps": [
        {"id": "h", "tool": "find", "args": {"city": 3}},
        {"id": "n", "tool": "broken", "args": {"kind": {"$ref": "h.0.name"}}},
        {"id": "m", "tool": "find", "args": {"city": "Porto", "limit": {"$ref": "h.0"}}},
        {"id": "ok", "tool": "find", "args": {"city": "Porto", "limit": {"$ref": "n"}}},
    ]}
    with pytest.raises(PlanInvalid) as info:
        validate(plan, tools)
    found = {(p.step, p.field): p.message for p in info.value.problems}
    assert set(found) == {("h", "args.city"), ("m", "args.limit")}
    assert found[("m", "args.limit")].startswith(
        "$ref h.0 is an object (output of tool 'find'), but 'limit' expects an integer")
