"""Real MCP servers for the tests: tests/mcp/server.py over stdio (started by the client
under test) and over streamable HTTP (a process started here); the Redis database of the
tests that start workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests import redis_server

SERVER = Path(__file__).with_name("server.py")
ROOT = Path(__file__).resolve().parents[2]


free_port = redis_server.free_port
DB = 26


@pytest.fixture(scope="module")
def redis_url() -> str:
    """A database of the mcp tests' own (of the test process's Redis), flushed for each
    module."""
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    return url


def answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def stdio_server(name: str = "files") -> dict[str, object]:
    return {"command": sys.executable, "args": [str(SERVER), "stdio", name]}


@dataclass
class HttpServer:
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(SERVER), "http", "web", str(self.port)], cwd=ROOT,
                stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not answers(self.port):
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the MCP HTTP server did not start"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="package")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    server = HttpServer(free_port(), tmp_path_factory.mktemp("mcp-http") / "server.log")
    server.start()
    yield server
    server.kill()


def servers_json(http: HttpServer, **more: dict[str, object]) -> str:
    return json.dumps({"files": stdio_server(), "web": {"url": http.url}, **more})


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CHORDAL_",
                                                                      "ANTHROPIC_"))}
