"""The load benchmark's tool (bench/load.py): ``tally`` returns its value and counts, in
Redis, each time it ran for a (run, step), so the benchmark can tell a step that ran twice
from one that ran once. Loaded by the benchmark's worker only."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import redis

from planner.tools import ToolContext, tool

#: The tally's hash: field "<run>|<step>", value how many times the tool ran for it.
TALLY_KEY = "bench:load:tally"


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_TALLY_URL"])


@tool
def tally(ctx: ToolContext, value: Any) -> Any:
    """Count this execution, then return ``value``."""
    _redis().hincrby(TALLY_KEY, f"{ctx.run_id}|{ctx.step_id}", 1)
    return value
