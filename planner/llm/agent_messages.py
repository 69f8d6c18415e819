"""The messages of an agent step's model call, rebuilt from its stored turns: the tool
definitions, the task, and per done turn the assistant's blocks then their tool results.

The engine (lane D1) calls, for turn ``t`` of a conversation::

    roles.agent_request(settings, spec, turns, tools, overrides, step) -> ModelRequest

- ``spec`` (:class:`AgentTaskLike`): ``task``, ``context``, ``tools`` (tool names as the
  plan lists them) and ``output_schema`` (or None): the engine's ``AgentSpec`` fits as is,
  or build an :class:`AgentTask`.
- ``turns`` (``Sequence[TurnLike]``): the conversation's done turns ``0..t-1``, oldest
  first (``thinking`` ones are skipped). Each has ``kind`` (a ``TurnKind``), ``content``
  (the assistant's blocks, as the model sent them), ``problems`` (why a ``repair`` turn's
  answer was refused) and ``calls``; each call ``id`` (its tool_use id), ``status`` (a
  ``CallStatus``), ``output`` and ``error`` (an ``ErrorRecord``-like object with ``type``
  and ``message``, or the text ``"<Type>: <message>"``). The store's ``AgentTurn`` and
  ``AgentCall`` fit as they are; :class:`Turn` and :class:`CallResult` are plain ones.
- ``tools``: the registry (name -> ``Tool``); ``step``: the agent step's id.

The Messages API wants every tool_use answered by a tool_result in the next user message,
results first: each tool_use block of a turn gets one, in the order of the blocks (the
calls' ``index`` order), whether it ran, was refused, was never run, or is a
``final_answer`` sent back for repair (design §7). Reading a response back is
:mod:`planner.llm.agent_answer`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from planner.errors import ConfigError
from planner.tools.agent import ANSWER_TOOL, api_name
from planner.tools.tool import Tool
from planner.vocabulary import CallStatus, TurnKind

__all__ = ["AgentTask", "AgentTaskLike", "CallLike", "CallResult", "ErrorLike", "Turn",
           "TurnLike", "agent_messages", "answer_tool", "cut", "repair_text",
           "tool_definitions", "tool_names"]

CACHE = {"type": "ephemeral"}
#: The tool_result of a block that was never run because the answer came with it.
NOT_RUN = "not run: final_answer ends the task"
_SETTLED = frozenset({CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.REFUSED})


class ErrorLike(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def message(self) -> str: ...


class CallLike(Protocol):
    @property
    def id(self) -> str | None: ...
    @property
    def status(self) -> str: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> ErrorLike | str | None: ...


class TurnLike(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def content(self) -> Sequence[Mapping[str, Any]] | None: ...
    @property
    def problems(self) -> Sequence[str] | None: ...
    @property
    def calls(self) -> Sequence[CallLike]: ...


class AgentTaskLike(Protocol):
    @property
    def task(self) -> str: ...
    @property
    def context(self) -> Any: ...
    @property
    def tools(self) -> Sequence[str]: ...
    @property
    def output_schema(self) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class AgentTask:
    task: str
    context: Any = None
    tools: Sequence[str] = ()
    output_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CallResult:
    """One tool call's outcome: ``output`` when it succeeded, else ``error``."""

    id: str | None
    status: str
    output: Any = None
    error: ErrorLike | str | None = None


@dataclass(frozen=True)
class Turn:
    kind: str
    content: Sequence[Mapping[str, Any]] | None
    calls: Sequence[CallLike] = ()
    problems: Sequence[str] | None = None


def tool_names(spec: AgentTaskLike) -> dict[str, str]:
    """Each name the model knows a tool by, to the tool's own name (``travel_hotels`` ->
    ``travel.hotels``); with an ``output_schema``, ``final_answer`` too."""
    names = {api_name(name): name for name in spec.tools}
    if spec.output_schema is not None:
        names[ANSWER_TOOL] = ANSWER_TOOL
    return names


def answer_tool(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": ANSWER_TOOL,
            "description": "Give the task's answer and end it. Call it once, alone, when you "
                           "have everything the answer needs.",
            "input_schema": {"type": "object", "properties": {"answer": dict(schema)},
                             "required": ["answer"]}}


def tool_definitions(spec: AgentTaskLike, tools: Mapping[str, Tool]) -> list[dict[str, Any]]:
    """The listed tools sorted by name (a stable prefix for the prompt cache), then
    ``final_answer`` when the answer has a schema; ``cache_control`` on the last."""
    missing = sorted(set(spec.tools) - set(tools))
    if missing:
        raise ConfigError(f"the agent's tool(s) {', '.join(missing)} are not registered on "
                          "this worker (CHORDAL_TOOL_MODULES)")
    defs = [{"name": api_name(name), "description": tools[name].description,
             "input_schema": tools[name].input_schema} for name in sorted(set(spec.tools))]
    if spec.output_schema is not None:
        defs.append(answer_tool(spec.output_schema))
    if defs:
        defs[-1] = {**defs[-1], "cache_control": CACHE}
    return defs


def cut(text: str, limit: int) -> str:
    """``text`` up to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [cut: {limit} of {len(text)} characters]"


def _json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def task_message(spec: AgentTaskLike) -> dict[str, Any]:
    parts = [f"Task: {spec.task}"]
    if spec.context is not None:
        parts.append(f"Context (JSON):\n{_json(spec.context, 1)}")
    if spec.output_schema is not None:
        parts.append(f"Answer by calling `{ANSWER_TOOL}` with `{{\"answer\": ...}}`, the "
                     f"answer fitting this JSON Schema:\n{_json(spec.output_schema, 1)}")
    else:
        parts.append("Answer in text, without calling a tool, when you are done.")
    return {"role": "user", "content": [{"type": "text", "text": "\n\n".join(parts)}]}


def repair_text(problems: Sequence[str]) -> str:
    listed = "\n".join(f"- {p}" for p in problems) or "- no answer was given"
    return (f"The answer does not fit the output schema:\n{listed}\nCall `{ANSWER_TOOL}` "
            "once more, alone, with an answer that fits it.")


def _error_text(call: CallLike) -> str:
    error = call.error
    if error is None:
        return f"not run: the call is {call.status}"
    return error if isinstance(error, str) else f"{error.type}: {error.message}"


def _result(use_id: str, call: CallLike | None, turn: TurnLike, chars: int) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": use_id}
    if call is not None and call.status == CallStatus.SUCCEEDED:
        return {**block, "content": cut(_json(call.output), chars)}
    if call is not None and call.status in _SETTLED:
        text = _error_text(call)
    elif turn.kind == TurnKind.REPAIR:
        text = NOT_RUN
    else:
        text = f"not run: the call is {call.status if call else 'not recorded'}"
    return {**block, "is_error": True, "content": cut(text, chars)}


def turn_messages(turn: TurnLike, chars: int) -> list[dict[str, Any]]:
    """A done turn as the assistant message it was and the user message that answers it:
    one tool_result per tool_use block, then (a repair without ``final_answer``) why."""
    content = [dict(b) for b in turn.content or []]
    if not content:  # the API refuses an empty assistant message
        content = [{"type": "text", "text": "(no answer)"}]
    by_id = {c.id: c for c in turn.calls if c.id}
    repair = turn.kind == TurnKind.REPAIR
    blocks: list[dict[str, Any]] = []
    answered = False
    for b in content:
        if b.get("type") != "tool_use":
            continue
        use_id = str(b.get("id", ""))
        if repair and b.get("name") == ANSWER_TOOL and not answered:
            answered = True
            blocks.append({"type": "tool_result", "tool_use_id": use_id, "is_error": True,
                           "content": repair_text(turn.problems or [])})
        else:
            blocks.append(_result(use_id, by_id.get(use_id), turn, chars))
    if repair and not answered:
        blocks.append({"type": "text", "text": repair_text(turn.problems or [])})
    if not blocks:
        blocks.append({"type": "text", "text": "Go on: call a tool, or give your answer."})
    return [{"role": "assistant", "content": content}, {"role": "user", "content": blocks}]


def agent_messages(spec: AgentTaskLike, turns: Sequence[TurnLike], chars: int
                   ) -> list[dict[str, Any]]:
    """The whole conversation for the next turn. The newest user message's last block
    carries ``cache_control``: the next turn reads everything before it from the cache."""
    messages = [task_message(spec)]
    for turn in turns:
        if turn.kind != TurnKind.THINKING:
            messages.extend(turn_messages(turn, chars))
    last = messages[-1]["content"]
    last[-1] = {**last[-1], "cache_control": CACHE}
    return messages
