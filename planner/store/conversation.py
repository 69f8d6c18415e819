"""An agent step's conversation as the run store keeps it (the run's ``:agent`` hash,
written by the agent scripts: ``begin_turn``, ``record_turn``, ``begin_call``,
``finish_call``), read into typed records: :class:`Conversation`, the engine's view (with
each turn's content blocks and answer), and from it the report's
:class:`~planner.store.agent_records.AgentReport`.

The scripts keep what the model and the tools wrote (content blocks, args, outputs, errors,
usage, answers) as JSON text inside each record, so that Lua never decodes and rewrites it
(cjson turns empty lists into objects and rounds numbers): it is decoded here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from planner.store.agent_records import AgentCall, AgentReport, AgentTurn
from planner.store.failure import ErrorRecord
from planner.store.records import moment
from planner.vocabulary import CallStatus, TurnKind

__all__ = ["Conversation", "Turn", "prefix"]


def prefix(step_id: str, conv: int) -> str:
    """The fields of a conversation in ``:agent`` start with this."""
    return f"{step_id}|{conv}|"


class Turn(AgentTurn):
    """A turn as the engine reads it: the report's fields (``content`` included), and
    what only the engine needs."""

    #: The step attempt it was (last) begun under.
    attempt: int = 0
    #: A ``final`` turn's answer (the step's output); ``answered`` says there is one (the
    #: answer itself may be null).
    answer: Any = None
    answered: bool = False
    #: Its calls without a result yet (the fan-in counter).
    left: int = 0

    @property
    def done(self) -> bool:
        """Recorded (not being made)."""
        return self.kind != TurnKind.THINKING


class Conversation(BaseModel):
    """An agent step's conversation ``conversation`` (the step's ``base`` when it began):
    its turns in order, each with its calls. ``last``: the last turn recorded (-1: none);
    ``left``: that turn's calls without a result (0: the next turn may begin)."""

    step: str
    conversation: int = 0
    turns: list[Turn] = Field(default_factory=list)
    last: int = -1
    left: int = 0

    def turn(self, t: int) -> Turn | None:
        return self.turns[t] if 0 <= t < len(self.turns) else None

    @property
    def current(self) -> Turn | None:
        """The newest turn (recorded, or being made)."""
        return self.turns[-1] if self.turns else None

    @property
    def recorded(self) -> Turn | None:
        """The last turn recorded."""
        return self.turn(self.last)

    @classmethod
    def of(cls, step_id: str, conv: int, fields: Mapping[str, str]) -> Conversation:
        """The conversation from ``:agent`` fields (any others are ignored)."""
        head = prefix(step_id, conv)
        turns: dict[int, dict[str, Any]] = {}
        calls: dict[int, list[AgentCall]] = {}
        lefts: dict[int, int] = {}
        last = -1
        for name, value in fields.items():
            if not name.startswith(head) or value is None:
                continue
            parts = name[len(head):].split("|")
            if parts == ["last"]:
                last = int(value)
            elif len(parts) == 1:
                turns[int(parts[0])] = json.loads(value)
            elif parts[1] == "left":
                lefts[int(parts[0])] = int(value)
            else:
                calls.setdefault(int(parts[0]), []).append(_call(json.loads(value)))
        ordered = [_turn(turns[t], sorted(calls.get(t, []), key=lambda c: c.index),
                         lefts.get(t, 0))
                   for t in sorted(turns)]
        left = lefts.get(last, 0) if last >= 0 else 0
        return cls(step=step_id, conversation=conv, turns=ordered, last=last, left=left)

    def report(self, max_turns: int, ended: bool = False) -> AgentReport:
        """As a run report shows it; ``ended``: the step ended (final, or cancelled with its
        run), so a call still pending will never run: it shows ``cancelled``."""
        turns = []
        for t in self.turns:
            calls = [c.model_copy(update={"status": CallStatus.CANCELLED})
                     if ended and c.status == CallStatus.PENDING else c for c in t.calls]
            turns.append(AgentTurn(**{name: getattr(t, name) for name in AgentTurn.model_fields
                                      if name != "calls"}, calls=calls))
        return AgentReport(conversation=self.conversation, max_turns=max_turns, turns=turns)


def _raw(value: Any) -> Any:
    """A payload the scripts keep as JSON text."""
    return json.loads(value) if isinstance(value, str) else None


def _error(value: Any) -> ErrorRecord | None:
    return ErrorRecord.model_validate_json(value) if isinstance(value, str) and value else None


def _call(rec: dict[str, Any]) -> AgentCall:
    status = rec.get("status") or CallStatus.PENDING
    return AgentCall(
        index=int(rec["index"]), id=rec.get("id") or None, tool=str(rec.get("tool") or ""),
        args=_raw(rec.get("args")), status=status,
        output=_raw(rec.get("output")) if status == CallStatus.SUCCEEDED else None,
        error=_error(rec.get("error")), attempts=int(rec.get("attempts") or 0),
        started_at=moment(rec.get("started_at")), finished_at=moment(rec.get("finished_at")),
        worker=rec.get("worker") or None, task=rec.get("task") or None)


def _turn(rec: dict[str, Any], calls: list[AgentCall], left: int) -> Turn:
    answered = isinstance(rec.get("answer"), str)
    usage = _raw(rec.get("usage"))
    latency = rec.get("latency_ms")
    return Turn(
        turn=int(rec["turn"]), kind=rec.get("kind") or TurnKind.THINKING,
        text=rec.get("text") if isinstance(rec.get("text"), str) else None,
        stop_reason=rec.get("stop_reason") if isinstance(rec.get("stop_reason"), str)
        else None,
        usage=usage if isinstance(usage, dict) else None,
        latency_ms=float(latency) if isinstance(latency, int | float) else None,
        started_at=moment(rec.get("started_at")), finished_at=moment(rec.get("finished_at")),
        tries=int(rec.get("tries") or 0), worker=rec.get("worker") or None,
        task=rec.get("task") or None, problems=_raw(rec.get("problems")), calls=calls,
        content=_raw(rec.get("content")), attempt=int(rec.get("attempt") or 0),
        answer=_raw(rec.get("answer")) if answered else None, answered=answered, left=left)
