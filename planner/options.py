"""A run's options: the one input object of every door that makes a run (``Client.submit``,
``submit_goal``, the HTTP clients, ``POST /v1/runs``, ``chordal run``), recorded with the
run. Below the store and the clients alike, so an HTTP client gets it without the Redis
side."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.errors import InvalidInput

OnBudget = Literal["stop", "pause"]


class RunOptions(BaseModel):
    """Per-run overrides of settings, recorded with the run:
    ``client.submit(plan, RunOptions(budget_usd=0.5, approve=True))``."""

    # A misspelt option is an error naming it, not a silent default. Reading a run's
    # recorded options is lenient instead (:meth:`stored`).
    model_config = ConfigDict(extra="forbid")

    #: Overrides per role (model, max_tokens, temperature), e.g.
    #: ``{"planner": {"model": "claude-sonnet-5-5"}}``; over HTTP, only a model.
    roles: dict[str, dict[str, Any]] = Field(default_factory=dict)
    budget_tokens: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(None, gt=0)
    #: What crossing the budget does: end the run with its partial results, or pause it
    #: until ``chordal resume`` gives it a new budget.
    on_budget: OnBudget = "stop"
    #: Most replans of this run (None: the plan's ``max_replans``, else the setting).
    max_replans: int | None = Field(None, ge=0, le=100)
    #: Stop after planning, in ``awaiting_approval``, until ``chordal approve``.
    approve: bool = False
    #: Every step is a checkpoint (the replanner reviews after each one).
    checkpoint_all: bool = False
    #: Who created the run (the API key's name over HTTP; None from the CLI and Client).
    owner: str | None = None
    #: POSTed the final report, signed, when the run ends.
    callback_url: str | None = None
    #: Whether the synthesizer writes the answer (when the workers have a model). For a
    #: plan, None is the plan's ``synthesize`` (a goal's run always has one); in a run
    #: recorded before this option, None is: whenever there is a model.
    synthesize: bool | None = None
    #: Created with a plan (not a goal): never sent to the planner model. Set by
    #: ``create_run``; a run that has it and no plan lost its plan to a crash.
    from_plan: bool = False

    def __init__(self, **data: Any) -> None:
        # A bad or misspelt option is a user error of the one tree (InvalidInput, naming
        # it), as from every other door, not a bare pydantic ValidationError.
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise invalid(exc) from None

    @classmethod
    def stored(cls, raw: str | bytes) -> RunOptions:
        """A run's recorded options. Read by every process of a deployment, old and new
        alike during a rolling upgrade: an option a newer release added is left out, not
        a reason to fail reading the run."""
        data = json.loads(raw)
        return cls.model_validate({k: v for k, v in data.items() if k in cls.model_fields})

    @classmethod
    def checked(cls, **fields: Any) -> RunOptions:
        """The constructor, for input that is not typed (the CLI's flags): a bad value is
        :class:`InvalidInput` naming the option, as the constructor raises it."""
        return cls(**fields)


def invalid(exc: ValidationError) -> InvalidInput:
    """A ``ValidationError`` of options as the one line a caller is shown."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "options"
    return InvalidInput(f"{field}: {first['msg']}")


__all__ = ["OnBudget", "RunOptions"]
