"""Why a step or a run failed, as the run store records it: one model for every failure
(steps, runs, agent tool calls), below the other records so any of them can hold one."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

__all__ = ["Compact", "ErrorRecord"]


class Compact(BaseModel):
    """A record whose details that are None stay absent from its JSON (reports, the run
    store) instead of showing as null. A model serializer, so extra fields are left out
    too; its serialization schema is ``{}`` (an agent record, whose schema the OpenAPI
    document shows, leaves its fields out one by one instead: agent_records.UNSET)."""

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None}


class ErrorRecord(Compact):
    """Why a step or a run failed. ``type`` and ``message`` always; the rest where it
    applies (and any other detail, such as ``cause`` or ``problems``, kept as given)."""

    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    transient: bool | None = None
    attempt: int | None = None
    retry_in_s: float | None = None
    step: str | None = None
    policy: str | None = None
    cause: ErrorRecord | None = None
    completed: list[str] | None = None
    problems: list[str] | None = None
    attempts: int | None = None
    plan: Any = None
    #: A tool's traceback, trimmed to its innermost frames (the worker logs all of it).
    traceback: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"))

    @classmethod
    def parse(cls, text: str | None) -> ErrorRecord | None:
        return cls.model_validate_json(text) if text else None
