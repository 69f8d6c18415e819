"""The API's request and response bodies (docs/api.md), as pydantic models: FastAPI checks
requests against them and publishes them in ``/openapi.json``.

Requests are strict (``"5"`` is not an integer, ``"true"`` not a boolean) and forbid unknown
fields, so a typo is a 422 naming the field instead of an option silently ignored. An
integral number is an integer, as JSON Schema says (``1.0`` is ``1``): clients whose JSON
has one number type send it so. Reports,
summaries and events are the store's own records (``planner.store.records``), unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from planner.language.plan import Plan
from planner.options import RunOptions
from planner.store.records import RunEvent, RunStatus, RunSummary

Role = Literal["planner", "replanner", "executor", "synthesizer"]
ModelId = Annotated[str, Field(min_length=1, max_length=200)]


def _integral(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: A request's integers take ``1.0`` too, as the schema's ``integer`` means. (After the
#: bounds in ``Annotated``: before them, pydantic cannot publish the bounds.)
INTEGRAL = BeforeValidator(_integral)
Tokens = Annotated[int, Field(ge=1, le=10**12), INTEGRAL]


class PlanSchema:
    """A plan field: published as the plan's JSON Schema (``chordal schema``), validated as a
    plan file is (by the Client's compile: one ``PlanInvalid`` naming each step's
    problems, the same from the CLI, a Client and here)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core: CoreSchema, handler: GetJsonSchemaHandler
                                     ) -> JsonSchemaValue:
        plan = Plan.__pydantic_core_schema__
        # By reference (``#/components/schemas/Plan``, as the plan-versions endpoint
        # answers it), not a copy.
        return handler(core_schema.definitions_schema(
            core_schema.definition_reference_schema(plan["ref"]), [plan]))


PlanBody = Annotated[dict[str, Any], PlanSchema]


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class CreateRun(Request):
    """``POST /v1/runs``: a goal for the planner model, or a plan; and run options."""

    # Exactly one of goal and plan, said in the schema too (the handler checks it).
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["goal"]},
                                                           {"required": ["plan"]}]})

    goal: str | None = Field(None, min_length=1, description="What to do; the planner model "
                                                             "plans it (give goal or plan).")
    plan: PlanBody | None = Field(None, description="A plan (`chordal schema`), validated "
                                                    "like a plan file.")
    approve: bool = Field(False, description="Wait in awaiting_approval until approved.")
    budget_tokens: Tokens | None = None
    budget_usd: float | None = Field(None, gt=0, le=10**9, allow_inf_nan=False)
    on_budget: Literal["stop", "pause"] = "stop"
    max_replans: Annotated[int, Field(ge=0, le=100), INTEGRAL] | None = None
    checkpoint_all: bool = False
    models: dict[Role, ModelId] = Field(default_factory=dict,
                                        description="Model per role, for this run.")
    callback_url: str | None = Field(None, min_length=1, max_length=2_048,
                                     description="Where the final report is POSTed; its "
                                                 "host must be in CHORDAL_CALLBACK_ALLOW.")

    def options(self, owner: str | None) -> RunOptions:
        """The run's options, as every door takes them (the caller's key names its
        owner; over HTTP a role takes only a model)."""
        return RunOptions(
            roles={role: {"model": model} for role, model in self.models.items()},
            budget_tokens=self.budget_tokens, budget_usd=self.budget_usd,
            on_budget=self.on_budget, max_replans=self.max_replans, approve=self.approve,
            checkpoint_all=self.checkpoint_all, owner=owner, callback_url=self.callback_url)


class ApproveRun(Request):
    plan: PlanBody | None = Field(None, description="An edited plan to run instead.")


class RejectRun(Request):
    reason: str | None = Field(None, max_length=4_096)


class ResumeRun(Request):
    budget_tokens: Tokens | None = None
    budget_usd: float | None = Field(None, gt=0, le=10**9, allow_inf_nan=False)


class RetryRun(Request):
    step: str | None = Field(None, min_length=1, max_length=64,
                             description="Only this step (default: every failed or "
                                         "cancelled step).")


class Links(BaseModel):
    self: str
    events: str
    page: str


class RunCreated(BaseModel):
    run_id: str
    status: RunStatus
    links: Links


class RunList(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null "
                                                "at the end.")


class RunStatusReply(BaseModel):
    run_id: str
    status: RunStatus


class RetryReply(RunStatusReply):
    steps: list[str]


class ToolInfo(BaseModel):
    name: str
    description: str
    queue: str
    max_retries: int
    timeout_s: float | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]


class ToolList(BaseModel):
    tools: list[ToolInfo]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "unready"]
    redis: bool
    missing_queues: list[str]
    message: str | None = None


class ProblemItem(BaseModel):
    step: str | None
    field: str
    message: str


class ErrorDetail(BaseModel):
    type: str
    message: str
    problems: list[ProblemItem] | None = None


class ErrorBody(BaseModel):
    """Every error: ``{"error": {"type", "message", "problems"?}}``."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses an operation may answer, for ``/openapi.json``."""
    words = {400: "Not JSON", 401: "No API key, or a wrong one", 404: "Not found, or not "
             "yours", 409: "Conflict with the run's state", 413: "Body over "
             "CHORDAL_MAX_REQUEST_BYTES", 422: "Invalid input; names the field",
             429: "Rate limited (see Retry-After)", 503: "Redis or the broker unavailable"}
    return {s: {"model": ErrorBody, "description": words[s]} for s in statuses}


#: A run's event id: ``<ms>-<seq>`` (``<ms>`` alone is ``<ms>-0``, as Redis reads it).
EVENT_ID = r"^[0-9]{1,20}(-[0-9]{1,20})?$"
#: ``next_cursor``: the last run's creation time (seconds) and its id.
CURSOR = r"^[0-9]{1,17}(\.[0-9]{1,17})?:.{1,128}$"


def event_stream() -> dict[int | str, dict[str, Any]]:
    """The 200 of an event stream for ``/openapi.json``: each event (OpenAPI 3.1: the
    media type's schema describes one event) has an ``id``, an ``event`` (its type) and
    ``data``, a :class:`RunEvent` as JSON."""
    event = {"type": "object", "required": ["id", "event", "data"], "properties": {
        "id": {"type": "string", "pattern": EVENT_ID},
        "event": {"type": "string"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": RunEvent.model_json_schema(mode="serialization")}}}
    return {200: {"description": "Server-Sent Events, ending after the run ended and every "
                                 "event was sent; `: keep-alive` comments while quiet.",
                  "content": {"text/event-stream": {"schema": event}}}}


def run_links(operations: dict[str, str]) -> dict[str, Any]:
    """OpenAPI links from a made run to the operations on it (their operationIds by name):
    what a client (and schemathesis's stateful tests) does next with ``run_id``."""
    return {name: {"operationId": op, "parameters": {"run_id": "$response.body#/run_id"}}
            for name, op in operations.items()}
