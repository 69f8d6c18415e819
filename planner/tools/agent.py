"""The agent step's fixed words and pure helpers, shared by validation, the model side and
the engine: the reserved tool names, the model-facing name of a tool, and the check of an
agent's answer against its ``output_schema``. No I/O, nothing of the engine."""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["AGENT_TOOL", "ANSWER_TOOL", "DEFAULT_MAX_TURNS", "MAX_TURNS", "answer_problems",
           "api_name"]

#: The built-in tool a plan step names to be carried out by the executor model with tools.
AGENT_TOOL = "agent"
#: The tool an agent with an ``output_schema`` answers through (reserved in its ``tools``).
ANSWER_TOOL = "final_answer"
DEFAULT_MAX_TURNS = 8
MAX_TURNS = 50

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_LIMIT = 64


def api_name(name: str) -> str:
    """``name`` as the Messages API accepts a tool name (``^[a-zA-Z0-9_-]{1,64}$``): other
    characters become ``_`` (``travel.hotels`` -> ``travel_hotels``); a longer name keeps
    55 characters and a hash of the whole (8 hex of sha256), so two long names stay apart."""
    safe = _UNSAFE.sub("_", name) or "_"
    if len(safe) <= _LIMIT:
        return safe
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{safe[:55]}_{digest}"


def answer_problems(schema: dict[str, Any], value: Any) -> list[str]:
    """Why ``value`` does not fit ``schema`` (empty when it does), each problem prefixed by
    where it is (``answer.price: 'x' is not of type 'number'``)."""
    from jsonschema.validators import Draft202012Validator, validator_for

    cls = validator_for(schema, default=Draft202012Validator)
    problems = []
    for error in sorted(cls(schema).iter_errors(value), key=lambda e: list(e.absolute_path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        problems.append(f"answer{where}: {error.message}")
    return problems
