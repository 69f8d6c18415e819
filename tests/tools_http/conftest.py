"""A real HTTP server on 127.0.0.1 (a thread of the test process) for http_request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, kind: str = "application/json",
              **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _route(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = parts.path
        if path == "/echo":
            self._send(200, json.dumps({
                "method": self.command, "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": json.loads(body) if body else None}).encode())
        elif path == "/text":
            self._send(200, "héllo".encode(), "text/plain; charset=utf-8")
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            extra = {"Retry_After": query["retry_after"]} if "retry_after" in query else {}
            self._send(status, b'{"error": "nope"}', **extra)
        elif path == "/redirect":
            self._send(int(query.get("status", "302")), b"", Location=query["to"])
        elif path == "/loop":
            self._send(302, b"", Location="/loop")
        elif path == "/big":
            self._send(200, b"x" * int(query["n"]), "text/plain")
        elif path == "/slow":
            time.sleep(float(query["s"]))
            self._send(200, b"{}")
        else:
            self._send(404, b"{}")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _route


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
