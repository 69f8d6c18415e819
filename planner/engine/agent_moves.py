"""An agent step's decisions, without I/O: what its conversation calls for next
(:func:`next_move`), what one model response comes to (:func:`judge`), and the messages
that carry a move out (:func:`messages`).

Pure on purpose: a redelivered message, a re-driven step and ``outcomes.go_on`` all
re-derive the next move from what the run store recorded, so this module must never
import :mod:`planner.engine.outcomes` (which imports it) nor touch Redis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import Message, call_message, turn_message
from planner.language.validation import Limits, validate_call
from planner.llm.agent_answer import ToolCall, read_response
from planner.llm.agent_messages import tool_names
from planner.llm.model import ModelResponse
from planner.store.failure import ErrorRecord
from planner.tools.agent import DEFAULT_MAX_TURNS, api_name
from planner.tools.tool import Tool
from planner.vocabulary import CallStatus, TurnKind

__all__ = ["AgentSpec", "Call", "Fail", "Finish", "Move", "Publish", "Think", "Verdict",
           "call_message", "invalid_error", "judge", "max_turns_error", "messages",
           "next_move", "repaired", "turn_message"]

#: Characters of the last turn's text, and of each call's arguments, in a MaxTurns error.
LAST_TEXT_CHARS = 500
CALL_ARGS_CHARS = 120

_SETTLED = (CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.REFUSED)


@dataclass(frozen=True)
class AgentSpec:
    """An agent step's resolved arguments (the ``agent`` tool's, validated with the plan)."""

    task: str
    tools: tuple[str, ...]
    context: Any = None
    max_turns: int = DEFAULT_MAX_TURNS
    output_schema: dict[str, Any] | None = None

    @classmethod
    def of(cls, args: Mapping[str, Any]) -> AgentSpec:
        schema = args.get("output_schema")
        return cls(str(args.get("task", "")), tuple(args.get("tools") or ()),
                   args.get("context"), int(args.get("max_turns") or DEFAULT_MAX_TURNS),
                   schema if isinstance(schema, dict) else None)

    def names(self) -> dict[str, str]:
        """The model-facing name of each listed tool, back to the tool's own name."""
        return {api_name(t): t for t in self.tools}


# -- what the engine reads of a conversation (planner/store/agents.py's Conversation) ----

class CallView(Protocol):
    @property
    def index(self) -> int: ...
    @property
    def tool(self) -> str: ...
    @property
    def status(self) -> Any: ...


class TurnView(Protocol):
    @property
    def turn(self) -> int: ...
    @property
    def kind(self) -> Any: ...
    @property
    def calls(self) -> Sequence[Any]: ...


class ConversationView(Protocol):
    @property
    def conversation(self) -> int: ...
    @property
    def turns(self) -> Sequence[Any]: ...


# -- moves --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Think:
    """Run model turn ``turn`` (a new one, or one a dead worker left thinking)."""

    conv: int
    turn: int


@dataclass(frozen=True)
class Publish:
    """Send the calls of ``turn`` that have no result yet: (index, tool) each."""

    conv: int
    turn: int
    calls: tuple[tuple[int, str], ...]


@dataclass(frozen=True)
class Finish:
    """The conversation answered: ``answer`` is the step's output."""

    answer: Any


@dataclass(frozen=True)
class Fail:
    """The conversation ended without an answer: the step fails for good."""

    error: ErrorRecord


Move = Think | Publish | Finish | Fail


def next_move(conv: ConversationView, spec: AgentSpec, step_id: str = "") -> Move:
    """What the recorded conversation calls for now. ``step_id`` names the step in a
    failure's message."""
    turns = sorted(conv.turns, key=lambda t: t.turn)
    if not turns:
        return Think(conv.conversation, 0)
    last = turns[-1]
    kind = str(last.kind)
    if kind == TurnKind.THINKING:
        return Think(conv.conversation, last.turn)
    if kind == TurnKind.FINAL:
        return Finish(getattr(last, "answer", None))
    if kind == TurnKind.MAX_TURNS:
        return Fail(max_turns_error(step_id, spec, last))
    if kind == TurnKind.INVALID:
        return Fail(invalid_error(step_id, list(getattr(last, "problems", None) or [])))
    waiting = tuple((c.index, c.tool) for c in sorted(last.calls, key=lambda c: c.index)
                    if str(c.status) not in _SETTLED)
    if waiting:
        return Publish(conv.conversation, last.turn, waiting)
    return Think(conv.conversation, last.turn + 1)


def repaired(conv: ConversationView) -> bool:
    """Whether the conversation used its one repair turn already."""
    return any(str(t.kind) == TurnKind.REPAIR for t in conv.turns)


# -- judging one response -----------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    """One tool call the model asked for, as ``record_turn`` keeps it: ``error`` set when
    it is refused before it runs."""

    index: int
    id: str
    tool: str
    args: Any
    error: ErrorRecord | None = None


@dataclass(frozen=True)
class Verdict:
    kind: TurnKind
    calls: tuple[Call, ...] = ()
    answer: Any = None
    problems: tuple[str, ...] = field(default=())
    #: The response's text (a MaxTurns error quotes it).
    text: str = ""

    @property
    def pending(self) -> tuple[Call, ...]:
        return tuple(c for c in self.calls if c.error is None)


def _refused(why: str) -> ErrorRecord:
    return ErrorRecord(type="CallRefused", message=why, transient=False)


def judge(response: ModelResponse, spec: AgentSpec, turn: int, repaired: bool,
          tools: Mapping[str, Tool], limits: Limits) -> Verdict:
    """What one model response of turn ``turn`` comes to. ``repaired``: the one repair
    turn was used already (a second miss is ``invalid``)."""
    verdict = _judge(response, spec, turn, repaired, tools, limits)
    return replace(verdict, text=response.text())


def _judge(response: ModelResponse, spec: AgentSpec, turn: int, repaired: bool,
           tools: Mapping[str, Tool], limits: Limits) -> Verdict:
    reading = read_response(response, tool_names(spec), spec.output_schema)
    if reading.answered:
        # The other calls of an answering response are never run (the model is told so).
        if not reading.problems:
            return Verdict(TurnKind.FINAL, answer=reading.answer)
        return Verdict(TurnKind.INVALID if repaired else TurnKind.REPAIR,
                       problems=reading.problems)
    calls = tuple(_checked(c, spec, tools, limits) for c in reading.calls)
    if turn + 1 >= spec.max_turns:
        # Its last turn asked for more tools: those calls are not run.
        unrun = _refused(f"not run: the step used its {spec.max_turns} turns")
        return Verdict(TurnKind.MAX_TURNS, tuple(replace(c, error=c.error or unrun)
                                                 for c in calls))
    if all(c.error is not None for c in calls):
        return Verdict(TurnKind.REFUSED, calls)
    return Verdict(TurnKind.TOOLS, calls)


def _checked(call: ToolCall, spec: AgentSpec, tools: Mapping[str, Tool],
             limits: Limits) -> Call:
    problems = validate_call(call.tool, call.args, spec.tools, tools, limits)
    error = None
    if problems:
        error = _refused("; ".join(f"{p.field}: {p.message}" if p.field else p.message
                                   for p in problems))
    return Call(call.index, call.id, call.tool, call.args, error)


# -- failures -----------------------------------------------------------------------------

def max_turns_error(step_id: str, spec: AgentSpec, last: Any) -> ErrorRecord:
    text = str(getattr(last, "text", None) or "")[:LAST_TEXT_CHARS]
    called = ", ".join(
        f"{c.tool}({json.dumps(getattr(c, 'args', None), default=str)[:CALL_ARGS_CHARS]})"
        for c in getattr(last, "calls", ()))
    said = f"last turn: {text}" if text else "last turn: (no text)"
    return ErrorRecord.model_validate({
        "type": "MaxTurns", "transient": False,
        "message": f"agent step {step_id!r} used its {spec.max_turns} turns without a final "
                   f"answer; {said}" + (f" · called {called}" if called else ""),
        "last_turn": {"turn": getattr(last, "turn", None), "text": text,
                      "calls": [{"tool": c.tool, "args": getattr(c, "args", None)}
                                for c in getattr(last, "calls", ())]}})


def invalid_error(step_id: str, problems: Sequence[str]) -> ErrorRecord:
    return ErrorRecord(type="OutputInvalid", transient=False,
                       message=f"agent step {step_id!r}: its answer does not fit "
                               f"output_schema after a repair: {'; '.join(problems)}")


# -- messages -----------------------------------------------------------------------------

def messages(compiled: CompiledPlan, run_id: str, version: int, step_id: str, move: Move,
             redrive: bool = True) -> list[Message]:
    """The messages that carry ``move`` out: a turn, or the calls without a result. A
    :class:`Finish` or :class:`Fail` is acted on by the engine, not published. Sent
    again (a redelivery, a resume): ``redrive`` gives each a new id, since a worker
    discards a message whose id was revoked."""
    if isinstance(move, Think):
        return [turn_message(compiled, run_id, version, step_id, move.conv, move.turn,
                             redrive)]
    if isinstance(move, Publish):
        return [call_message(compiled, run_id, version, step_id, move.conv, move.turn, i,
                             tool, redrive) for i, tool in move.calls]
    return []
