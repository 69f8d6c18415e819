"""What passes between Chordal and a model: Messages API shapes, typed at the edges."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from planner.errors import NO_MODEL as NO_MODEL  # defined with the errors: tools use it too

Role = Literal["planner", "replanner", "executor", "synthesizer"]
ROLES: tuple[Role, ...] = ("planner", "replanner", "executor", "synthesizer")


@dataclass(frozen=True)
class RoleConfig:
    """Model, max tokens and temperature of one role (settings, overridable per run)."""

    model: str
    max_tokens: int
    temperature: float | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens + self.output_tokens + self.cache_read_input_tokens
                + self.cache_creation_input_tokens)

    @classmethod
    def from_api(cls, usage: Any) -> Usage:
        get = (usage.get if isinstance(usage, dict)
               else lambda k, d=None: getattr(usage, k, d))
        return cls(int(get("input_tokens", 0) or 0), int(get("output_tokens", 0) or 0),
                   int(get("cache_read_input_tokens", 0) or 0),
                   int(get("cache_creation_input_tokens", 0) or 0))


@dataclass(frozen=True)
class ModelRequest:
    """One Messages API call. ``system`` and ``tools`` come first and are stable, so the
    prompt cache (``cache_control`` on their last block) serves every call of a role."""

    role: Role
    config: RoleConfig
    system: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: dict[str, Any] | None = None
    #: The plan step that asks (an agent or an `llm` step); metadata, never sent to the
    #: API: a scripted response with a ``step`` answers only that step's requests.
    step: str | None = None

    def text(self) -> str:
        """Everything the model is shown, flattened (for matching scripted responses)."""
        return json.dumps([self.system, self.messages], ensure_ascii=False)

    def turn(self) -> int:
        """How many times the model has already answered in this conversation."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")


@dataclass(frozen=True)
class ModelResponse:
    content: list[dict[str, Any]]
    usage: Usage
    model: str
    stop_reason: str | None = None
    latency_s: float = 0.0

    def tool_input(self, name: str) -> dict[str, Any] | None:
        for block in self.content:
            if block.get("type") == "tool_use" and block.get("name") == name:
                value = block.get("input")
                return value if isinstance(value, dict) else None
        return None

    def tool_use_id(self, name: str) -> str | None:
        for block in self.content:
            if block.get("type") == "tool_use" and block.get("name") == name:
                return str(block.get("id", ""))
        return None

    def text(self) -> str:
        return "".join(b.get("text", "") for b in self.content if b.get("type") == "text")


class Model(Protocol):
    """Something that answers Messages API requests: Claude, or a scripted stand-in."""

    name: str

    def complete(self, request: ModelRequest) -> ModelResponse: ...
