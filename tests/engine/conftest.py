"""What the engine tests of replanning and human decisions share: a Runtime on a real Redis
(database 4 of the test process's own, as in test_decisions.py) with the in-memory
publisher, a scripted model if the test gives one, and the plan and message builders."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import redis

from planner.engine import start
from planner.engine.compiled import KILL_AFTER_S
from planner.engine.dispatch import MemoryPublisher, Message
from planner.engine.runtime import Runtime
from planner.language.validation import validate
from planner.llm.model import Model
from planner.settings import Settings
from planner.store.records import RunOptions
from planner.store.runs import RunStore
from planner.tools import ToolRegistry
from planner.wire import DEFAULT_QUEUE, REPLAN_TASK, REVIEW_TASK, STEP_ERROR_TASK, STEP_TASK
from tests import redis_server

DB = 4
GRACE = 30.0  # the default hard-limit grace
INLINE_MAX = 32  # the default CHORDAL_INLINE_MAX
VISIBILITY_LEFT = 14_400 - 0.2  # the visibility timeout less the longest retry delay


def step_limits(timeout: float) -> tuple[float | None, float]:
    """The (soft, hard) limits of a step's message with inline steps on (the default): no
    soft limit (the worker arms the step's own stops), and a hard one bounding the longest
    chain its task may run (CompiledPlan.time_limits)."""
    return None, min((1 + INLINE_MAX) * (timeout + GRACE + KILL_AFTER_S), VISIBILITY_LEFT)

MakeRuntime = Callable[..., Runtime]


def redis_url() -> str:
    return redis_server.url(DB)


@pytest.fixture
def make_rt(monkeypatch: pytest.MonkeyPatch, tools: ToolRegistry) -> MakeRuntime:
    """``make_rt(model=None, **settings)``: a Runtime on a flushed database; without a
    model there is none (no ANTHROPIC_API_KEY / CHORDAL_LLM in the environment)."""
    for var in ("ANTHROPIC_API_KEY", "CHORDAL_LLM"):
        monkeypatch.delenv(var, raising=False)
    url = redis_url()
    redis.Redis.from_url(url).flushdb()  # no Redis is an error here, never a skip

    def make(model: Model | None = None, **env: str) -> Runtime:
        # The join is a message of its own here, so a test sees every message the engine
        # sends (CHORDAL_INLINE_JOIN="true": the join in the last step's task, as workers
        # do by default; test_inline_join.py compares the two).
        settings = Settings.from_env({
            "CHORDAL_REDIS_URL": url, "CHORDAL_RETRY_BACKOFF_S": "0.05",
            "CHORDAL_RETRY_BACKOFF_MAX_S": "0.2", "CHORDAL_INLINE_JOIN": "false", **env})
        rt = Runtime(settings, MemoryPublisher(), tools=tools, store=RunStore.from_url(url),
                     model=model)
        assert rt.model is model
        return rt

    return make


def sent(rt: Runtime) -> list[Message]:
    assert isinstance(rt.publisher, MemoryPublisher)
    return rt.publisher.sent


def no_nonce(messages: list[Message]) -> list[Message]:
    """The messages with the per-wake-up suffix of replan and review ids cut (it is random:
    ``<run>.<version>.replan.<step>.<8 hex>``), after checking it is there."""
    cut = []
    for m in messages:
        if m.task in (REPLAN_TASK, REVIEW_TASK):
            assert m.task_id and re.fullmatch(r".+\.[0-9a-f]{8}", m.task_id), m.task_id
            m = replace(m, task_id=m.task_id.rsplit(".", 1)[0])
        elif m.task == STEP_TASK and m.task_id and m.task_id.count(".") == 3:
            # A re-drive's id: <run>.<version>.<step>.<8 hex> (a new one each time).
            assert re.fullmatch(r".+\.[0-9a-f]{8}", m.task_id), m.task_id
            m = replace(m, task_id=m.task_id.rsplit(".", 1)[0])
        cut.append(m)
    return cut


def replan_expected(run: str, step: str, version: int) -> Message:
    """The replan message woken by ``step``'s failure, its id without the nonce."""
    return Message(REPLAN_TASK, (run, step, version), DEFAULT_QUEUE,
                   f"{run}.{version}.replan.{step}", shadow=f"{REPLAN_TASK} {step}")


def step_ids(rt: Runtime) -> list[tuple[str, int]]:
    """The step messages sent: (step, plan version)."""
    return [(m.args[1], m.args[2]) for m in sent(rt) if m.task == STEP_TASK]


def record(rt: Runtime, *plan_steps: dict[str, Any], options: RunOptions | None = None) -> str:
    plan = validate({"goal": "test", "steps": list(plan_steps)}, rt.tools).plan
    return rt.store.create_run(plan.goal, plan, options=options)


def started(rt: Runtime, *plan_steps: dict[str, Any], options: RunOptions | None = None) -> str:
    run = record(rt, *plan_steps, options=options)
    start.start_run(rt, run)
    sent(rt).clear()
    return run


def expected_step(run: str, step: str, version: int = 1, queue: str = DEFAULT_QUEUE,
                  timeout: float = 300.0, tool: str = "echo") -> Message:
    return Message(STEP_TASK, (run, step, version), queue, task_id=f"{run}.{version}.{step}",
                   soft_time_limit=step_limits(timeout)[0],
                   time_limit=step_limits(timeout)[1], ignore_result=True,
                   shadow=f"{STEP_TASK} {tool} {step}",
                   errback=Message(STEP_ERROR_TASK, (run, step, version), DEFAULT_QUEUE,
                                   task_id=f"{run}.{version}.{step}.error", immutable=False,
                                   shadow=f"{STEP_ERROR_TASK} {step}"))


def echo(sid: str, value: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "echo", "args": {"value": value}, **extra}


def failing(sid: str, **extra: Any) -> dict[str, Any]:
    """A step that fails for good on every attempt (``on_failure`` is replan by default)."""
    return {"id": sid, "tool": "fail", "args": {"times": -1, "kind": "permanent"}, **extra}


def think(sid: str, prompt: Any = "think", **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "llm", "args": {"prompt": prompt}, **extra}


def submit(*plan_steps: dict[str, Any], match: str | None = None) -> dict[str, Any]:
    """A scripted replanner answer."""
    answer: dict[str, Any] = {"role": "replanner", "content": [
        {"type": "tool_use", "id": "t1", "name": "submit_plan",
         "input": {"goal": "test", "steps": list(plan_steps)}}]}
    return answer if match is None else {**answer, "match": match}


def says(role: str, text: str, **extra: Any) -> dict[str, Any]:
    """A scripted text answer of ``role`` (``match``, ``usage``... in ``extra``)."""
    return {"role": role, "content": [{"type": "text", "text": text}], **extra}
