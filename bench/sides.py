"""The two sides of bench/run.py, each timed on the client's wall clock (perf_counter
around submit-to-result): Chordal's plans, and raw Celery's no-op canvases on the same
broker and worker. Chordal's runs also give their span on Redis's clock (the run's
recorded creation to its end), an extra column that leaves out the client's own work."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from celery import chain, group

from bench.levels import NOOP_TASK, submit_levels
from planner.client import Client


@dataclass(frozen=True)
class Timed:
    wall_s: float
    redis_s: float | None = None


def chain_plan(n: int) -> dict[str, Any]:
    return {"goal": "chain", "steps": [
        {"id": f"s{i}", "tool": "echo", "args": {"value": i},
         "depends_on": [f"s{i - 1}"] if i else []} for i in range(n)]}


def fan_out_plan(n: int) -> dict[str, Any]:
    return {"goal": "fan-out", "steps": [
        {"id": f"s{i}", "tool": "echo", "args": {"value": i}} for i in range(n)]}


def submit(client: Client, plan: dict[str, Any], mode: str = "dataflow") -> str:
    return submit_levels(client, plan) if mode == "levels" else client.submit(plan)


def chordal(client: Client, plan: dict[str, Any], mode: str = "dataflow") -> Timed:
    """One run, submit to its report."""
    t0 = time.perf_counter()
    run_id = submit(client, plan, mode)
    report = client.wait(run_id, timeout=600)
    wall = time.perf_counter() - t0
    assert report.status == "succeeded", report.error
    assert report.finished_at is not None and report.created_at is not None
    return Timed(wall, (report.finished_at - report.created_at).total_seconds())


def raw_chain(client: Client, n: int) -> Timed:
    noop = client.app.signature(NOOP_TASK, immutable=True)
    t0 = time.perf_counter()
    result = chain(*[noop.clone() for _ in range(n)]).apply_async()
    result.get(timeout=600)
    elapsed = time.perf_counter() - t0
    result.forget()
    return Timed(elapsed)


def raw_group(client: Client, n: int) -> Timed:
    noop = client.app.signature(NOOP_TASK, immutable=True)
    t0 = time.perf_counter()
    result = group([noop.clone() for _ in range(n)]).apply_async()
    result.get(timeout=600)
    elapsed = time.perf_counter() - t0
    result.forget()
    return Timed(elapsed)


def raw_one(client: Client) -> Timed:
    """``delay().get()`` of one no-op: raw Celery's submit-to-result latency."""
    t0 = time.perf_counter()
    result = client.app.signature(NOOP_TASK).delay()
    result.get(timeout=60)
    elapsed = time.perf_counter() - t0
    result.forget()
    return Timed(elapsed)
