"""An agent step's conversation as a run report shows it: its turns, and in each the tool
calls the model asked for with their arguments, results or errors and times (from the
Redis clock). Read from the run's ``:agent`` hash (planner/store/agents.py writes it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from planner.store.failure import ErrorRecord
from planner.vocabulary import CallStatus, TurnKind

__all__ = ["AgentCall", "AgentReport", "AgentTurn"]


class _Compact(BaseModel):
    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Absent details stay absent in the JSON report instead of showing as null.
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class AgentCall(_Compact):
    """One tool call of a turn: ``index`` is its place among the turn's tool_use blocks."""

    index: int
    #: The model's tool_use id.
    id: str | None = None
    tool: str
    args: Any = None
    status: CallStatus | str = CallStatus.PENDING
    output: Any = None
    error: ErrorRecord | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    #: The Celery task of its last attempt (its row in Flower).
    task: str | None = None


class AgentTurn(_Compact):
    """One model call of the conversation (a repair turn included)."""

    turn: int
    #: ``thinking`` while the model answers, then what the turn came to.
    kind: TurnKind | str = TurnKind.THINKING
    text: str | None = None
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    latency_ms: float | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: How many times a worker began it (more than one after a worker died mid-call).
    tries: int = 0
    worker: str | None = None
    task: str | None = None
    #: Why the answer or the calls were refused (repair, invalid, refused turns).
    problems: list[str] | None = None
    calls: list[AgentCall] = Field(default_factory=list)
    #: The assistant's content blocks as the model sent them (kept to rebuild the
    #: conversation; left out of a report's JSON).
    content: list[dict[str, Any]] | None = Field(default=None, exclude=True)


class AgentReport(_Compact):
    """An agent step's current conversation (``chordal retry`` starts a new one)."""

    conversation: int = 0
    max_turns: int
    turns: list[AgentTurn] = Field(default_factory=list)

    @property
    def current_turn(self) -> AgentTurn | None:
        return self.turns[-1] if self.turns else None

    @property
    def running_calls(self) -> list[AgentCall]:
        return [c for t in self.turns for c in t.calls if c.status == CallStatus.RUNNING]

    @property
    def calls(self) -> list[AgentCall]:
        return [c for t in self.turns for c in t.calls]
