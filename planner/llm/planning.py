"""Planning conversations: the planner (goal -> plan) and the replanner (a failed step ->
the plan of the remaining work). Both answer by a forced ``submit_plan`` tool call; a plan
that fails validation goes back with every problem for repair."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from planner.errors import PlanInvalid, Problem
from planner.language.plan import Plan
from planner.language.validation import Limits, validate
from planner.llm.model import Model, ModelRequest, ModelResponse, Role, RoleConfig
from planner.llm.roles import PLAN_TOOL, plan_tool, role_config, system_blocks
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

    def error(self) -> dict[str, Any]:
        """Why there is no plan, as a run's error record."""
        return {"type": "PlanInvalid", "attempts": self.attempts,
                "message": f"the model's plan was still invalid after {self.attempts} "
                           f"attempt(s): {len(self.problems)} problem(s)",
                "problems": [str(p) for p in self.problems], "plan": self.last_invalid}


def _plan_conversation(model: Model, role: Role, config: RoleConfig,
                       system: list[dict[str, Any]], first: str, repairs: int,
                       check: Any) -> PlanOutcome:
    """Ask for a plan through forced tool use; send problems back for repair."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": first}]
    outcome = PlanOutcome(None, 0)
    for attempt in range(1, repairs + 2):
        request = ModelRequest(role, config, system, list(messages), [plan_tool()],
                               {"type": "tool", "name": PLAN_TOOL})
        response = model.complete(request)
        outcome.attempts = attempt
        outcome.responses.append(response)
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
              overrides: Mapping[str, Any] | None = None) -> PlanOutcome:
    """goal + tool catalogue -> a validated Plan (or the report of why not)."""
    limits = Limits.from_settings(settings)

    def check(data: Any) -> Plan:
        data = {**data, "goal": goal} if isinstance(data, dict) else data
        return validate(data, tools, limits).plan

    return _plan_conversation(model, "planner", role_config(settings, "planner", overrides),
                              system_blocks("planner", tools), f"Goal: {goal}",
                              settings.plan_repairs, check)


def replan(model: Model, settings: Settings, tools: Mapping[str, Tool], plan: Plan,
           states: Mapping[str, Mapping[str, Any]], outputs: Mapping[str, Any],
           failed_step: str, error: Mapping[str, Any] | None,
           overrides: Mapping[str, Any] | None = None) -> PlanOutcome:
    """The plan of the remaining work after ``failed_step`` failed for good. The returned
    plan holds the completed steps (unchanged, so their results are kept) plus new ones."""
    limits = Limits.from_settings(settings)
    completed = [s for s in plan.steps if states.get(s.id, {}).get("status") == "succeeded"]
    done_ids = {s.id for s in completed}

    def check(data: Any) -> Plan:
        if not isinstance(data, dict):
            raise PlanInvalid([Problem(None, "plan", "not a JSON object")])
        new_steps = data.get("steps")
        clashes = [Problem(s.get("id"), "id", "reuses the id of a completed or failed step")
                   for s in new_steps if isinstance(s, dict)
                   and s.get("id") in done_ids | {failed_step}] \
            if isinstance(new_steps, list) else []
        merged = {"goal": plan.goal, "steps": [s.model_dump() for s in completed] + (
            new_steps if isinstance(new_steps, list) else [])}
        try:
            valid = validate(merged, tools, limits).plan
        except PlanInvalid as exc:
            raise PlanInvalid(clashes + exc.problems) from None
        if clashes:
            raise PlanInvalid(clashes)
        return valid

    failed = plan.step(failed_step)
    context = {
        "goal": plan.goal,
        "completed_steps": [{"id": s.id, "description": s.description, "tool": s.tool,
                             "output": outputs.get(s.id)} for s in completed],
        "failed_step": {"id": failed.id, "description": failed.description,
                        "tool": failed.tool, "args": failed.args, "error": error},
        "not_started": [s.id for s in plan.steps
                        if s.id not in done_ids and s.id != failed_step],
    }
    first = ("The run so far, as JSON:\n" + json.dumps(context, indent=1, default=str)
             + "\nSubmit the new steps that reach the goal.")
    return _plan_conversation(model, "replanner",
                              role_config(settings, "replanner", overrides),
                              system_blocks("replanner", tools), first, settings.plan_repairs,
                              check)
