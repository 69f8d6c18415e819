"""An agent step's transitions in the run store: a model turn begins and is recorded with
the tool calls it asked for; each call begins and ends. Each is one Lua script
(``begin_turn``, ``record_turn``, ``begin_call``, ``finish_call`` in
``planner/store/lua``), atomic with its ``agent.turn`` / ``agent.tool_call`` event.

A turn is keyed by (run, step, conversation, turn), a call by (run, step, conversation,
turn, index); the conversation is the step's ``base`` when it began (``chordal retry``
starts a new one). Fan-in is Lua counting, as steps count their dependencies down:
``record_turn`` sets the turn's count of calls without a result, ``finish_call`` counts it
down, and the result that reaches 0 is ``last``: its caller publishes the next turn.
Begin scripts refuse work that has a result; outcomes are fenced by attempt (a turn by its
task, a call by its attempt number), so a late or duplicate reporter changes nothing.

:class:`AgentTransitions` is one of :class:`~planner.store.runs.RunStore`'s parts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from planner.store.base import StoreBase
from planner.store.conversation import Conversation, prefix
from planner.store.failure import ErrorRecord
from planner.store.keys import RunKeys
from planner.store.steps import DEFAULT_LEASE_S
from planner.tools.agent import MAX_TURNS
from planner.vocabulary import TurnKind

__all__ = ["TURN_TRIES", "AgentTransitions", "CallBegin", "CallFinish", "NewCall",
           "TurnBegin", "TurnRecord"]

#: Begins of one turn after which ``begin_turn`` says ``exhausted`` (``MAX_TRIES`` in
#: begin_turn.lua): a first try and 5 model retries of its task
#: (``planner.engine.outcomes.MODEL_TASK_RETRIES``), then 3 workers lost making it.
TURN_TRIES = 10

@dataclass(frozen=True)
class NewCall:
    """A tool call a turn asked for, as ``record_turn`` records it: ``index`` is its place
    among the turn's tool_use blocks, ``id`` the model's tool_use id, ``queue`` where its
    message goes (the reconciler's ``calls_due``). ``refused``: refused before it ran (no
    such tool here, bad arguments): that error is its result, and it is not counted."""

    index: int
    tool: str
    args: Any = None
    id: str | None = None
    queue: str = ""
    refused: ErrorRecord | None = None

    @classmethod
    def of(cls, row: NewCall | Mapping[str, Any]) -> NewCall:
        """From a record: ``index``, ``tool``, ``args``, ``id``, ``queue``, and ``error``
        (an :class:`ErrorRecord` or its dict) when it is refused."""
        if isinstance(row, NewCall):
            return row
        error = row.get("error")
        return cls(index=int(row["index"]), tool=str(row["tool"]), args=row.get("args"),
                   id=row.get("id"), queue=str(row.get("queue") or ""),
                   refused=None if error is None else ErrorRecord.model_validate(error))


@dataclass(frozen=True)
class TurnBegin:
    """What ``begin_turn`` decided. ``run``: make the model call (``attempt``: the step
    attempt it runs under; ``version``: the run's plan version; ``tries``: times this turn
    was begun, this one included). ``inactive`` (``why``): the run is not running or is
    ending, the step is not running, or this is not its conversation or attempt: stop.
    ``early``: the turn before has no record, or calls without a result. ``done``: turn
    recorded already (``kind``). ``busy``: being made under a live holder (``secs`` left
    on its lease). ``exhausted``: begun :data:`TURN_TRIES` times already (``tries``):
    model retries of its task and workers lost."""

    state: Literal["run", "inactive", "early", "done", "busy", "exhausted"]
    why: str = ""
    kind: str = ""
    secs: float = 0.0
    attempt: int = 0
    version: int = 0
    tries: int = 0

    @property
    def detail(self) -> str:
        """The reply's detail as words (why, the kind, the seconds, the tries)."""
        return {"inactive": self.why, "done": self.kind, "busy": f"{self.secs:.3f}",
                "exhausted": str(self.tries)}.get(self.state, "")


@dataclass(frozen=True)
class TurnRecord:
    """What ``record_turn`` decided. ``ok``: recorded; ``left`` calls are pending (publish
    them; 0 and a non-final kind: publish the next turn) if ``active``; not ``active``: the
    run or step stopped while the model answered, nothing follows. ``duplicate``: recorded
    already (``kind``). ``superseded``: this task no longer makes the turn (it was taken
    over): nothing changed."""

    state: Literal["ok", "duplicate", "superseded"]
    left: int = 0
    active: bool = False
    kind: str = ""


@dataclass(frozen=True)
class CallBegin:
    """What ``begin_call`` decided. ``run``: invoke ``tool`` with ``args`` as attempt
    ``attempt``. ``inactive`` (``why``): the run or step stopped, a stale conversation,
    no such call. ``done``: the call has a result (``status``); ``left``: the turn's calls
    without one; ``next_begun``: whether the next turn began (if ``left`` is 0 and it did
    not, publish it: the last call's worker died before it did). ``busy``: running under a
    live call lease (``secs`` left). ``exhausted``: ``attempts`` made, none left."""

    state: Literal["run", "inactive", "done", "busy", "exhausted"]
    why: str = ""
    status: str = ""
    left: int = 0
    next_begun: bool = False
    secs: float = 0.0
    attempts: int = 0
    attempt: int = 0
    tool: str = ""
    args: Any = field(default=None, compare=False)

    @property
    def detail(self) -> str:
        """The reply's detail as words (why, the status, the seconds, the attempts)."""
        return {"inactive": self.why, "done": self.status, "busy": f"{self.secs:.3f}",
                "exhausted": str(self.attempts)}.get(self.state, "")


@dataclass(frozen=True)
class CallFinish:
    """What ``finish_call`` decided. ``ok``: recorded, ``left`` calls of the turn have no
    result yet. ``last``: recorded, the turn's last: publish the next turn (``version``:
    the run's plan version). ``recorded``: the last, but the run or step stopped: nothing
    follows. ``retry``: pending again, due after the delay. ``duplicate``: it had a result.
    ``superseded``: not the running attempt (noted on the call's record). ``took``:
    seconds the attempt ran (None if none was running), for the metrics."""

    state: Literal["ok", "last", "recorded", "retry", "duplicate", "superseded"]
    left: int = 0
    version: int = 0
    took: float | None = None


def _secs(text: str | None) -> float | None:
    return float(text) if text else None


class AgentTransitions(StoreBase):
    """An agent step's turns and tool calls, and its conversation as the engine reads it."""

    def _agent(self, name: str, run_id: str, *args: Any) -> list[str]:
        k = RunKeys(run_id)
        return cast(list[str], self._run(name, [k.run, k.steps, k.events, k.agent, k.leases],
                                         *args))

    def begin_turn(self, run_id: str, step_id: str, conv: int, turn: int, worker: str,
                   lease_s: float = DEFAULT_LEASE_S, task_id: str | None = None,
                   attempt: int | None = None) -> TurnBegin:
        """``begin_turn(run_id, step_id, conv, turn, worker, lease_s=30.0, task_id=None,
        attempt=None) -> TurnBegin``. Mark turn ``turn`` of conversation ``conv`` as being
        made by ``task_id`` on ``worker`` and hold the step lease for ``lease_s``, or say
        why not. ``attempt``: the step attempt of the caller (turn 0, under the step's
        task); None for a turn task (it runs under the step's current attempt)."""
        reply = self._agent("begin_turn", run_id, step_id, str(conv), str(turn), worker,
                            str(lease_s), task_id or "", "" if attempt is None else str(attempt))
        state = reply[0]
        if state == "run":
            return TurnBegin("run", attempt=int(reply[1]), version=int(reply[2]),
                             tries=int(reply[3]))
        if state == "inactive":
            return TurnBegin("inactive", why=reply[1])
        if state == "done":
            return TurnBegin("done", kind=reply[1])
        if state == "busy":
            return TurnBegin("busy", secs=float(reply[1]))
        if state == "exhausted":
            return TurnBegin("exhausted", tries=int(reply[1]))
        return TurnBegin("early")

    def record_turn(self, run_id: str, step_id: str, conv: int, turn: int,
                    task_id: str | None, *, kind: TurnKind | str,
                    content: Sequence[Mapping[str, Any]] | None = (),
                    text: str | None = None, stop_reason: str | None = None,
                    usage: Mapping[str, Any] | None = None, latency_ms: float | None = None,
                    answer: Any = None, problems: Sequence[str] | None = None,
                    calls: Sequence[NewCall | Mapping[str, Any]] = (),
                    handoff_s: float = DEFAULT_LEASE_S) -> TurnRecord:
        """``record_turn(run_id, step_id, conv, turn, task_id, *, kind, content=(),
        text=None, stop_reason=None, usage=None, latency_ms=None, answer=None,
        problems=None, calls=(), handoff_s=30.0) -> TurnRecord``. Record the turn
        ``task_id`` made (``kind``: what it came to; ``content``: the assistant's blocks,
        verbatim; ``answer``: kept for a ``final`` turn) with its ``calls``
        (:class:`NewCall`, or their records: :meth:`NewCall.of`), each pending (due now on
        its ``queue``) or refused; and, if the run and step still go on, hold the step
        lease for ``handoff_s`` (the hop to the calls or the next turn)."""
        fields: dict[str, Any] = {"kind": str(kind), "content": json.dumps(list(content or []))}
        if text is not None:
            fields["text"] = text
        if stop_reason is not None:
            fields["stop_reason"] = stop_reason
        if latency_ms is not None:
            fields["latency_ms"] = latency_ms
        if usage is not None:
            fields["usage"] = json.dumps(dict(usage))
        if problems:
            fields["problems"] = json.dumps(list(problems))
        if kind == TurnKind.FINAL:
            fields["answer"] = json.dumps(answer)
        rows = []
        for c in map(NewCall.of, calls):
            row: dict[str, Any] = {"index": c.index, "tool": c.tool, "queue": c.queue,
                                   "args": json.dumps(c.args)}
            if c.id is not None:
                row["id"] = c.id
            if c.refused is not None:
                row["error"] = c.refused.to_json()
            rows.append(row)
        reply = self._agent("record_turn", run_id, step_id, str(conv), str(turn),
                            task_id or "", json.dumps(fields), json.dumps(rows),
                            str(handoff_s))
        if reply[0] == "ok":
            return TurnRecord("ok", left=int(reply[1]), active=reply[2] == "1")
        if reply[0] == "duplicate":
            return TurnRecord("duplicate", kind=reply[1])
        return TurnRecord("superseded")

    def begin_call(self, run_id: str, step_id: str, conv: int, turn: int, index: int,
                   worker: str, max_attempts: int, lease_s: float = DEFAULT_LEASE_S,
                   task_id: str | None = None) -> CallBegin:
        """``begin_call(run_id, step_id, conv, turn, index, worker, max_attempts,
        lease_s=30.0, task_id=None) -> CallBegin``. Count an attempt of call ``index`` of
        turn ``turn`` and mark it running on ``worker`` under its call lease
        (:func:`~planner.store.keys.call_lease`) for ``lease_s``, or say why not.
        ``max_attempts``: the tool's ``max_retries`` + 1."""
        reply = self._agent("begin_call", run_id, step_id, str(conv), str(turn), str(index),
                            worker, str(max_attempts), str(lease_s), task_id or "")
        state = reply[0]
        if state == "run":
            return CallBegin("run", attempt=int(reply[1]), tool=reply[2],
                             args=json.loads(reply[3]))
        if state == "done":
            return CallBegin("done", status=reply[1], left=int(reply[2]),
                             next_begun=reply[3] == "1")
        if state == "busy":
            return CallBegin("busy", secs=float(reply[1]))
        if state == "exhausted":
            return CallBegin("exhausted", attempts=int(reply[1]))
        return CallBegin("inactive", why=reply[1])

    def finish_call(self, run_id: str, step_id: str, conv: int, turn: int, index: int, *,
                    outcome: Literal["succeeded", "failed", "retry"], output: Any = None,
                    error: ErrorRecord | None = None, attempt: int | None = None,
                    delay_s: float = 0.0, queue: str = "", handoff_s: float = DEFAULT_LEASE_S
                    ) -> CallFinish:
        """``finish_call(run_id, step_id, conv, turn, index, *, outcome, output=None,
        error=None, attempt=None, delay_s=0.0, queue='', handoff_s=30.0) -> CallFinish``.
        Record call ``index``'s ``outcome``: ``succeeded`` with ``output``, ``failed`` with
        ``error`` (its result), or ``retry`` with ``error`` (pending again, due in
        ``delay_s`` on ``queue``). ``attempt``: the call attempt reporting it (None: the
        engine decides, e.g. a revoke). The turn's last result holds the step lease for
        ``handoff_s`` (the hop to the next turn)."""
        if outcome != "succeeded" and error is None:
            raise ValueError(f"finish_call({outcome!r}) needs the error")
        value = json.dumps(output) if outcome == "succeeded" else cast(ErrorRecord,
                                                                       error).to_json()
        reply = self._agent("finish_call", run_id, step_id, str(conv), str(turn), str(index),
                            "" if attempt is None else str(attempt), outcome, value,
                            str(delay_s), queue, str(handoff_s))
        state = reply[0]
        if state == "ok":
            return CallFinish("ok", left=int(reply[1]), took=_secs(reply[2]))
        if state == "last":
            return CallFinish("last", version=int(reply[1]), took=_secs(reply[2]))
        if state == "recorded":
            return CallFinish("recorded", took=_secs(reply[1]))
        if state == "retry":
            return CallFinish("retry", took=_secs(reply[1]))
        return CallFinish("duplicate" if state == "duplicate" else "superseded")

    def conversation(self, run_id: str, step_id: str, conv: int | None = None
                     ) -> Conversation:
        """``conversation(run_id, step_id, conv=None) -> Conversation``: the step's
        conversation ``conv`` (None: its current one, the step's ``base``), every turn
        with its content blocks and calls. Empty (no turns, ``last`` -1) before turn 0."""
        k = RunKeys(run_id)
        if conv is None:
            conv = int(cast(str | None, self.r.hget(k.steps, f"{step_id}.base")) or 0)
        head = prefix(step_id, conv)
        # A conversation has at most MAX_TURNS turns and the one repair turn: read them and
        # their counters at once, then the calls the turns name.
        names = [f"{head}last"] + [f"{head}{t}{tail}" for t in range(MAX_TURNS + 2)
                                   for tail in ("", "|left")]
        values = cast(list[str | None], self.r.hmget(k.agent, names))
        fields = {n: v for n, v in zip(names, values, strict=True) if v is not None}
        call_names = [f"{head}{t}|{i}" for t in range(MAX_TURNS + 2)
                      if f"{head}{t}" in fields
                      for i in range(int(json.loads(fields[f"{head}{t}"]).get("calls") or 0))]
        if call_names:
            got = cast(list[str | None], self.r.hmget(k.agent, call_names))
            fields.update({n: v for n, v in zip(call_names, got, strict=True)
                           if v is not None})
        return Conversation.of(step_id, conv, fields)
