"""Executor conversations for the fake Messages API server (tests/fake_anthropic.py): the
model's side of an agent step, scripted turn by turn.

An agent step's requests are told apart by a marker written in its task (``[[multi]]``):
every request of that conversation carries it in its first user message. The turn is the
number of answers the model already gave in it (its assistant messages), so a repair turn
is a turn like any other. An answer is a response (``tools(...)``, ``final(...)``, the
server's ``text(...)``) or a function of the request's body, for an answer that depends on
what the tools returned (``results(body)``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tests.fake_anthropic import FakeAnthropic, Responder, text

Body = dict[str, Any]
Answer = dict[str, Any] | Callable[[Body], dict[str, Any]]

__all__ = ["agent", "conversation", "final", "requests_for", "results", "text", "tools",
           "turn_of"]


def agent(sid: str, marker: str, tools_: Sequence[str], deps: Sequence[str] = (),
          **args: Any) -> dict[str, Any]:
    """A plan's agent step whose task carries ``marker`` (what :func:`conversation` keys
    its script by)."""
    return {"id": sid, "tool": "agent", "depends_on": list(deps),
            "args": {"task": f"{marker} {args.pop('task', 'do the task')}",
                     "tools": list(tools_), **args}}


def tools(*calls: tuple[str, dict[str, Any]], say: str | None = None) -> dict[str, Any]:
    """A turn that asks for these tool calls (one tool_use block each, in parallel)."""
    content: list[dict[str, Any]] = [{"type": "text", "text": say}] if say else []
    for name, data in calls:
        content.append({"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}",
                        "name": name, "input": data})
    return {"content": content, "stop_reason": "tool_use"}


def final(answer: Any) -> dict[str, Any]:
    """The answer of an agent with an output_schema, through the final_answer tool."""
    return tools(("final_answer", {"answer": answer}))


def turn_of(body: Body) -> int:
    return sum(1 for m in body["messages"] if m["role"] == "assistant")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content or [] if isinstance(b, dict))


def results(body: Body) -> list[dict[str, Any]]:
    """The tool results the request's last user message brings, in order: each with
    ``tool_use_id``, ``is_error``, ``text`` (its content) and ``value`` (that text read as
    JSON, or None)."""
    last = body["messages"][-1]
    found = []
    for block in last["content"] if isinstance(last["content"], list) else []:
        if block.get("type") != "tool_result":
            continue
        raw = _content_text(block.get("content"))
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        found.append({"tool_use_id": block["tool_use_id"],
                      "is_error": bool(block.get("is_error")), "text": raw, "value": value})
    return found


def _marker_of(body: Body, scripts: Mapping[str, Any]) -> str | None:
    first = json.dumps(body["messages"][0]["content"]) if body.get("messages") else ""
    return next((m for m in scripts if m in first), None)


def conversation(scripts: Mapping[str, Sequence[Answer]],
                 others: Responder | None = None) -> Responder:
    """A responder: an executor request whose first message has a marker of ``scripts``
    gets that script's answer for its turn (past the last, the last again: a model that
    never stops); any other request goes to ``others`` (default: ``"<role> answer"``)."""

    def respond(role: str, body: Body) -> dict[str, Any]:
        marker = _marker_of(body, scripts) if role == "executor" else None
        if marker is None:
            return others(role, body) if others else text(f"{role} answer")
        script = scripts[marker]
        answer = script[min(turn_of(body), len(script) - 1)]
        return answer(body) if callable(answer) else answer

    return respond


def requests_for(fake: FakeAnthropic, marker: str) -> list[Body]:
    """The bodies of the executor requests of one scripted conversation, in arrival order."""
    return [r.body for r in fake.of_role("executor")
            if marker in json.dumps(r.body["messages"][0]["content"])]
