"""MCP config files as people have them: Claude Desktop's whole file, Cline's and Roo's
keys, VS Code's `servers`, ${VAR} in them, and paths relative to the file's folder. The
servers that should start are real (tests/mcp/server.py) and list their tools."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from planner.errors import ConfigError
from planner.settings import Settings
from planner.tools.mcp import configured_servers, parse_servers
from planner.tools.registry import load_tools
from tests.mcp.conftest import SERVER, HttpServer, stdio_server


def from_file(tmp_path: Path, document: object) -> Settings:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    return Settings.from_env({"CHORDAL_MCP_CONFIG": str(path)})


def test_a_whole_claude_desktop_file(tmp_path: Path):
    settings = from_file(tmp_path, {
        "globalShortcut": "Ctrl+Space",
        "preferences": {"quickEntryShortcut": "off", "menuBarEnabled": False},
        "mcpServers": {"files": {**stdio_server(), "env": {"LOG_LEVEL": "warn"}}},
        "isUsingBuiltInNodeForMcp": True,
    })
    registry = load_tools(settings)
    assert registry["files.add"].input_schema["required"] == ["a", "b"]


def test_cline_and_roo_keys(tmp_path: Path):
    settings = from_file(tmp_path, {"mcpServers": {
        "files": {**stdio_server(), "autoApprove": ["add"], "alwaysAllow": ["pid"],
                  "disabled": False, "timeout": 45, "transportType": "stdio",
                  "disabledTools": ["crash_once"]},
        # Disabled: never started (its command does not exist), and no tools of it.
        "off": {"command": "/nonexistent/server", "disabled": True},
    }})
    servers = configured_servers(settings)
    assert sorted(servers) == ["files"]
    assert servers["files"].timeout_s == 45
    registry = load_tools(settings)
    assert "files.add" in set(registry) and "files.crash_once" not in set(registry)
    assert not any(name.startswith("off.") for name in registry)
    assert "off.read" not in registry


def test_vs_code_servers(tmp_path: Path, http_server: HttpServer,
                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WEB_TOKEN", "s3cret")
    doc = {"inputs": [{"type": "promptString", "id": "token", "password": True}],
           "servers": {"files": {"type": "stdio", **stdio_server()},
                       "web": {"type": "http", "url": http_server.url,
                               "headers": {"Authorization": "Bearer ${env:WEB_TOKEN}"}}}}
    servers = configured_servers(from_file(tmp_path, doc))
    assert dict(servers["web"].headers) == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(servers["web"])
    registry = load_tools(from_file(tmp_path, doc))
    assert {"files.add", "web.add"} <= set(registry)
    # VS Code's settings.json holds the same under "mcp".
    assert sorted(configured_servers(from_file(tmp_path, {"mcp": doc}))) == ["files", "web"]
    doc["servers"]["web"]["headers"] = {"Authorization": "Bearer ${input:token}"}
    with pytest.raises(ConfigError, match=r"server 'web': headers.Authorization: "
                                          r"\$\{input:token\} is a VS Code input"):
        configured_servers(from_file(tmp_path, doc))
    with pytest.raises(ConfigError, match=r"server 'w': type 'sse' is for HTTP servers"):
        parse_servers({"servers": {"w": {"type": "sse", "command": "x"}}}, "X")


def test_variables_are_expanded_and_an_unset_one_is_named(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MCP_HOST", "mcp.example.com")
    monkeypatch.setenv("MCP_KEY", "k-123")
    monkeypatch.delenv("MCP_UNSET", raising=False)
    servers = parse_servers({
        "s": {"command": "srv", "args": ["--root", "${MCP_HOST}/x", "${MCP_UNSET:-dflt}"],
              "env": {"KEY": "${MCP_KEY}", "PLAIN": "$MCP_KEY"}},
        "h": {"url": "https://${MCP_HOST}/mcp", "headers": {"X-Key": "key ${MCP_KEY}"}},
    }, "CHORDAL_MCP_SERVERS")
    assert servers["s"].args == ("--root", "mcp.example.com/x", "dflt")
    assert dict(servers["s"].env) == {"KEY": "k-123", "PLAIN": "$MCP_KEY"}
    assert servers["h"].url == "https://mcp.example.com/mcp"
    assert dict(servers["h"].headers) == {"X-Key": "key k-123"}
    for raw, field in [({"command": "srv", "env": {"K": "${MCP_UNSET}"}}, "env.K"),
                       ({"command": "srv", "args": ["a", "${MCP_UNSET}"]}, r"args\[1\]"),
                       ({"url": "https://${MCP_UNSET}/mcp"}, "url"),
                       ({"url": "https://h/mcp", "headers": {"A": "${MCP_UNSET}"}},
                        "headers.A")]:
        with pytest.raises(ConfigError, match=rf"^CHORDAL_MCP_SERVERS: server 's': {field}: "
                                              r"environment variable MCP_UNSET is not set"):
            parse_servers({"s": raw}, "CHORDAL_MCP_SERVERS")


def test_paths_are_relative_to_the_config_files_folder(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "conf"
    (folder / "bin").mkdir(parents=True)
    (folder / "work").mkdir()
    shutil.copy(SERVER, folder / "server.py")
    launcher = folder / "bin" / "serve"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    (folder / "vars.env").write_text("FROM_FILE=yes\n")
    (folder / "mcp.json").write_text(json.dumps({"mcpServers": {
        "rel": {"command": sys.executable, "args": ["server.py", "stdio", "rel"],
                "cwd": "work", "envFile": "vars.env"},
        "sh": {"command": "bin/serve", "args": ["server.py", "stdio", "sh"]},
        "pkg": {"command": "npx", "args": ["-y", "@scope/server", "--flag", "not/here"]},
    }}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = Settings.from_env({"CHORDAL_MCP_CONFIG": "../conf/mcp.json"})
    servers = configured_servers(settings)
    real = folder.resolve()
    assert servers["rel"].args == (str(real / "server.py"), "stdio", "rel")
    assert servers["rel"].cwd == str(real / "work")
    assert dict(servers["rel"].env) == {"FROM_FILE": "yes"}
    assert servers["sh"].command == str(real / "bin" / "serve")
    # Names that are not files beside the config stay as written (npx's package, flags).
    assert (servers["pkg"].command, servers["pkg"].args) == (
        "npx", ("-y", "@scope/server", "--flag", "not/here"))
    file_only = folder / "two.json"
    file_only.write_text(json.dumps({"mcpServers": {k: v for k, v in json.loads(
        (folder / "mcp.json").read_text())["mcpServers"].items() if k != "pkg"}}))
    registry = load_tools(Settings.from_env({"CHORDAL_MCP_CONFIG": str(file_only)}))
    assert {"rel.add", "sh.add"} <= set(registry)


def test_module_and_package_names_are_not_made_paths(tmp_path: Path):
    (tmp_path / "myserver").mkdir()  # a package beside the config: `-m` names it
    (tmp_path / "tools").mkdir()
    (tmp_path / "agency.py").write_text("")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "run.js").write_text("")
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {
        "mod": {"command": "python", "args": ["-m", "myserver", "tools"]},
        "dashed": {"command": "python", "args": ["-m", "./agency.py"]},
        "script": {"command": "python", "args": ["agency.py", "--root", "./tools"]},
        "node": {"command": "node", "args": ["lib/run.js", "missing.js"]},
    }}))
    servers = configured_servers(Settings.from_env(
        {"CHORDAL_MCP_CONFIG": str(tmp_path / "mcp.json")}))
    real = tmp_path.resolve()
    assert servers["mod"].args == ("-m", "myserver", "tools")
    assert servers["dashed"].args == ("-m", "./agency.py")
    assert servers["script"].args == (str(real / "agency.py"), "--root",
                                      str(real / "tools"))
    assert servers["node"].args == (str(real / "lib" / "run.js"), "missing.js")
