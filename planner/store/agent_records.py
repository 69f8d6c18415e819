"""An agent step's conversation as a run report shows it: its turns, and in each the tool
calls the model asked for with their arguments, results or errors and times (from the
Redis clock). Read from the run's ``:agent`` hash (planner/store/agents.py writes it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from planner.store.failure import ErrorRecord
from planner.vocabulary import CallStatus, TurnKind

__all__ = ["AgentCall", "AgentReport", "AgentTurn"]


def _absent(value: Any) -> bool:
    return value is None


#: An optional detail: absent from the JSON report when unset, instead of null. Per field
#: (``exclude_if``), not a model serializer, so the OpenAPI schema keeps every field.
UNSET: Any = Field(None, exclude_if=_absent)


class AgentCall(BaseModel):
    """One tool call of a turn: ``index`` is its place among the turn's tool_use blocks."""

    index: int
    #: The model's tool_use id.
    id: str | None = UNSET
    tool: str
    args: Any = UNSET
    status: CallStatus | str = CallStatus.PENDING
    output: Any = UNSET
    error: ErrorRecord | None = UNSET
    attempts: int = 0
    started_at: datetime | None = UNSET
    finished_at: datetime | None = UNSET
    worker: str | None = UNSET
    #: The Celery task of its last attempt (its row in Flower).
    task: str | None = UNSET


class AgentTurn(BaseModel):
    """One model call of the conversation (a repair turn included)."""

    turn: int
    #: ``thinking`` while the model answers, then what the turn came to.
    kind: TurnKind | str = TurnKind.THINKING
    text: str | None = UNSET
    stop_reason: str | None = UNSET
    usage: dict[str, Any] | None = UNSET
    latency_ms: float | None = UNSET
    started_at: datetime | None = UNSET
    finished_at: datetime | None = UNSET
    #: How many times a worker began it (more than one after a worker died mid-call).
    tries: int = 0
    worker: str | None = UNSET
    task: str | None = UNSET
    #: Why the answer or the calls were refused (repair, invalid, refused turns).
    problems: list[str] | None = UNSET
    calls: list[AgentCall] = Field(default_factory=list)
    #: The assistant's content blocks as the model sent them (kept to rebuild the
    #: conversation; left out of a report's JSON).
    content: list[dict[str, Any]] | None = Field(default=None, exclude=True)


class AgentReport(BaseModel):
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
