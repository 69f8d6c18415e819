"""The plan: a goal and a DAG of steps, each a tool call. A public wire format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from planner.errors import PlanLoadError
from planner.language.refs import STEP_ID_PATTERN, referenced_steps, with_json_refs

OnFailure = Literal["replan", "skip", "fail"]


class Step(BaseModel):
    """One tool call. ``args`` may hold ``{"$ref": "step.path"}`` anywhere in its tree."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=f"^{STEP_ID_PATTERN}$",
                    description="Short slug, unique in the plan (letters, digits, _ and -).")
    description: str = Field("", description="What this step is for, in a sentence.")
    tool: str = Field(min_length=1, description="Name of a registered tool.")
    args: dict[str, Any] = Field(default_factory=dict,
                                 description="The tool's arguments; values may be $refs.")
    depends_on: list[str] = Field(default_factory=list,
                                  description="Ids of steps that must finish first. "
                                              "A $ref implies a dependency already.")
    on_failure: OnFailure = Field("replan", description="What a permanent failure does.")
    max_retries: int | None = Field(None, ge=0, le=100,
                                    description="Retries of transient errors (tool default).")
    timeout_s: float | None = Field(None, gt=0, le=86_400,
                                    description="Seconds before an attempt times out.")
    checkpoint: bool = Field(False, description="After this step succeeds, the replanner "
                                                "reviews the plan before the steps that "
                                                "depend on it start.")

    # A plan built in Python may hold Ref objects in its args: they are held, and
    # written, as the {"$ref": ...} they stand for.
    @field_validator("args", mode="before")
    @classmethod
    def _refs_as_json(cls, args: Any) -> Any:
        return with_json_refs(args)

    @field_serializer("args")
    def _dump_refs_as_json(self, args: dict[str, Any]) -> dict[str, Any]:
        return dict(with_json_refs(args))  # a Ref put in after the step was made

    def dependencies(self) -> set[str]:
        """Every step this one waits for: ``depends_on`` plus the steps its refs read."""
        return set(self.depends_on) | referenced_steps(self.args)


class Plan(BaseModel):
    """A goal and the steps that reach it."""

    model_config = ConfigDict(extra="forbid")

    goal: str = Field(description="What the plan is for, in the user's words.")
    steps: list[Step] = Field(min_length=1)
    max_replans: int | None = Field(None, ge=0, le=100,
                                    description="Most replans of a run of this plan "
                                                "(default: CHORDAL_MAX_REPLANS).")
    synthesize: bool | None = Field(
        None, description="Whether the synthesizer model writes the run's answer from the "
                          "step outputs (default: yes for a run from a goal; for a plan "
                          "file, no: the answer is the last steps' outputs).")

    def step(self, step_id: str) -> Step:
        return next(s for s in self.steps if s.id == step_id)

    def dependencies(self) -> dict[str, set[str]]:
        return {s.id: s.dependencies() for s in self.steps}


def plan_json_schema() -> dict[str, Any]:
    return Plan.model_json_schema()


def load_plan_data(path: str | Path) -> dict[str, Any]:
    """Read a plan file as a JSON object; :class:`PlanLoadError` with one clear line otherwise."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanLoadError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise PlanLoadError(f"{p}: is a directory, not a plan file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanLoadError(f"{p}: cannot read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanLoadError(f"{p}: not JSON: {exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}") from None
    except RecursionError:
        raise PlanLoadError(f"{p}: nested too deep to be a plan") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise PlanLoadError(f"{p}: not a usable JSON value: {exc}") from None
    if not isinstance(data, dict):
        raise PlanLoadError(f"{p}: a plan is a JSON object with 'goal' and 'steps', "
                            f"not a JSON {type(data).__name__}")
    return data
