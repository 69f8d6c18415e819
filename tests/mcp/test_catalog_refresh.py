"""A server that was down when a process started is asked again, also by a process that
only validates (API, CLI), and by one thread at a time: threads that need it meanwhile go
on with what is known instead of each waiting out their own listing."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from planner.errors import PlanInvalid, TransientError
from planner.language.validation import validate
from planner.settings import Settings
from planner.tools.mcp import adapter, discovery
from planner.tools.mcp.config import McpServer
from planner.tools.registry import load_tools
from tests.mcp.conftest import HttpServer, free_port

PLAN = {"goal": "g", "steps": [{"id": "a", "tool": "late.add", "args": {"a": 1, "b": 2}}]}


def test_a_validating_process_sees_a_server_that_came_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(adapter, "RETRY_DOWN_S", 0.0)
    server = HttpServer(free_port(), tmp_path / "late.log")
    tools = load_tools(Settings.from_env({"CHORDAL_MCP_SERVERS": json.dumps(
        {"late": {"url": server.url}})}))
    with pytest.raises(PlanInvalid, match="did not list its tools"):
        validate(PLAN, tools)
    server.start()
    try:
        assert validate(PLAN, tools).shape.levels == [["a"]]  # no restart needed
        assert tools["late.add"].check_args({"a": "one", "b": 2}) != []
        with pytest.raises(PlanInvalid, match=r"unknown tool 'late\.nope'"):
            validate({"goal": "g", "steps": [{"id": "a", "tool": "late.nope", "args": {}}]},
                     tools)
    finally:
        server.kill()


def test_one_thread_asks_a_hanging_server_the_others_go_on(monkeypatch: pytest.MonkeyPatch):
    hang = 3.0
    monkeypatch.setattr(discovery, "CONNECT_TIMEOUT_S", hang)
    monkeypatch.setattr(adapter, "RETRY_DOWN_S", 0.0)
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/mcp"
        server = McpServer(name="mute", url=url, timeout_s=5)
        catalog = adapter.McpCatalog({"mute": server})
        catalog.down["mute"] = ConnectionError("down at start")
        took: list[float] = []

        def step() -> None:
            start = time.monotonic()
            with pytest.raises(TransientError):
                catalog.answered(server, "add")
            took.append(time.monotonic() - start)

        threads = [threading.Thread(target=step) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    # One thread waited out the listing; the others did not queue up behind it.
    assert len(took) == 4
    assert sum(1 for t in took if t >= hang) == 1, took
