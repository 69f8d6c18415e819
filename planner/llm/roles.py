"""The model's roles: planner, replanner, executor (`llm` and agent steps) and synthesizer;
each role's configuration, prompt and request.

Prompts are package data (``planner/llm/prompts``). Every request puts the stable part first
(system prompt with the tool catalogue, then the ``submit_plan`` tool) and marks its end with
``cache_control``, so repeated calls of a role read it from Anthropic's prompt cache.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from typing import Any

from planner.errors import ConfigError
from planner.language.plan import plan_json_schema
from planner.llm.agent_messages import (
    AgentTaskLike,
    TurnLike,
    agent_messages,
    tool_definitions,
)
from planner.llm.model import ModelRequest, Role, RoleConfig
from planner.settings import Settings
from planner.tools.tool import Tool

PLAN_TOOL = "submit_plan"
CONTINUE_TOOL = "continue_plan"
CACHE = {"type": "ephemeral"}


@cache
def prompt(name: str) -> str:
    return resources.files("planner.llm").joinpath(f"prompts/{name}.md").read_text("utf-8")


def role_config(settings: Settings, role: Role,
                overrides: Mapping[str, Any] | None = None) -> RoleConfig:
    """A role's model, max tokens and temperature: settings, then per-run overrides."""
    over = dict((overrides or {}).get(role, {}))
    unknown = set(over) - {"model", "max_tokens", "temperature"}
    if unknown:
        raise ConfigError(f"unknown option(s) for role {role}: {', '.join(sorted(unknown))}; "
                          "use model, max_tokens or temperature")
    return RoleConfig(
        model=str(over.get("model", getattr(settings.model, f"{role}_model"))),
        max_tokens=int(over.get("max_tokens", getattr(settings.model, f"{role}_max_tokens"))),
        temperature=_float_or_none(over.get("temperature",
                                            getattr(settings.model, f"{role}_temperature"))),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def catalogue(tools: Mapping[str, Tool]) -> str:
    """The tools, with their schemas, sorted by name so the text (and cache) is stable."""
    entries = [{"name": t.name, "description": t.description,
                "input_schema": t.input_schema, "output_schema": t.output_schema}
               for _, t in sorted(tools.items())]
    return json.dumps(entries, indent=1, sort_keys=True)


def system_blocks(name: str, tools: Mapping[str, Tool] | None = None) -> list[dict[str, Any]]:
    text = prompt(name)
    if tools is not None:
        text = text.replace("{catalogue}", catalogue(tools))
    return [{"type": "text", "text": text, "cache_control": CACHE}]


def continue_tool() -> dict[str, Any]:
    """A checkpoint's verdict "go on as planned" (the other is ``submit_plan``)."""
    return {"name": CONTINUE_TOOL,
            "description": "The plan is still right: go on as planned.",
            "input_schema": {"type": "object", "properties": {}}}


def plan_tool() -> dict[str, Any]:
    return {"name": PLAN_TOOL,
            "description": "Submit the plan: a goal and a DAG of tool-call steps.",
            "input_schema": plan_json_schema(), "cache_control": CACHE}


def synthesize_request(settings: Settings, goal: str, outputs: Mapping[str, Any],
                       descriptions: Mapping[str, str],
                       overrides: Mapping[str, Any] | None = None,
                       failure: str | None = None) -> ModelRequest:
    """The answer from the step outputs; with ``failure``, a partial answer from what a
    failed run earned, which says what is missing."""
    material = [{"step": sid, "description": descriptions.get(sid, ""), "output": out}
                for sid, out in outputs.items()]
    text = (f"Goal: {goal}\n\nStep outputs (JSON):\n"
            + json.dumps(material, indent=1, ensure_ascii=False, default=str))
    if failure:
        text = (f"The run failed before it reached the goal ({failure}). Answer as much of "
                "the goal as these partial results allow, and say plainly what is missing."
                f"\n\n{text}")
    return ModelRequest("synthesizer", role_config(settings, "synthesizer", overrides),
                        system_blocks("synthesizer"), [{"role": "user", "content": text}])


def executor_request(settings: Settings, prompt_parts: list[Any], system: str | None,
                     overrides: Mapping[str, Any] | None = None) -> ModelRequest:
    """An `llm` step: strings are instructions, anything else (resolved $refs) is
    material, shown as JSON."""
    text = "\n\n".join(p if isinstance(p, str) else
                       json.dumps(p, indent=1, ensure_ascii=False, default=str)
                       for p in prompt_parts)
    blocks = system_blocks("executor")
    if system:
        blocks = [*blocks, {"type": "text", "text": system}]
    return ModelRequest("executor", role_config(settings, "executor", overrides), blocks,
                        [{"role": "user", "content": text}])


def agent_request(settings: Settings, spec: AgentTaskLike, conv: Sequence[TurnLike],
                  tools: Mapping[str, Tool], overrides: Mapping[str, Any] | None = None,
                  step: str | None = None) -> ModelRequest:
    """The next turn of an agent step: its task and done turns (``conv``, oldest first),
    with its tools to call (planner/llm/agent_messages.py says what each argument holds).
    ``tool_choice`` is ``auto``: the model may call several tools at once, or answer."""
    defs = tool_definitions(spec, tools)
    return ModelRequest("executor", role_config(settings, "executor", overrides),
                        system_blocks("agent"),
                        agent_messages(spec, conv, settings.model.agent_result_chars),
                        tools=defs, tool_choice={"type": "auto"} if defs else None,
                        step=step)
