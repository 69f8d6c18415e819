"""A local HTTP server that speaks the Messages API, for the real anthropic SDK to call.

No test reaches the internet: point the SDK at ``server.url`` (``base_url`` or
``ANTHROPIC_BASE_URL``). Answers come from a responder function (by role, detected from
the request), and faults can be injected for a role: an HTTP status with headers, a delay,
or a malformed body.

Tool use works as with the real service: requests may carry ``tools``, ``tool_choice`` and
``tool_result`` blocks, and a responder may answer ``tool_uses(...)`` (several blocks: a
parallel call). Like the real service, the server refuses (400) a tool definition whose
name or ``input_schema`` the API would refuse; with ``check_tool_results=True`` it also
refuses a conversation where a tool_use is not answered by a tool_result at the start of
the next user message (:func:`tool_result_problems`). ``usage_from_body=True`` counts
``input_tokens`` from what was sent (about 4 characters a token), for benchmarks.
"""

from __future__ import annotations

import json
import re
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


def tool_uses(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """Several tool_use blocks in one answer: the model calling tools in parallel."""
    return {"content": [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                         "name": name, "input": data} for name, data in calls],
            "stop_reason": "tool_use"}


def turn_of(body: dict[str, Any]) -> int:
    """How many times the model has answered in this conversation (an agent's turn)."""
    return sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of the request's last user message."""
    content = body["messages"][-1].get("content")
    return [b for b in content if b.get("type") == "tool_result"] if isinstance(
        content, list) else []


_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def tool_problems(body: dict[str, Any]) -> list[str]:
    """What the Messages API would refuse in the request's tool definitions."""
    problems: list[str] = []
    names: set[str] = set()
    for i, t in enumerate(body.get("tools") or []):
        if "type" in t and t["type"] != "custom":
            continue  # a server tool (web search...): not ours to check
        name = t.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            problems.append(f"tools.{i}.name: String should match pattern "
                            "'^[a-zA-Z0-9_-]{1,64}$'")
        elif name in names:
            problems.append(f"tools: Tool names must be unique ({name})")
        names.add(str(name))
        schema = t.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            problems.append(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
    choice = body.get("tool_choice")
    if choice is not None and choice.get("type") not in ("auto", "any", "tool", "none"):
        problems.append(f"tool_choice.type: unknown type {choice.get('type')!r}")
    return problems


def _blocks(message: dict[str, Any] | None) -> list[dict[str, Any]]:
    content = (message or {}).get("content")
    return content if isinstance(content, list) else []


def tool_result_problems(messages: list[dict[str, Any]]) -> list[str]:
    """How a conversation breaks the Messages API's tool rule: the message after an
    assistant's tool_use blocks is a user message that starts with one tool_result for
    each of their ids (and a tool_result answers a tool_use of the message before it)."""
    problems: list[str] = []
    seen: set[str] = set()
    for n, m in enumerate(messages):
        content = _blocks(m)
        if m.get("role") == "assistant":
            ids = [b.get("id") for b in content if b.get("type") == "tool_use"]
            for i in ids:
                if i in seen:
                    problems.append(f"messages.{n}: tool_use id {i} is used twice")
                seen.add(str(i))
            if not ids:
                continue
            after = messages[n + 1] if n + 1 < len(messages) else None
            blocks = _blocks(after)
            if after is None or after.get("role") != "user":
                problems.append(f"messages.{n}: tool_use ids {ids} without a user message "
                                "of tool_results after them")
                continue
            lead = []
            for b in blocks:
                if b.get("type") != "tool_result":
                    break
                lead.append(b.get("tool_use_id"))
            answered = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
            if sorted(map(str, lead)) != sorted(map(str, ids)):
                problems.append(f"messages.{n + 1}: tool_use ids {ids} need one tool_result "
                                f"each, first in the message; it starts with {lead}")
            elif len(answered) != len(lead):
                problems.append(f"messages.{n + 1}: tool_results after other blocks")
        elif m.get("role") == "user" and n > 0:
            asked = {b.get("id") for b in _blocks(messages[n - 1])
                     if b.get("type") == "tool_use"}
            for b in content:
                if b.get("type") == "tool_result" and b.get("tool_use_id") not in asked:
                    problems.append(f"messages.{n}: tool_result for {b.get('tool_use_id')}, "
                                    "which the message before did not ask for")
    return problems


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
                 usage: dict[str, int] | None = None, usage_from_body: bool = False,
                 check_tool_results: bool = False) -> None:
        self.responder = responder
        self.latency_s = latency_s
        self.usage = usage or {"input_tokens": 100, "output_tokens": 50}
        self.usage_from_body = usage_from_body
        self.check_tool_results = check_tool_results
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
        invalid = tool_problems(body)
        if self.check_tool_results:
            invalid += tool_result_problems(body.get("messages") or [])
        if invalid:
            return self._send(h, seen, 400, {"type": "error", "error": {
                "type": "invalid_request_error", "message": "; ".join(invalid)}})
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
        if self.usage_from_body:
            sent = [body.get("system"), body.get("tools"), body.get("messages")]
            usage["input_tokens"] = len(json.dumps(sent)) // 4
        content = [{**b, "id": f"toolu_{uuid.uuid4().hex[:12]}"}
                   if b.get("type") == "tool_use" and not b.get("id") else b
                   for b in answer["content"]]
        stop = answer.get("stop_reason") or ("tool_use" if any(
            b.get("type") == "tool_use" for b in content) else "end_turn")
        message = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message",
                   "role": "assistant", "model": body.get("model", "claude"),
                   "content": content, "stop_reason": stop,
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
