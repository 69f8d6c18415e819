"""A secret in an MCP server's URL (``${VAR}`` in its query or userinfo) or in its headers
never reaches a log line or a step's error: the URL is shown without them."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from planner.errors import TransientError
from planner.settings import Settings
from planner.tools.mcp.adapter import McpCatalog
from planner.tools.mcp.config import configured_servers

SECRET = "s3cr3t-t0ken-value"
PASSWORD = "hunter2-password"


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_DELETE = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def unavailable() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_url_and_header_secrets_stay_out_of_logs_and_errors(
        unavailable: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    monkeypatch.setenv("MCP_KEY", SECRET)
    monkeypatch.setenv("MCP_PASSWORD", PASSWORD)
    config = {"vault": {"url": f"http://user:${{MCP_PASSWORD}}@127.0.0.1:{unavailable}/mcp"
                               "?api_key=${MCP_KEY}",
                        "headers": {"Authorization": "Bearer ${MCP_KEY}"}}}
    servers = configured_servers(Settings.from_env({"CHORDAL_MCP_SERVERS": json.dumps(config)}))
    server = servers["vault"]
    assert server.url is not None and SECRET in server.url  # used to connect, as given
    assert server.shown_url == f"http://127.0.0.1:{unavailable}/mcp"
    assert SECRET not in repr(server) and PASSWORD not in server.where()

    with caplog.at_level(logging.DEBUG):
        catalog = McpCatalog.load(Settings.from_env({"CHORDAL_MCP_SERVERS": json.dumps(config)}))
        assert "vault" in catalog.down, caplog.text
        problems = catalog.find("vault.add").check_args({})  # type: ignore[union-attr]
        with pytest.raises(TransientError) as info:
            catalog.answered(server, "add")
    shown = [caplog.text, str(info.value), json.dumps(problems)]
    assert "503" in caplog.text and f"127.0.0.1:{unavailable}/mcp" in caplog.text
    for text in shown:
        assert SECRET not in text and PASSWORD not in text, text
