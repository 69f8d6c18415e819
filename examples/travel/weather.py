"""The demo's weather services: one small HTTP server with two forecast APIs, reached by
plans through the built-in ``http_request`` tool.

    GET /primary/v1/forecast?city=Lisbon&days=2   503 + Retry-After: 1, after 0.5 s (it is down)
    GET /backup/v1/forecast?city=Lisbon&days=2    200 {"city", "forecast", "high_c", ...}

Both take an optional ``from`` (when the stay begins, e.g. ``Fri 18:40``), echoed back.
Every request needs ``Authorization: Bearer $WEATHER_API_TOKEN`` (a listening service
takes credentials, even a demo's); plans never hold the token: workers put it in the
header from ``CHORDAL_HTTP_SECRETS``. ``./scripts/demo`` starts this with a fresh token
and stops it at the end; by hand::

    WEATHER_API_TOKEN=some-long-secret python examples/travel/weather.py [--port 8765]

It prints ``ready PORT`` on stdout once it listens (``--port 0``: a free port, said
there); problems go to stderr, one line each. ``--exit-with-parent``: stop when the
process that started it is gone, even if it was killed without a chance to say so.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_PORT = 8765
FORECASTS: dict[str, dict[str, Any]] = {
    "lisbon": {"city": "Lisbon", "forecast": "sunny, 22C", "high_c": 22, "low_c": 14,
               "rain_probability": 0.1},
    "porto": {"city": "Porto", "forecast": "cloudy, 17C", "high_c": 17, "low_c": 11,
              "rain_probability": 0.4},
    "barcelona": {"city": "Barcelona", "forecast": "sunny, 24C", "high_c": 24, "low_c": 16,
                  "rain_probability": 0.05},
}


class Handler(BaseHTTPRequestHandler):
    server_version = "demo-weather/1"
    sys_version = ""
    token = b""

    def do_GET(self) -> None:
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), b"Bearer " + self.token):
            self._send(401, {"error": "an Authorization: Bearer <WEATHER_API_TOKEN> header "
                                      "is needed"})
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/primary/v1/forecast":
            time.sleep(0.5)  # overloaded rather than gone: it keeps callers waiting
            self._send(503, {"error": "the primary forecast service is down for "
                                      "maintenance; try the backup"},
                       {"Retry-After": "1"})
        elif url.path == "/backup/v1/forecast":
            self._backup(query)
        else:
            self._send(404, {"error": f"no such path {url.path!r}; see "
                                      "/primary/v1/forecast and /backup/v1/forecast"})

    def _backup(self, query: dict[str, str]) -> None:
        city = query.get("city", "").strip().lower()
        if city not in FORECASTS:
            self._send(404 if city else 400,
                       {"error": f"city: no forecast for {query.get('city')!r}; known: "
                                 + ", ".join(f["city"] for f in FORECASTS.values())})
            return
        days = query.get("days", "1")
        if not days.isdigit() or not 1 <= int(days) <= 14:
            self._send(400, {"error": f"days: 1 to 14, not {days!r}"})
            return
        time.sleep(0.5)
        self._send(200, {**FORECASTS[city], "days": int(days), "from": query.get("from"),
                         "source": "backup"})

    def _send(self, status: int, body: dict[str, Any],
              headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines only (never headers: the token is in one), and only when asked.
        if os.environ.get("WEATHER_LOG"):
            sys.stderr.write(f"weather: {format % args}\n")


def exit_with_parent() -> None:
    """Stop once the starter is gone (re-parented): a killed demo leaves nothing behind."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The demo's weather services.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--exit-with-parent", action="store_true")
    opts = parser.parse_args(argv)
    token = os.environ.get("WEATHER_API_TOKEN", "")
    if len(token) < 16:
        print("weather: set WEATHER_API_TOKEN to a secret of 16+ characters (requests must "
              "carry it as a Bearer token)", file=sys.stderr)
        return 2
    Handler.token = token.encode()
    try:
        server = ThreadingHTTPServer((opts.host, opts.port), Handler)
    except OSError as exc:
        print(f"weather: cannot listen on {opts.host}:{opts.port}: {exc.strerror} (another "
              "program has the port? pick another with --port, or DEMO_WEATHER_PORT for "
              "./scripts/demo)", file=sys.stderr)
        return 2
    if opts.exit_with_parent:
        exit_with_parent()
    print(f"ready {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
