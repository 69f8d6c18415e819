"""MCP tools against real servers (tests/mcp/server.py): discovery over stdio and HTTP, the
schemas the planner and validation see, calls and their errors, a server that dies."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner.errors import PermanentError, PlanInvalid, TransientError
from planner.language.validation import validate
from planner.settings import Settings
from planner.tools import ToolContext, ToolRegistry
from planner.tools.mcp import TEXT_OUTPUT, McpTool
from planner.tools.registry import load_tools
from tests.mcp.conftest import ROOT, HttpServer, clean_env, free_port, servers_json

CTX = ToolContext("run", "step", 1)


@pytest.fixture(scope="module")
def registry(http_server: HttpServer) -> ToolRegistry:
    return load_tools(Settings.from_env({"CHORDAL_MCP_SERVERS": servers_json(
        http_server, slow={"command": sys.executable, "args": [
            str(Path(__file__).with_name("server.py")), "stdio", "slow"],
            "queue": "mcp", "timeout_s": 1, "max_retries": 1})}))


def test_discovery_registers_server_dot_tool_with_the_servers_schemas(registry):
    for server in ("files", "web", "slow"):
        assert {f"{server}.{t}" for t in ("add", "forecast", "shout", "refuse", "nap",
                                          "crash_once", "pid")} <= set(registry)
    assert "http_request" in registry and "calculate" in registry
    add = registry["files.add"]
    assert isinstance(add, McpTool) and add.description == "Add two integers."
    assert add.input_schema["required"] == ["a", "b"]
    assert add.output_schema["properties"]["result"]["type"] == "integer"
    forecast = registry["web.forecast"].describe()
    assert forecast["input_schema"]["properties"]["days"]["default"] == 1
    assert set(forecast["output_schema"]["properties"]) == {"city", "high_c", "sunny"}
    assert registry["files.shout"].output_schema == TEXT_OUTPUT
    slow = registry["slow.nap"]
    assert (slow.queue, slow.timeout_s, slow.max_retries) == ("mcp", 1, 1)
    assert "mcp" in registry.queues


def test_validation_checks_args_and_refs_against_the_schemas(registry):
    plan = {"goal": "g", "steps": [
        {"id": "w", "tool": "web.forecast", "args": {"city": "Paris"}},
        {"id": "a", "tool": "files.add", "args": {"a": 1, "b": {"$ref": "w.high_c"}}},
        {"id": "s", "tool": "files.shout", "args": {"text": {"$ref": "w.city"}},
         "depends_on": ["a"]},
    ]}
    assert validate(plan, registry).shape.levels == [["w"], ["a"], ["s"]]
    bad = {"goal": "g", "steps": [
        {"id": "a", "tool": "files.add", "args": {"a": "one"}},
        {"id": "w", "tool": "web.forecast", "args": {"city": "Paris", "days": 1.5}},
        {"id": "r", "tool": "files.add", "args": {"a": 1, "b": {"$ref": "w.rain"}}},
        {"id": "s", "tool": "files.shout", "args": {"text": {"$ref": "a.result"}}},
    ]}
    with pytest.raises(PlanInvalid) as info:
        validate(bad, registry)
    problems = {(p.step, p.field): p.message for p in info.value.problems}
    assert problems[("a", "args.a")] == "'one' is not of type 'integer' (tool 'files.add')"
    assert problems[("a", "args.b")] == "missing (tool 'files.add')"
    assert "is not of type 'integer'" in problems[("w", "args.days")]
    assert "output has no key 'rain'" in problems[("r", "args.b")]
    assert problems[("s", "args.text")] == (
        "$ref a.result is an integer (output of tool 'files.add'), but 'text' expects a "
        "string (tool 'files.shout')")


def test_calls_return_structured_content_or_text(registry):
    assert registry["files.add"].invoke({"a": 2, "b": 3}, CTX) == {"result": 5}
    assert registry["web.forecast"].invoke({"city": "London"}, CTX) == {
        "city": "London", "high_c": 21, "sunny": False}
    assert registry["web.shout"].invoke({"text": "hi"}, CTX) == "HI"


def test_errors_map_to_permanent_and_transient(registry):
    with pytest.raises(PermanentError, match=r"files.refuse: .*refused: no reason"):
        registry["files.refuse"].invoke({"reason": "no reason"}, CTX)
    with pytest.raises(PermanentError, match="bad arguments: a: 'x' is not of type"):
        registry["files.add"].invoke({"a": "x", "b": 1}, CTX)
    slow = registry["slow.nap"]  # timeout_s 1
    with pytest.raises(TransientError, match=r"slow.nap"):
        slow.invoke({"seconds": 3, "value": "late"}, CTX)
    assert slow.invoke({"seconds": 0, "value": "ok"}, CTX)["value"] == "ok"


def test_the_steps_timeout_bounds_an_mcp_call(registry):
    web = registry["web.nap"]  # the server's timeout_s: the default, minutes
    start = time.monotonic()
    with pytest.raises(TransientError, match=r"web\.nap: MCP server 'web'"):
        web.invoke({"seconds": 8, "value": "late"}, ToolContext("run", "step", 1,
                                                                timeout_s=1))
    assert time.monotonic() - start < 6
    assert web.invoke({"seconds": 0, "value": "ok"}, CTX)["value"] == "ok"


def test_a_stdio_server_that_dies_is_restarted_by_the_next_call(registry, tmp_path):
    first = registry["files.pid"].invoke({}, CTX)["result"]
    marker = str(tmp_path / "crashed")
    with pytest.raises(TransientError, match="MCP server 'files'"):
        registry["files.crash_once"].invoke({"marker": marker}, CTX)
    again = registry["files.crash_once"].invoke({"marker": marker}, CTX)
    second = registry["files.pid"].invoke({}, CTX)["result"]
    assert again == {"result": f"recovered in {second}"} and second != first


def test_an_http_server_that_goes_away_and_comes_back(registry, tmp_path):
    server = HttpServer(free_port(), tmp_path / "web2.log")
    server.start()
    try:
        tools = load_tools(Settings.from_env({"CHORDAL_MCP_SERVERS": json.dumps(
            {"back": {"url": server.url, "max_retries": 2,
                      "headers": {"X-Api-Key": "k"}}})}))
        assert tools["back.add"].invoke({"a": 1, "b": 1}, CTX) == {"result": 2}
        server.kill()
        with pytest.raises(TransientError, match="MCP server 'back'"):
            tools["back.add"].invoke({"a": 1, "b": 1}, CTX)
        server.start()
        assert tools["back.add"].invoke({"a": 2, "b": 2}, CTX) == {"result": 4}
    finally:
        server.kill()


def test_chordal_tools_and_validate_see_them(http_server: HttpServer, tmp_path: Path):
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": json.loads(servers_json(http_server))}))
    env = {**clean_env(), "CHORDAL_MCP_CONFIG": str(config), "PYTHONPATH": str(ROOT)}
    # --mcp-config FILE, or CHORDAL_MCP_CONFIG (below): the same.
    out = subprocess.run([sys.executable, "-m", "planner.cli", "--mcp-config", "mcp.json",
                          "tools", "--json"], capture_output=True, text=True,
                         env={**env, "CHORDAL_MCP_CONFIG": ""}, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    listed = {t["name"]: t for t in json.loads(out.stdout)}
    assert listed["web.forecast"]["input_schema"]["required"] == ["city"]
    assert listed["files.add"]["output_schema"]["required"] == ["result"]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "a", "tool": "files.add", "args": {"a": 1, "c": 2}}]}))
    out = subprocess.run([sys.executable, "-m", "planner.cli", "validate", str(plan)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 2
    assert "step 'a', args.b: missing (tool 'files.add')" in out.stderr


def test_a_stdio_servers_stderr_goes_to_the_log_whatever_sys_stderr_is(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch):
    from celery.utils.log import LoggingProxy, get_logger

    # What Celery puts in sys.stderr in a worker: no file descriptor for a child process.
    monkeypatch.setattr(sys, "stderr", LoggingProxy(get_logger("celery.redirected")))
    caplog.set_level("INFO", logger="chordal.mcp.server")
    registry = load_tools(Settings.from_env({"CHORDAL_MCP_SERVERS": json.dumps({"noisy": {
        "command": sys.executable, "args": [str(Path(__file__).with_name("server.py")),
                                            "stdio", "noisy"],
        "env": {"MCP_TEST_STDERR": "hello from stderr"}}})}))
    assert registry["noisy.add"].invoke({"a": 1, "b": 2}, CTX) == {"result": 3}
    assert "MCP server 'noisy': hello from stderr" in caplog.text
