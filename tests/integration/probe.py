"""A tool module for engine tests, loaded by the test workers through CHORDAL_TOOL_MODULES.

Besides two tools on their own queues, it records the size and routing of every message
the worker publishes, so tests can check what travels through the broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import before_task_publish

from planner.tools import ToolContext, tool

PUBLISHED_KEY = "chordal:test:published"
_clients: dict[str, redis.Redis] = {}


@tool(queue="probe")
def where(ctx: ToolContext, value: Any = None) -> dict[str, Any]:
    """Say which run, step and attempt this is."""
    return {"run": ctx.run_id, "step": ctx.step_id, "attempt": ctx.attempt, "value": value}


@tool(queue="orphan")
def orphan(value: Any) -> Any:
    """A tool on a queue that test workers do not consume."""
    return value


@before_task_publish.connect
def _record(sender: str | None = None, body: Any = None, routing_key: str | None = None,
            headers: dict[str, Any] | None = None, **_: Any) -> None:
    url = os.environ.get("TEST_PROBE_REDIS_URL")
    if not url:
        return
    r = _clients.setdefault(url, redis.Redis.from_url(url))
    size = len(json.dumps(body).encode())
    r.rpush(PUBLISHED_KEY, json.dumps({"task": sender, "size": size, "queue": routing_key,
                                       "id": (headers or {}).get("id")}))


@tool(timeout_s=0.5, max_retries=1)
def stubborn(seconds: float) -> str:
    """Ignore the soft time limit (as a tool stuck in C code would): only the hard limit
    stops it."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.05)
    return "finished"


TRACKED_KEY = "chordal:test:tracked"


def tracked_log(run_id: str, step_id: str) -> list[dict[str, Any]]:
    """What :func:`tracked` noted for one step: each attempt's start (with how many copies
    of the step ran at that moment, itself included) and end, in order."""
    r = redis.Redis.from_url(os.environ["TEST_PROBE_REDIS_URL"])
    return [json.loads(x) for x in r.lrange(f"{TRACKED_KEY}:{run_id}:{step_id}", 0, -1)]


@tool(timeout_s=600)
def tracked(ctx: ToolContext, seconds: float, later_s: float | None = None) -> dict[str, Any]:
    """Sleep ``seconds`` (``later_s`` on attempts after the first, when given), noting in
    the probe Redis when each attempt starts and ends and how many copies of this step run
    at once; return the attempt's number."""
    url = os.environ["TEST_PROBE_REDIS_URL"]
    r = _clients.setdefault(url, redis.Redis.from_url(url))
    key = f"{TRACKED_KEY}:{ctx.run_id}:{ctx.step_id}"
    running = r.incr(f"{key}:running")
    r.rpush(key, json.dumps({"attempt": ctx.attempt, "event": "start", "running": running,
                             "pid": os.getpid()}))
    try:
        time.sleep(seconds if later_s is None or ctx.attempt == 1 else later_s)
    finally:
        r.decr(f"{key}:running")
        r.rpush(key, json.dumps({"attempt": ctx.attempt, "event": "end"}))
    return {"attempt": ctx.attempt}


COUNT_KEY = "chordal:test:count"


def counted(run_id: str, step_id: str, name: str) -> int:
    """How many times :func:`count` ran for ``name`` in one step of one run."""
    r = redis.Redis.from_url(os.environ["TEST_PROBE_REDIS_URL"])
    return int(r.get(f"{COUNT_KEY}:{run_id}:{step_id}:{name}") or 0)


@tool
def count(ctx: ToolContext, name: str) -> int:
    """Count a call of this tool, by ``name``, in the probe Redis (a side effect a test can
    see repeated); return how many times it ran so far."""
    url = os.environ["TEST_PROBE_REDIS_URL"]
    r = _clients.setdefault(url, redis.Redis.from_url(url))
    return int(r.incr(f"{COUNT_KEY}:{ctx.run_id}:{ctx.step_id}:{name}"))


MEET_KEY = "chordal:test:meet"


@tool(timeout_s=60)
def meet(ctx: ToolContext, n: int, wait_s: float = 20) -> dict[str, Any]:
    """Arrive, then wait (up to ``wait_s``) until ``n`` calls of this step have arrived:
    they all return ``met`` only if they ran at the same time. Also says where it ran."""
    url = os.environ["TEST_PROBE_REDIS_URL"]
    r = _clients.setdefault(url, redis.Redis.from_url(url))
    key = f"{MEET_KEY}:{ctx.run_id}:{ctx.step_id}"
    r.incr(key)
    deadline = time.monotonic() + wait_s
    while int(r.get(key) or 0) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"met": int(r.get(key) or 0) >= n, "pid": os.getpid()}
