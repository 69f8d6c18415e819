"""Plan validation that reports every problem at once, each with its step id and field."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from planner.errors import PlanInvalid, Problem
from planner.jsonvalue import json_problems, text_problem
from planner.language.agent_checks import agent_output_schema, agent_problems
from planner.language.graph import Shape, find_cycle, shape
from planner.language.plan import Plan, Step
from planner.language.refs import (
    Ref,
    iter_refs,
    ref_type_clash,
    schema_allows_path,
    with_json_refs,
)
from planner.settings import Settings
from planner.tools.agent import AGENT_TOOL
from planner.tools.tool import Tool


@dataclass(frozen=True)
class Limits:
    max_steps: int = 200
    max_args_bytes: int = 65_536
    max_goal_bytes: int = 16_384
    max_description_bytes: int = 4_096
    max_json_depth: int = 64
    # Longest a step's attempt plus its retry delay may take before the broker redelivers
    # it to another worker (Redis's visibility timeout); None where the broker has none.
    max_attempt_s: float | None = None
    retry_delay_s: float = 0.0
    hard_limit_grace_s: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        on_redis = settings.broker.startswith(("redis", "rediss"))
        limits = settings.limits
        return cls(limits.max_steps, limits.max_args_bytes, limits.max_goal_bytes,
                   limits.max_description_bytes, limits.max_json_depth,
                   float(settings.worker.visibility_timeout_s) if on_redis else None,
                   settings.engine.retry_backoff_max_s, settings.worker.hard_limit_grace_s)


@dataclass(frozen=True)
class ValidPlan:
    plan: Plan
    shape: Shape


def _loc(parts: tuple[str | int, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")


def validate(data: Mapping[str, Any] | Plan, tools: Mapping[str, Tool],
             limits: Limits = Limits()) -> ValidPlan:
    """Check a plan against the tools; raise :class:`PlanInvalid` listing every problem."""
    if not isinstance(data, Plan | Mapping):
        raise PlanInvalid([Problem(None, "plan", "a plan is a JSON object with 'goal' and "
                                                 f"'steps', not {_kind(data)}")])
    # A plan built in Python may hold Ref objects: they are the $refs they stand for.
    raw: Mapping[str, Any] = (data.model_dump() if isinstance(data, Plan)
                              else with_json_refs(data))
    problems: list[Problem] = []

    for key in sorted(set(raw) - set(Plan.model_fields)):
        problems.append(Problem(None, key, "unknown field; a plan has 'goal', 'steps' and "
                                           "optionally 'max_replans' and 'synthesize'"))
    max_replans = raw.get("max_replans")
    if isinstance(max_replans, float) and max_replans.is_integer():
        max_replans = int(max_replans)  # an integer, as the plan's JSON Schema says: 2.0 is 2
    if max_replans is not None and (isinstance(max_replans, bool)
                                    or not isinstance(max_replans, int)
                                    or not 0 <= max_replans <= 100):
        problems.append(Problem(None, "max_replans", "an integer from 0 to 100"))
    synthesize = raw.get("synthesize")
    if synthesize is not None and not isinstance(synthesize, bool):
        problems.append(Problem(None, "synthesize", "true or false"))
    goal = raw.get("goal")
    if not isinstance(goal, str):
        problems.append(Problem(None, "goal", "required, a string"))
    elif (why := text_problem(goal, limits.max_goal_bytes)) is not None:
        problems.append(Problem(None, "goal", why + " (CHORDAL_MAX_GOAL_BYTES)"))
    raw_steps = raw.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(Problem(None, "steps", "required, a non-empty list of steps"))
        raw_steps = []
    if len(raw_steps) > limits.max_steps:
        problems.append(Problem(None, "steps", f"{len(raw_steps)} steps; the limit is "
                                               f"{limits.max_steps}"))

    steps: list[Step] = []
    for index, item in enumerate(raw_steps):
        label = item.get("id") if isinstance(item, Mapping) else None
        label = label if isinstance(label, str) else f"#{index}"
        # Plain JSON of bounded depth first: what is not never reaches a serializer.
        unsafe = json_problems(item, limits.max_json_depth + 2)
        for path, what in unsafe:
            problems.append(Problem(label, path or "step", what))
        description = item.get("description") if isinstance(item, Mapping) else None
        if not unsafe and isinstance(description, str) and (
                why := text_problem(description, limits.max_description_bytes)):
            problems.append(Problem(label, "description",
                                    why + " (CHORDAL_MAX_DESCRIPTION_BYTES)"))
        if unsafe:
            continue
        try:
            steps.append(Step.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                field = _loc(tuple(err["loc"])) or "step"
                problems.append(Problem(label, field, err["msg"]))

    counts = Counter(s.id for s in steps)
    for step_id, n in sorted(counts.items()):
        if n > 1:
            problems.append(Problem(step_id, "id", f"duplicate id ({n} steps use it)"))
    by_id = {s.id: s for s in steps}

    for s in steps:
        problems.extend(_check_step(s, by_id, tools, limits))

    deps = {s.id: {d for d in s.dependencies() if d in by_id and d != s.id}
            for s in by_id.values()}
    cycle = find_cycle(deps)
    if cycle:
        problems.append(Problem(cycle[0], "depends_on", "cycle: " + " -> ".join(cycle)))

    if problems or len(steps) != len(raw_steps):
        raise PlanInvalid(sorted(set(problems), key=_order(raw_steps)))
    plan = Plan(goal=str(goal), steps=steps, max_replans=max_replans, synthesize=synthesize)
    return ValidPlan(plan, shape(deps))


def _kind(value: Any) -> str:
    return "null" if value is None else f"a JSON {type(value).__name__}" if isinstance(
        value, list | str | int | float | bool) else f"a {type(value).__name__}"


def _order(raw_steps: list[Any]) -> Any:
    position: dict[str | None, int] = {None: -1}
    for i, item in enumerate(raw_steps):
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            position.setdefault(item["id"], i)
        position.setdefault(f"#{i}", i)
    return lambda p: (position.get(p.step, len(raw_steps)), p.field, p.message)


def _check_step(s: Step, by_id: Mapping[str, Step], tools: Mapping[str, Tool],
                limits: Limits) -> list[Problem]:
    out: list[Problem] = []
    for i, dep in enumerate(s.depends_on):
        if dep == s.id:
            out.append(Problem(s.id, f"depends_on[{i}]", "a step cannot depend on itself"))
        elif dep not in by_id:
            out.append(Problem(s.id, f"depends_on[{i}]", f"no step has id {dep!r}"))

    size = len(json.dumps(s.args, separators=(",", ":")).encode())
    if size > limits.max_args_bytes:
        out.append(Problem(s.id, "args", f"{size} bytes of JSON; the limit is "
                                         f"{limits.max_args_bytes}"))

    ref_locs: list[tuple[str | int, ...]] = []
    for loc, ref in iter_refs(s.args):
        field = "args." + _loc(loc) if loc else "args"
        ref_locs.append(loc)
        if not isinstance(ref, Ref):
            out.append(Problem(s.id, field, str(ref)))
        elif ref.step == s.id:
            out.append(Problem(s.id, field, f"$ref {ref} reads the step's own output"))
        elif ref.step not in by_id:
            out.append(Problem(s.id, field, f"$ref {ref}: no step has id {ref.step!r}"))
        elif (target := tools.get(by_id[ref.step].tool)) is not None:
            produced = _output_schema(by_id[ref.step], target)
            why = schema_allows_path(produced, ref.path) if ref.path else None
            if why:
                out.append(Problem(s.id, field, f"$ref {ref}: tool {target.name!r} {why}"))
            elif (reader := tools.get(s.tool)) is not None and (clash := ref_type_clash(
                    produced, ref.path, reader.input_schema, loc, lax=reader.lax_args)):
                wants = f"{_loc(loc)!r} expects" if loc else "the args expect"
                out.append(Problem(s.id, field, (
                    f"$ref {ref} is {clash[0]} (output of tool {target.name!r}), but "
                    f"{wants} {clash[1]} (tool {reader.name!r})")))

    t = tools.get(s.tool)
    if t is None:
        known = ", ".join(sorted(tools)) or "none"
        out.append(Problem(s.id, "tool", f"unknown tool {s.tool!r} (registered: {known})"))
        return out
    timeout = s.timeout_s if s.timeout_s is not None else t.timeout_s
    # The longest a message stays unacknowledged: a retry's countdown, then an attempt
    # that runs to its hard limit.
    longest = timeout + limits.hard_limit_grace_s + limits.retry_delay_s
    if limits.max_attempt_s is not None and longest >= limits.max_attempt_s:
        where = "timeout_s" if s.timeout_s is not None else f"timeout_s (tool {t.name!r})"
        out.append(Problem(s.id, where, (
            f"{timeout:g} s, plus {limits.hard_limit_grace_s:g} s to the hard limit and a "
            f"retry delay of up to {limits.retry_delay_s:g} s, reaches "
            f"CHORDAL_VISIBILITY_TIMEOUT_S={limits.max_attempt_s:g}: Redis would deliver "
            "the step to a second worker while it runs; lower timeout_s or raise "
            "CHORDAL_VISIBILITY_TIMEOUT_S")))
    reported: set[str] = set()
    # The tool checks (a Python tool with its pydantic model, an MCP tool with its
    # server's JSON Schema); both answer in pydantic's error shape.
    for err in t.check_args(s.args):
        loc, union_at = _data_path(s.args, tuple(err["loc"]))
        # A $ref's value is known only at run time: don't type-check through it, nor
        # through a union that holds one (another branch may accept the value).
        if any(loc[: len(r)] == r for r in ref_locs) or (
                union_at is not None and any(r[: len(union_at)] == union_at
                                             for r in ref_locs)):
            continue
        field = "args." + _loc(loc) if loc else "args"
        if field in reported:
            continue  # another branch of the same union: one problem per field
        reported.add(field)
        msg = "missing" if err["type"] == "missing" else (
            "unexpected argument" if err["type"] == "extra_forbidden" else err["msg"])
        out.append(Problem(s.id, field, f"{msg} (tool {t.name!r})"))
    if s.tool == AGENT_TOOL:
        out.extend(_check_agent(s, tools, limits))
    return out


def _check_agent(s: Step, tools: Mapping[str, Tool], limits: Limits) -> list[Problem]:
    """What an agent step adds to its tool's checks (planner/language/agent_checks.py)."""
    del limits  # its args are bounded as any step's are
    return agent_problems(s, tools)


def _output_schema(step: Step, tool: Tool) -> Mapping[str, Any]:
    """What ``step`` outputs, for the ``$ref``s that read it: an agent's answer is what its
    ``output_schema`` says (else text); any other step's output is its tool's."""
    return agent_output_schema(step) if step.tool == AGENT_TOOL else tool.output_schema


def validate_call(name: str, args: Any, allowed: Collection[str],
                  tools: Mapping[str, Tool], limits: Limits = Limits()) -> list[Problem]:
    """Problems of one tool call an agent step's model asked for, checked before it is
    published (empty: dispatch it). ``allowed`` is the step's ``tools`` list. Each problem
    is said to the model as the call's error result, so it can call again."""
    if name == AGENT_TOOL:
        return [Problem(None, "tool", "an agent cannot call the 'agent' tool: agents do "
                                      "not nest")]
    if name not in allowed:
        return [Problem(None, "tool", f"no tool {name!r} here; this step may call: "
                                      f"{', '.join(sorted(allowed)) or 'nothing'}")]
    if not isinstance(args, Mapping):
        return [Problem(None, "args", "must be a JSON object")]
    unsafe = json_problems(args, limits.max_json_depth)
    if unsafe:
        return [Problem(None, "args." + path if path else "args", what)
                for path, what in unsafe]
    refs = {"args." + _loc(loc) if loc else "args" for loc, _ in iter_refs(args)}
    out = [Problem(None, field, "agent tool calls take plain values, not $refs")
           for field in sorted(refs)]
    # The plan's attempt-length check is the operator's to fix, not the model's: off here.
    call = Step(id="call", tool=name, args=dict(args))
    for p in _check_step(call, {}, tools, replace(limits, max_attempt_s=None)):
        if p.field not in refs:  # a $ref's own problems: already said above
            out.append(Problem(None, p.field, p.message))
    return out


def _data_path(args: Any, loc: tuple[str | int, ...]
               ) -> tuple[tuple[str | int, ...], tuple[str | int, ...] | None]:
    """Split pydantic's error location into the path in the data and, if the location went
    through a union member tag (``list[str]``), the data path where that union sits."""
    path: list[str | int] = []
    union_at: tuple[str | int, ...] | None = None
    current = args
    for position, part in enumerate(loc):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
        elif isinstance(current, Mapping) and position == len(loc) - 1:
            pass  # a missing or unexpected key: it names a place in the data all the same
        else:
            if union_at is None:
                union_at = tuple(path)  # a union member's tag, not a place in the data
            continue
        path.append(part)
    return tuple(path), union_at
