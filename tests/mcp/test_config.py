"""CHORDAL_MCP_SERVERS / CHORDAL_MCP_CONFIG: the mcpServers shape, and errors that name
the variable, the server and the field. No server is started here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planner.errors import ConfigError, PlanInvalid
from planner.language.validation import validate
from planner.settings import Settings
from planner.tools.mcp import configured_servers, parse_servers, schema_errors
from planner.tools.registry import load_tools


def test_the_mcp_servers_shape_with_chordal_keys():
    servers = parse_servers({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "fs", "/data"], "env": {"K": "v"}},
        "search": {"type": "http", "url": "https://mcp.example.com/mcp",
                   "headers": {"Authorization": "Bearer t"}, "queue": "io",
                   "timeout_s": 20, "max_retries": 5},
    }}, "CHORDAL_MCP_SERVERS")
    files, search = servers["files"], servers["search"]
    assert (files.command, files.args, dict(files.env)) == ("npx", ("-y", "fs", "/data"),
                                                            {"K": "v"})
    assert (search.url, search.queue, search.timeout_s, search.max_retries) == (
        "https://mcp.example.com/mcp", "io", 20, 5)
    assert "Bearer" not in repr(search) and "'K'" not in repr(files)


@pytest.mark.parametrize(("servers", "says"), [
    ({"a.b": {"command": "x"}}, "server 'a.b': a server's name is"),
    ({"s": {"args": []}}, "server 's': give either \"command\""),
    ({"s": {"command": "x", "url": "http://h"}}, "give either"),
    ({"s": {"url": "ftp://h"}}, "server 's': url: must be an http"),
    ({"s": {"url": "http://h", "args": ["x"]}}, "args, env and cwd are for stdio"),
    ({"s": {"command": "x", "headers": {"a": "b"}}}, "headers are for HTTP servers"),
    ({"s": {"command": "x", "typo": 1}}, "server 's': typo: Extra inputs"),
    ({"s": {"command": "x", "timeout_s": 0}}, "server 's': timeout_s:"),
    (["not", "a", "mapping"], "must be a JSON object"),
])
def test_mistakes_name_the_variable_server_and_field(servers, says):
    with pytest.raises(ConfigError, match=r"^CHORDAL_MCP_SERVERS: ") as info:
        parse_servers(servers, "CHORDAL_MCP_SERVERS")
    assert says in str(info.value)


def test_a_config_file_and_the_variable_together(tmp_path: Path):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"b": {"url": "http://127.0.0.1:1/mcp"}}}))
    s = Settings.from_env({"CHORDAL_MCP_SERVERS": '{"a": {"command": "x"}}',
                           "CHORDAL_MCP_CONFIG": str(path)})
    assert sorted(configured_servers(s)) == ["a", "b"]
    assert configured_servers(s)["b"].source == f"CHORDAL_MCP_CONFIG ({path})"
    s = Settings.from_env({"CHORDAL_MCP_SERVERS": '{"b": {"command": "x"}}',
                           "CHORDAL_MCP_CONFIG": str(path)})
    with pytest.raises(ConfigError, match="server 'b' is also in CHORDAL_MCP_SERVERS"):
        configured_servers(s)
    path.write_text("{nope")
    with pytest.raises(ConfigError, match=r"^CHORDAL_MCP_CONFIG \(.*\): not JSON"):
        configured_servers(s)
    with pytest.raises(ConfigError, match=r"CHORDAL_MCP_CONFIG .*cannot read"):
        configured_servers(Settings.from_env({"CHORDAL_MCP_CONFIG": str(tmp_path / "x")}))
    with pytest.raises(ConfigError, match=r"CHORDAL_MCP_SERVERS: .*not JSON"):
        Settings.from_env({"CHORDAL_MCP_SERVERS": "files=npx"})


def test_no_servers_no_sdk_and_an_unreachable_one_is_named():
    assert "http_request" in load_tools(Settings.from_env({}))
    s = Settings.from_env({"CHORDAL_MCP_SERVERS": json.dumps(
        {"gone": {"command": "/nonexistent/mcp-server", "queue": "mcp"}})})
    # A server that cannot be listed does not stop the others' tools from loading...
    registry = load_tools(s)
    assert "http_request" in registry and "mcp" in registry.queues
    # ...and a step naming one of its tools is refused, naming the server and why.
    plan = {"goal": "g", "steps": [{"id": "a", "tool": "gone.read", "args": {}}]}
    with pytest.raises(PlanInvalid, match=r"MCP server 'gone' did not list its tools, so "
                                          r"'gone.read' cannot be checked: "
                                          r"FileNotFoundError"):
        validate(plan, registry)


def test_schema_errors_read_like_pydantics():
    schema = {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {}, "opts": {"type": "object", "properties": {
            "n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}},
        "required": ["a", "b"], "additionalProperties": False}
    errors = schema_errors(schema, {"a": "x", "opts": {"m": 1}, "z": 1})
    got = sorted((e["loc"], e["type"]) for e in errors)
    assert got == [(("a",), "type"), (("b",), "missing"), (("opts", "m"), "extra_forbidden"),
                   (("opts", "n"), "missing"), (("z",), "extra_forbidden")]
    assert schema_errors(schema, {"a": 1, "b": 2}) == []
