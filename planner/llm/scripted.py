"""A scripted model: recorded responses from a JSON file, for tests and offline demos.

Select it with ``CHORDAL_LLM=scripted:PATH``. The file::

    {"responses": [
      {"role": "planner", "match": "weekend", "turn": 0,
       "content": [{"type": "tool_use", "name": "submit_plan", "input": {...}}],
       "usage": {"input_tokens": 1200, "output_tokens": 310}},
      {"role": "synthesizer", "content": [{"type": "text", "text": "..."}]}
    ]}

A request gets the first response whose ``role`` is the request's, whose ``step`` (if
any) is the plan step that asks (an agent step, or an `llm` step), whose ``match`` (if
any) occurs in what the model is shown (its text, or the JSON of its messages), and whose
``turn`` (if any) is the number of answers the model already gave in this conversation (0
for a first call, 1 for the first repair or an agent's second turn...). Choosing by
content, not by order, keeps it deterministic across workers. A request nothing fits fails
for good, listing each response of its role and why it did not fit.

A ``tool_use`` block without an ``id`` gets ``toolu_<step>_<turn>_<i>`` (``i`` its place
among the response's tool_use blocks); ``stop_reason`` defaults to ``tool_use`` when the
content has such a block, else ``end_turn``. An agent step's turns, say::

    {"role": "executor", "step": "pick_hotel", "turn": 0, "content": [
      {"type": "tool_use", "name": "travel_availability", "input": {"hotel": "A"}},
      {"type": "tool_use", "name": "travel_availability", "input": {"hotel": "B"}}]},
    {"role": "executor", "step": "pick_hotel", "turn": 1, "content": [
      {"type": "tool_use", "name": "final_answer", "input": {"answer": {"hotel": "A"}}}]}

``chordal record RUN_ID`` writes such a file from a run's stored model exchanges
(:func:`cassette`): replayed, the run's model answers the same, offline.
"""

from __future__ import annotations

import json
import re
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
        plain = plain_text(request)
        turn = request.turn()
        for r in self.responses:
            if r["role"] != request.role:
                continue
            if "step" in r and r["step"] != request.step:
                continue
            if "match" in r and str(r["match"]) not in plain and str(r["match"]) not in shown:
                continue
            if "turn" in r and int(r["turn"]) != turn:
                continue
            time.sleep(float(r.get("latency_s", 0)))
            content = _with_ids(r["content"], request.step, turn)
            uses = any(b.get("type") == "tool_use" for b in content)
            return ModelResponse(content=content, usage=Usage.from_api(r.get("usage", {})),
                                 model=f"scripted:{request.config.model}",
                                 stop_reason=r.get("stop_reason",
                                                   "tool_use" if uses else "end_turn"),
                                 latency_s=float(r.get("latency_s", 0)))
        raise PermanentError(self._no_match(request, plain, shown, turn))

    def _no_match(self, request: ModelRequest, plain: str, shown: str, turn: int) -> str:
        """Which responses of the request's role there are, and why none fits: a replay
        that drifted from its recording says where."""
        asker = f"step {request.step!r}, " if request.step else ""
        head = (f"scripted model ({self.source}): no response for role {request.role!r} "
                f"fits this request ({asker}turn {turn}; it begins "
                f"{_cut(last_user_text(request), 80)!r})")
        why = []
        for i, r in enumerate(self.responses):
            if r["role"] != request.role:
                continue
            reasons = []
            if "step" in r and r["step"] != request.step:
                reasons.append(f"it answers step {r['step']!r}")
            if "match" in r and str(r["match"]) not in plain and str(r["match"]) not in shown:
                reasons.append(f"its match {_cut(str(r['match']), 60)!r} is not in the request")
            if "turn" in r and int(r["turn"]) != turn:
                reasons.append(f"it answers turn {r['turn']}")
            why.append(f"responses[{i}]: {' and '.join(reasons)}")
        if not why:
            return f"{head}: the file has no {request.role} response"
        shown_why = why[:5] + ([f"and {len(why) - 5} more"] if len(why) > 5 else [])
        return f"{head}; {'; '.join(shown_why)}"


_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def _with_ids(content: list[Any], step: str | None, turn: int) -> list[Any]:
    """The content with an id on every tool_use block (copies: the file's stay as read)."""
    out: list[Any] = []
    i = 0
    for block in content:
        if isinstance(block, dict) and block.get("type") == "tool_use":
            if not block.get("id"):
                where = _UNSAFE_ID.sub("_", step) + "_" if step else ""
                block = {**block, "id": f"toolu_{where}{turn}_{i}"}
            i += 1
        out.append(block)
    return out


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _block_text(content: Any) -> str:
    """The text of a message's content: a string, or text and tool-result blocks."""
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            parts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result":
            parts.append(_block_text(block.get("content", "")))
    return "\n".join(parts)


def plain_text(request: ModelRequest) -> str:
    """The system prompt and the messages as plain text (no JSON escapes), to match in."""
    return "\n".join([_block_text(request.system),
                      *(_block_text(m.get("content", "")) for m in request.messages)])


def last_user_text(request: ModelRequest) -> str:
    """What this call adds to its conversation: the text of its last user message."""
    for message in reversed(request.messages):
        if message.get("role") == "user":
            return _block_text(message.get("content", ""))
    return ""


#: Most characters of a request's prompt kept with its exchange.
PROMPT_CHARS = 8_000
#: Longest ``match`` a cassette uses (a prefix of a line still identifies it).
MATCH_CHARS = 160


def exchange(request: ModelRequest, response: ModelResponse, step_id: str | None
             ) -> dict[str, Any]:
    """One model call as a run stores it: the request's role, turn and prompt (its last
    user message, cut), and the response whole (content blocks, usage)."""
    u = response.usage
    return {"role": request.role, "turn": request.turn(), "step": step_id,
            "model": request.config.model,
            "prompt": last_user_text(request)[:PROMPT_CHARS],
            "content": response.content,
            "usage": {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
                      "cache_read_input_tokens": u.cache_read_input_tokens,
                      "cache_creation_input_tokens": u.cache_creation_input_tokens},
            "stop_reason": response.stop_reason}


def cassette(exchanges: list[dict[str, Any]], source: str = "") -> dict[str, Any]:
    """A scripted-model file from a run's exchanges, in order. Each response matches by
    role, step, turn and a line of its prompt that no other call of the same role, step and
    turn has, so a replay of the same run gets every answer back, whichever worker asks
    first (two agent steps' turns 1 may be asked the same way: their steps tell them
    apart)."""
    responses: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, x in enumerate(exchanges):
        rivals = [y["prompt"] for j, y in enumerate(exchanges)
                  if j != i and y["role"] == x["role"] and y["turn"] == x["turn"]
                  and y.get("step") == x.get("step") and y["prompt"] != x["prompt"]]
        lines = [line.strip()[:MATCH_CHARS] for line in x["prompt"].splitlines()
                 if line.strip()]
        match = next((line for line in lines if not any(line in r for r in rivals)),
                     lines[0] if lines else "")
        key = json.dumps([x["role"], x.get("step"), x["turn"], match])
        if key in seen:
            continue  # the same call made again (a retried task): its first answer serves
        seen.add(key)
        response: dict[str, Any] = {"role": x["role"], "turn": x["turn"]}
        if match:
            response["match"] = match
        if x.get("step"):
            response["step"] = x["step"]
        response.update({"content": x["content"], "usage": x["usage"],
                         "stop_reason": x.get("stop_reason") or "end_turn"})
        responses.append(response)
    comment = ("Recorded model exchanges" + (f" of {source}" if source else "")
               + "; replay with CHORDAL_LLM=scripted:THIS_FILE")
    return {"_comment": comment, "responses": responses}
