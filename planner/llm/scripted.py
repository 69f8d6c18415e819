"""A scripted model: recorded responses from a JSON file, for tests and offline demos.

Select it with ``CHORDAL_LLM=scripted:PATH``. The file::

    {"responses": [
      {"role": "planner", "match": "weekend", "turn": 0,
       "content": [{"type": "tool_use", "name": "submit_plan", "input": {...}}],
       "usage": {"input_tokens": 1200, "output_tokens": 310}},
      {"role": "synthesizer", "content": [{"type": "text", "text": "..."}]}
    ]}

A request gets the first response whose ``role`` is the request's, whose ``match`` (if
any) occurs in what the model is shown, and whose ``turn`` (if any) is the number of
answers the model already gave in this conversation (0 for a first call, 1 for the first
repair...). Choosing by content, not by order, keeps it deterministic across workers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from planner.errors import ConfigError, PermanentError
from planner.llm.model import ROLES, ModelRequest, ModelResponse, Usage


class ScriptedModel:
    name = "scripted"

    def __init__(self, responses: list[dict[str, Any]], source: str = "<memory>") -> None:
        self.source = source
        for i, r in enumerate(responses):
            if r.get("role") not in ROLES:
                raise ConfigError(f"{source}: responses[{i}].role must be one of "
                                  f"{', '.join(ROLES)}")
            if not isinstance(r.get("content"), list):
                raise ConfigError(f"{source}: responses[{i}].content must be a list of "
                                  "content blocks")
        self.responses = responses

    @classmethod
    def from_file(cls, path: str | Path) -> ScriptedModel:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"CHORDAL_LLM: scripted responses file {p} does not exist"
                              ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"CHORDAL_LLM: {p} is not JSON: {exc.msg} at line "
                              f"{exc.lineno}") from None
        if not isinstance(data, dict) or not isinstance(data.get("responses"), list):
            raise ConfigError(f"CHORDAL_LLM: {p} must be an object with a 'responses' list")
        return cls(data["responses"], str(p))

    def complete(self, request: ModelRequest) -> ModelResponse:
        shown = request.text()
        turn = request.turn()
        for r in self.responses:
            if r["role"] != request.role:
                continue
            if "match" in r and str(r["match"]) not in shown:
                continue
            if "turn" in r and int(r["turn"]) != turn:
                continue
            time.sleep(float(r.get("latency_s", 0)))
            return ModelResponse(content=r["content"], usage=Usage.from_api(r.get("usage", {})),
                                 model=f"scripted:{request.config.model}",
                                 stop_reason=r.get("stop_reason", "end_turn"),
                                 latency_s=float(r.get("latency_s", 0)))
        raise PermanentError(f"scripted model ({self.source}): no response for role "
                             f"{request.role!r} at turn {turn} matching this request")
