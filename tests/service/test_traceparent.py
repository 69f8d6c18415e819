"""A run created over HTTP joins its caller's trace: a real ``chordal serve`` and a real
worker, both exporting their spans (to a Redis list, tests/ops/spans.py); the request's
server span is the child of the caller's ``traceparent``, and the run's spans (the run, its
steps) carry the caller's trace id, linked parent to child."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from planner import RunOptions, tracing
from planner.remote import AsyncClient, RemoteClient
from planner.tracing import run_ids
from tests import redis_server
from tests.integration.conftest import base_env, start_worker, wait_for_queues
from tests.service.conftest import Server, start_server

REDIS_URL = redis_server.url(13)
SPANS_URL = redis_server.url(10)
SECRET = "alice-secret-0123456789"
PLAN = {"goal": "two steps", "steps": [
    {"id": "a", "tool": "echo", "args": {"value": "x"}},
    {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}}}]}


@dataclass
class Traced:
    server: Server

    def http(self, **headers: str) -> httpx.Client:
        return httpx.Client(base_url=self.server.url, timeout=30,
                            headers={"Authorization": f"Bearer {SECRET}", **headers})

    def spans(self, trace_id: int, want: set[str]) -> list[dict[str, Any]]:
        """The spans of a trace, once every name in ``want`` is among them."""
        r = redis.Redis.from_url(SPANS_URL)
        deadline = time.monotonic() + 30
        while True:
            spans = [s for s in map(json.loads, r.lrange("test:spans", 0, -1))
                     if s["trace_id"] == trace_id]
            if want <= {s["name"] for s in spans} or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    redis.Redis.from_url(SPANS_URL).delete("test:spans")
    tmp = tmp_path_factory.mktemp("traced")
    env = base_env(REDIS_URL, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_API_KEYS=f"alice={SECRET}",
                   CHORDAL_API_RATE_LIMIT_PER_MIN="100000",
                   CHORDAL_TRACE_EXPORTER="tests.ops.spans:to_redis",
                   TEST_SPANS_REDIS_URL=SPANS_URL, OTEL_BSP_SCHEDULE_DELAY="100")
    worker = start_worker(env, tmp / "worker.log", "--concurrency=1")
    server = None
    try:
        server = start_server(env, tmp / "serve.log")
        wait_for_queues(server.client, {"chordal"}, worker)
        yield Traced(server)
    finally:
        if server is not None:
            server.stop()
        worker.stop()


def wait_ended(http: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        report: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()
        if report["status"] in {"succeeded", "failed"} or time.monotonic() > deadline:
            return report
        time.sleep(0.1)


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [s for s in spans if s["name"] == name]
    assert len(found) == 1, (name, [s["name"] for s in spans])
    return found[0]


def test_a_run_created_with_a_traceparent_joins_the_callers_trace(traced: Traced):
    trace_id, caller = secrets.randbits(128), secrets.randbits(64)
    parent = f"00-{trace_id:032x}-{caller:016x}-01"
    with traced.http(traceparent=parent) as http:
        created = http.post("/v1/runs", json={"plan": PLAN})
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        # The run's id carries the trace: every process finds it without asking.
        assert run_id.endswith(f"-{trace_id:032x}")
        assert run_ids(run_id)[0] == trace_id
        assert wait_ended(http, run_id)["status"] == "succeeded"

    spans = traced.spans(trace_id, {"POST /v1/runs", "chordal.create_run", "chordal.run",
                                    "chordal.step echo a", "chordal.step echo b"})
    request = one(spans, "POST /v1/runs")
    assert request["kind"] == "SERVER" and request["parent_id"] == caller
    assert request["attributes"]["http.response.status_code"] == 201
    assert request["attributes"]["http.route"] == "/v1/runs"
    creation = one(spans, "chordal.create_run")
    assert creation["parent_id"] == request["span_id"]
    run = one(spans, "chordal.run")
    assert run["span_id"] == run_ids(run_id)[1] and run["parent_id"] == creation["span_id"]
    assert run["attributes"]["chordal.run.status"] == "succeeded"
    a, b = one(spans, "chordal.step echo a"), one(spans, "chordal.step echo b")
    assert a["parent_id"] == run["span_id"]  # published at creation: the run's child
    assert b["parent_id"] == a["span_id"]    # published by a's task
    assert a["pid"] != request["pid"]        # the worker's spans, in the caller's trace
    assert {s["trace_id"] for s in spans} == {trace_id}


def test_every_request_is_a_server_span_and_no_traceparent_keeps_the_runs_own_trace(
        traced: Traced):
    trace_id, caller = secrets.randbits(128), secrets.randbits(64)
    with traced.http() as http:
        run_id = http.post("/v1/runs", json={"plan": PLAN}).json()["run_id"]
        assert len(run_id) == 20  # no trace to join: an ordinary id, its own trace
        assert wait_ended(http, run_id)["status"] == "succeeded"
        got = http.get(f"/v1/runs/{run_id}",
                       headers={"traceparent": f"00-{trace_id:032x}-{caller:016x}-01"})
        assert got.status_code == 200
    (read,) = traced.spans(trace_id, {"GET /v1/runs/{run_id}"})
    assert read["kind"] == "SERVER" and read["parent_id"] == caller
    assert read["attributes"]["url.path"] == f"/v1/runs/{run_id}"
    assert "chordal.step echo a" in {s["name"] for s in traced.spans(run_ids(run_id)[0],
                                                                {"chordal.step echo a"})}


def test_every_door_joins_the_current_trace(traced: Traced):
    """Inside a span of the caller's: the HTTP clients send its context, the in-process
    Client uses it; all three runs carry its trace id, in the one format."""
    assert tracing.configure("tests.ops.spans:memory")  # this process records spans

    async def by_async_client() -> str:
        async with AsyncClient(traced.server.url, api_key=SECRET) as client:
            return await client.submit(PLAN)

    with tracing.tracer().start_as_current_span("caller") as span:
        trace_id = span.get_span_context().trace_id
        with RemoteClient(traced.server.url, api_key=SECRET) as remote:
            remote_id = remote.submit(PLAN)
        async_id = asyncio.run(by_async_client())
        local_id = traced.server.client.submit(PLAN, RunOptions(owner="alice"))
    ids = {remote_id, async_id, local_id}
    for run_id in ids:
        assert run_id.endswith(f"-{trace_id:032x}"), run_id
        assert run_ids(run_id)[0] == trace_id
    with traced.http() as http:
        for run_id in ids:
            assert wait_ended(http, run_id)["status"] == "succeeded"
    # Their spans, the worker's included, are in the caller's trace.
    deadline = time.monotonic() + 30
    while True:
        runs = {s["attributes"]["chordal.run_id"] for s in traced.spans(trace_id, set())
                if s["name"] == "chordal.run"}
        if runs == ids or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert runs == ids


def test_without_tracing_a_traceparent_changes_nothing(tmp_path: Path):
    """A server that records no spans does not put a caller's trace id in run ids (anyone
    who knows the run id would know the trace's)."""
    env = base_env(REDIS_URL, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_API_KEYS=f"alice={SECRET}")
    server = start_server(env, tmp_path / "serve.log")
    try:
        trace_id, caller = secrets.randbits(128), secrets.randbits(64)
        with httpx.Client(base_url=server.url, timeout=30, headers={
                "Authorization": f"Bearer {SECRET}",
                "traceparent": f"00-{trace_id:032x}-{caller:016x}-01"}) as http:
            created = http.post("/v1/runs", json={"plan": PLAN, "approve": True})
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        assert len(run_id) == 20 and f"{trace_id:032x}" not in run_id
    finally:
        server.stop()
