"""A run on a real worker (a Redis database of its own, a Celery worker subprocess) whose
plan calls MCP tools of a stdio server and an HTTP server in parallel, outlives a server
that crashes mid-run, and calls http_request."""

from __future__ import annotations

import json
from pathlib import Path

from planner.client import Client
from planner.settings import Settings
from planner.wire import DEFAULT_QUEUE
from tests.integration.conftest import base_env, start_worker, wait_for_queues
from tests.mcp.conftest import HttpServer, servers_json


def test_a_plan_of_mcp_tools_on_a_worker(redis_url: str, http_server: HttpServer,
                                         tmp_path: Path):
    env = base_env(redis_url, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_MCP_SERVERS=servers_json(http_server),
                   CHORDAL_HTTP_ALLOW="127.0.0.1")
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency=2")
    try:
        client = Client(Settings.from_env(env))
        wait_for_queues(client, {DEFAULT_QUEUE}, worker)
        marker = tmp_path / "crashed"
        plan = {"goal": "MCP tools on a worker", "steps": [
            # One level: a stdio server's tool and an HTTP server's, side by side (long
            # enough to cover the stdio server's start in a pool process on a busy host).
            {"id": "a", "tool": "files.nap", "args": {"seconds": 4, "value": "a"}},
            {"id": "b", "tool": "web.nap", "args": {"seconds": 4, "value": "b"}},
            # Kills its stdio server on the first attempt; the retry starts another.
            {"id": "c", "tool": "files.crash_once", "args": {"marker": str(marker)},
             "depends_on": ["a"]},
            {"id": "h", "tool": "http_request", "args": {
                "url": http_server.url.replace("/mcp", "/health")}},
            # An output of one server's tool into another's, by $ref.
            {"id": "sum_in", "tool": "files.add", "args": {"a": 40, "b": 1}},
            {"id": "sum", "tool": "web.add", "args": {"a": 1, "b": {"$ref": "sum_in.result"}}},
        ]}
        report = client.wait(client.submit(plan), timeout=60)
        log = (tmp_path / "worker.log").read_text()
        assert report.status == "succeeded", (report.model_dump_json(indent=1), log[-3000:])
        steps = report.steps
        a, b = steps["a"].output, steps["b"].output
        assert (a["value"], b["value"]) == ("a", "b")
        assert a["start"] < b["end"] and b["start"] < a["end"], "a and b did not overlap"
        assert steps["c"].attempts == 2 and steps["c"].output["result"].startswith(
            "recovered in ")
        assert steps["h"].output["json"] == {"ok": True, "server": "web"}
        assert steps["sum"].output == {"result": 42}
        assert json.loads(marker.read_text())  # the pid of the server that crashed
    finally:
        worker.stop()
