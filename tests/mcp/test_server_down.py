"""An MCP server that is down when a worker starts: the worker starts and runs the other
tools; the server's steps fail transiently (retried by the step's policy) and succeed once
it answers, or end failed with its error when the retries run out: never left running."""

from __future__ import annotations

import json
import time
from pathlib import Path

from planner.client import Client
from planner.settings import Settings
from planner.wire import DEFAULT_QUEUE
from tests.integration.conftest import base_env, start_worker, wait_for_queues
from tests.mcp.conftest import HttpServer, free_port


def test_a_server_down_at_worker_start(redis_url: str, tmp_path: Path):
    back = HttpServer(free_port(), tmp_path / "back.log")
    gone = HttpServer(free_port(), tmp_path / "gone.log")
    env = base_env(redis_url, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_RETRY_BACKOFF_S="0.5", CHORDAL_RETRY_BACKOFF_MAX_S="1",
                   CHORDAL_MCP_SERVERS=json.dumps({
                       "back": {"url": back.url, "max_retries": 60},
                       "gone": {"url": gone.url, "max_retries": 1, "queue": "remote"}}))
    # The client (another machine, say) lists both servers' tools while they are up...
    back.start()
    gone.start()
    client = Client(Settings.from_env(env))
    assert {"back.add", "gone.add"} <= set(client.tools)
    back.kill()
    gone.kill()
    # ...and the worker starts while both are down.
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        wait_for_queues(client, {DEFAULT_QUEUE, "remote"}, worker)
        log = (tmp_path / "worker.log").read_text()
        assert "server 'back'" in log and "cannot list its tools" in log
        run_id = client.submit({"goal": "a server comes back", "steps": [
            {"id": "plain", "tool": "echo", "args": {"value": "ran"}},
            {"id": "mcp", "tool": "back.add", "args": {"a": 40, "b": 2}},
        ]})
        deadline = time.monotonic() + 60
        while True:
            report = client.report(run_id)
            if report.steps["mcp"].attempts >= 2 and report.steps["plain"].status == \
                    "succeeded":
                break
            assert not report.ended and time.monotonic() < deadline, \
                (report.model_dump_json(indent=1), log[-3000:])
            time.sleep(0.2)
        error = report.steps["mcp"].error
        assert error is not None and error.transient and "MCP server 'back'" in error.message
        assert report.steps["plain"].output == "ran"
        back.start()
        report = client.wait(run_id, timeout=90)
        assert report.status == "succeeded", (report.model_dump_json(indent=1),
                                              (tmp_path / "worker.log").read_text()[-3000:])
        assert report.steps["mcp"].output == {"result": 42}
        assert report.steps["mcp"].attempts >= 2

        # A server that stays down: its step's retries run out, and the run ends failed
        # with the server's error as the reason.
        report = client.wait(client.submit({"goal": "a server stays down", "steps": [
            {"id": "mcp", "tool": "gone.add", "args": {"a": 1, "b": 2}}]}), timeout=90)
        assert report.status == "failed", report.model_dump_json(indent=1)
        step = report.steps["mcp"]
        assert step.status == "failed" and step.attempts == 2
        assert step.error is not None and step.error.transient
        assert "MCP server 'gone'" in step.error.message
        assert report.error is not None and "mcp" in report.error.message
    finally:
        worker.stop()
        back.kill()
