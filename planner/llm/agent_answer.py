"""What an agent step's model response says: the tool calls it asks for (under the tools'
own names), or its answer, checked against the step's ``output_schema``. Pure.

The engine calls ``read_response(response, tool_names(spec), spec.output_schema)``
(``tool_names`` from :mod:`planner.llm.agent_messages`) and judges the :class:`Reading`.
Any tool_use block is a call, whatever ``stop_reason`` says. Without an ``output_schema``
the answer is the text of a response with no tool_use. With one, it is ``final_answer``'s
``input.answer`` (the first such block; the other blocks of that response are not run), or,
from a response with no tool_use, its text parsed as JSON (a Markdown fence around it is
stripped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from planner.llm.model import ModelResponse
from planner.tools.agent import ANSWER_TOOL, answer_problems

__all__ = ["Reading", "ToolCall", "parse_text_answer", "read_response"]

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?[ \t]*```", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One tool_use block: ``index`` is its place among the response's calls (the
    ``final_answer`` block is not one), ``tool`` the tool's own name (a name the step does
    not list stays as the model sent it, to be refused)."""

    index: int
    id: str
    tool: str
    args: Any


@dataclass(frozen=True)
class Reading:
    #: The tool calls asked for, in the order of their blocks.
    calls: tuple[ToolCall, ...]
    #: The response's text (all its text blocks).
    text: str
    #: True when the response gives the step's answer (then ``calls`` are not run).
    answered: bool = False
    answer: Any = None
    #: Why the answer does not fit ``output_schema`` (empty when it fits, or no schema).
    problems: tuple[str, ...] = ()
    #: The ``final_answer`` block's tool_use id, when the answer came through it.
    answer_id: str | None = None


def parse_text_answer(text: str) -> tuple[Any, list[str]]:
    """An answer given as text where JSON is expected: the JSON in it (inside a Markdown
    fence if there is one), or why it is not JSON."""
    fenced = _FENCE.search(text)
    body = (fenced.group(1) if fenced else text).strip()
    if not body:
        return None, [f"no answer was given: call {ANSWER_TOOL} with it"]
    try:
        return json.loads(body), []
    except json.JSONDecodeError as exc:
        return None, [f"the answer is not JSON ({exc.msg} at line {exc.lineno} column "
                      f"{exc.colno}): call {ANSWER_TOOL} with it"]


def read_response(response: ModelResponse, names: Mapping[str, str],
                  output_schema: Mapping[str, Any] | None) -> Reading:
    """The calls or the answer of one response. ``names`` maps the model's tool names to
    the tools' own (``agent_messages.tool_names``)."""
    text = response.text()
    calls: list[ToolCall] = []
    answer_block: Mapping[str, Any] | None = None
    for block in response.content:
        if block.get("type") != "tool_use":
            continue
        name = str(block.get("name", ""))
        if output_schema is not None and name == ANSWER_TOOL:
            answer_block = answer_block or block
            continue
        calls.append(ToolCall(len(calls), str(block.get("id", "")), names.get(name, name),
                              block.get("input")))
    if output_schema is None:
        if calls:
            return Reading(tuple(calls), text)
        return Reading((), text, answered=True, answer=text)
    schema = dict(output_schema)
    if answer_block is not None:
        given = answer_block.get("input")
        if not isinstance(given, dict) or "answer" not in given:
            problems = [f"{ANSWER_TOOL} was called without an 'answer'"]
            answer = None
        else:
            answer = given["answer"]
            problems = answer_problems(schema, answer)
        return Reading(tuple(calls), text, answered=True, answer=answer,
                       problems=tuple(problems), answer_id=str(answer_block.get("id", "")))
    if calls:
        return Reading(tuple(calls), text)
    answer, problems = parse_text_answer(text)
    if not problems:
        problems = answer_problems(schema, answer)
    return Reading((), text, answered=True, answer=answer, problems=tuple(problems))
