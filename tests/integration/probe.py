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
