"""Planning conversations: the planner (goal -> plan) and the replanner (a failed step ->
the plan of the remaining work). Both answer by a forced ``submit_plan`` tool call; a plan
that fails validation goes back with every problem for repair."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from planner.errors import PlanInvalid, Problem
from planner.language.plan import Plan, Step
from planner.language.validation import Limits, validate
from planner.llm.model import Model, ModelRequest, ModelResponse, Role, RoleConfig
from planner.llm.roles import (
    CONTINUE_TOOL,
    PLAN_TOOL,
    continue_tool,
    plan_tool,
    role_config,
    system_blocks,
)
from planner.settings import Settings
from planner.tools.tool import Tool


@dataclass
class PlanOutcome:
    """What the planning conversation produced: a valid plan, or the last invalid one and
    its problems after every repair was spent."""

    plan: Plan | None
    attempts: int
    problems: list[Problem] = field(default_factory=list)
    last_invalid: Any = None
    responses: list[ModelResponse] = field(default_factory=list)
    #: A checkpoint's review answered ``continue_plan``: go on as planned.
    go_on: bool = False

    def error(self) -> dict[str, Any]:
        """Why there is no plan, as a run's error record."""
        return {"type": "PlanInvalid", "attempts": self.attempts,
                "message": f"the model's plan was still invalid after {self.attempts} "
                           f"attempt(s): {len(self.problems)} problem(s)",
                "problems": [str(p) for p in self.problems], "plan": self.last_invalid}


def _plan_conversation(model: Model, role: Role, config: RoleConfig,
                       system: list[dict[str, Any]], first: str, repairs: int,
                       check: Any, may_continue: bool = False,
                       first_call: Callable[[ModelRequest], ModelResponse] | None = None
                       ) -> PlanOutcome:
    """Ask for a plan through forced tool use; send problems back for repair. With
    ``may_continue`` (a checkpoint's review), the first answer may instead call
    ``continue_plan``: then ``outcome.go_on`` is set and there is no plan. ``first_call``
    makes the first request instead of ``model.complete`` (a streamed one); repairs are
    asked as usual."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": first}]
    outcome = PlanOutcome(None, 0)
    for attempt in range(1, repairs + 2):
        if may_continue and attempt == 1:
            request = ModelRequest(role, config, system, list(messages),
                                   [continue_tool(), plan_tool()], {"type": "any"})
        else:
            request = ModelRequest(role, config, system, list(messages), [plan_tool()],
                                   {"type": "tool", "name": PLAN_TOOL})
        call = first_call if first_call is not None and attempt == 1 else model.complete
        response = call(request)
        outcome.attempts = attempt
        outcome.responses.append(response)
        if may_continue and attempt == 1 and response.tool_use_id(CONTINUE_TOOL):
            outcome.go_on = True
            return outcome
        data = response.tool_input(PLAN_TOOL)
        if data is None:
            problems = [Problem(None, PLAN_TOOL, "the answer did not call submit_plan with "
                                                 "a JSON object")]
            outcome.last_invalid = response.text() or None
        else:
            outcome.last_invalid = data
            try:
                outcome.plan = check(data)
                outcome.problems = []
                return outcome
            except PlanInvalid as exc:
                problems = exc.problems
        outcome.problems = problems
        messages.append({"role": "assistant", "content": response.content})
        listing = "\n".join(f"- {p}" for p in problems)
        fix = (f"The plan is invalid ({len(problems)} problem(s)):\n{listing}\n"
               "Call submit_plan again with a corrected plan.")
        tool_id = response.tool_use_id(PLAN_TOOL)
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_id, "is_error": True, "content": fix}
        ] if tool_id else fix})
    return outcome


def plan_goal(model: Model, settings: Settings, tools: Mapping[str, Tool], goal: str,
              overrides: Mapping[str, Any] | None = None,
              first_call: Callable[[ModelRequest], ModelResponse] | None = None
              ) -> PlanOutcome:
    """goal + tool catalogue -> a validated Plan (or the report of why not).
    ``first_call``: how the first answer is asked for (streamed, planner/engine/streaming.py)."""
    limits = Limits.from_settings(settings)

    def check(data: Any) -> Plan:
        data = {**data, "goal": goal} if isinstance(data, dict) else data
        return validate(data, tools, limits).plan

    return _plan_conversation(model, "planner", role_config(settings, "planner", overrides),
                              system_blocks("planner", tools), f"Goal: {goal}",
                              settings.model.plan_repairs, check, first_call=first_call)


#: Longest JSON of one output shown to the replanner; longer ones are cut, with a marker.
OUTPUT_PREVIEW_CHARS = 2_000


def preview(output: Any, limit: int = OUTPUT_PREVIEW_CHARS) -> Any:
    """An output as the replanner sees it: whole if short, else cut and marked as cut."""
    text = json.dumps(output, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return output
    return {"truncated": True, "chars": len(text), "preview": text[:limit] + "…"}


def replan(model: Model, settings: Settings, tools: Mapping[str, Tool], goal: str,
           context: Mapping[str, Any], kept: list[Step], forbidden: Mapping[str, str],
           overrides: Mapping[str, Any] | None = None, checkpoint: bool = False
           ) -> PlanOutcome:
    """The plan of the work not started yet, after a failure (or at a checkpoint).

    ``context`` is what the replanner is shown (JSON). ``kept`` are the steps that stay
    whatever it answers (completed and in flight); the plan it returns is ``kept`` plus
    its steps, validated as a whole. ``forbidden`` maps ids a new step may not take to
    why (failed, replaced)."""
    limits = Limits.from_settings(settings)
    kept_ids = {s.id for s in kept}

    def check(data: Any) -> Plan:
        if not isinstance(data, dict):
            raise PlanInvalid([Problem(None, "plan", "not a JSON object")])
        new_steps = data.get("steps")
        new_steps = new_steps if isinstance(new_steps, list) else []
        clashes = []
        for item in new_steps:
            sid = item.get("id") if isinstance(item, dict) else None
            if sid in kept_ids:
                clashes.append(Problem(sid, "id", "is a completed or running step, kept "
                                                  "as it is: do not list it, use a new id"))
            elif isinstance(sid, str) and sid in forbidden:
                clashes.append(Problem(sid, "id", f"is the id of a {forbidden[sid]} step; "
                                                  "use a new id"))
        merged = {"goal": goal, "steps": [s.model_dump() for s in kept] + [
            item for item in new_steps
            if not (isinstance(item, dict) and item.get("id") in kept_ids)]}
        try:
            valid = validate(merged, tools, limits).plan
        except PlanInvalid as exc:
            raise PlanInvalid(clashes + exc.problems) from None
        if clashes:
            raise PlanInvalid(clashes)
        return valid

    ask = ("A checkpoint step succeeded. Is the plan still right? Call continue_plan to go "
           "on as planned, or submit_plan with the steps of the remaining work."
           if checkpoint else "Submit the steps of the remaining work.")
    first = ("The run so far, as JSON:\n" + json.dumps(context, indent=1, default=str)
             + "\n" + ask)
    return _plan_conversation(model, "replanner",
                              role_config(settings, "replanner", overrides),
                              system_blocks("replanner", tools), first, settings.model.plan_repairs,
                              check, may_continue=checkpoint)
