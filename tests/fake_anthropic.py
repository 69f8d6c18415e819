"""A local HTTP server that speaks the Messages API, for the real anthropic SDK to call.

No test reaches the internet: point the SDK at ``server.url`` (``base_url`` or
``ANTHROPIC_BASE_URL``). Answers come from a responder function (by role, detected from
the request), and faults can be injected for a role: an HTTP status with headers, a delay,
or a malformed body.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "test-key"
Responder = Callable[[str, dict[str, Any]], dict[str, Any]]


def role_of(body: dict[str, Any]) -> str:
    system = json.dumps(body.get("system", ""))
    if "You are the replanner" in system:
        return "replanner"  # a replan, or a checkpoint's review
    if (body.get("tool_choice") or {}).get("name") == "submit_plan":
        return "planner"
    if "You are the synthesizer" in system:
        return "synthesizer"
    return "executor"


def last_user_text(body: dict[str, Any]) -> str:
    return json.dumps(body["messages"][-1]["content"])


def tool_use(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                         "name": name, "input": data}], "stop_reason": "tool_use"}


def text(value: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": value}], "stop_reason": "end_turn"}


@dataclass
class Fault:
    role: str | None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None          # dict -> JSON; str -> raw text (malformed on purpose)
    delay_s: float = 0.0


@dataclass
class Seen:
    at: float
    role: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 0


class FakeAnthropic:
    def __init__(self, responder: Responder, latency_s: float = 0.0,
                 usage: dict[str, int] | None = None) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.usage = usage or {"input_tokens": 100, "output_tokens": 50}
        self.requests: list[Seen] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._systems_seen: set[str] = set()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve(self, responder: Responder) -> FakeAnthropic:
        """Answer with ``responder`` from now on, forgetting earlier requests and faults
        (a fresh server for each test, without restarting it)."""
        with self._lock:
            self.responder = responder
            self.faults.clear()
            self.requests.clear()
        return self

    def inject(self, role: str | None = None, **kw: Any) -> None:
        """Serve this fault to the next request of ``role`` (any role if None)."""
        with self._lock:
            self.faults.append(Fault(role, **kw))

    def of_role(self, role: str) -> list[Seen]:
        return [r for r in self.requests if r.role == role]

    def _take_fault(self, role: str) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self.faults):
                if f.role in (None, role):
                    return self.faults.pop(i)
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length", 0))
        body = json.loads(h.rfile.read(length) or b"{}")
        role = role_of(body) if h.path.endswith("/v1/messages") else "?"
        seen = Seen(time.monotonic(), role, body, dict(h.headers))
        with self._lock:
            self.requests.append(seen)
        # The SDK sends the key as x-api-key or as a bearer token, by version.
        if API_KEY not in (h.headers.get("x-api-key"),
                           (h.headers.get("authorization") or "").removeprefix("Bearer ")):
            return self._send(h, seen, 401, {"type": "error", "error": {
                "type": "authentication_error", "message": "invalid x-api-key"}})
        fault = self._take_fault(role)
        if fault is not None:
            time.sleep(fault.delay_s)
            if fault.status != 200 or fault.body is not None:
                return self._send(h, seen, fault.status, fault.body, fault.headers)
        time.sleep(self.latency_s)
        answer = self.responder(role, body)
        system = json.dumps(body.get("system"))
        with self._lock:
            cached = system in self._systems_seen
            self._systems_seen.add(system)
        usage = dict(self.usage)
        usage["cache_read_input_tokens" if cached else "cache_creation_input_tokens"] = 400
        message = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message",
                   "role": "assistant", "model": body.get("model", "claude"),
                   "content": answer["content"], "stop_reason": answer["stop_reason"],
                   "stop_sequence": None, "usage": usage}
        self._send(h, seen, 200, message)

    def _send(self, h: BaseHTTPRequestHandler, seen: Seen, status: int, body: Any,
              headers: dict[str, str] | None = None) -> None:
        seen.status = status
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            h.send_response(status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(raw)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)


def overloaded() -> dict[str, Any]:
    return {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def rate_limited() -> dict[str, Any]:
    return {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
