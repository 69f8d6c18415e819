"""Chordal: plan-and-execute LLM agents that run on Celery.

The public API; everything else in ``planner`` is an implementation detail. The layers,
top to bottom (each imports only those below it; see docs/architecture.md):

    cli            the ``chordal`` command
    client         submit, follow, cancel runs
    remote         the same over HTTP, for apps without Redis (Client.from_url, AsyncClient)
    engine         the control plane's decisions, and the messages they publish
    store          the run store in Redis (runs, steps, events), typed records
    llm            the model and its roles
    language       the plan language: plans, $refs, graphs, validation
    tools          the tool contract (@tool, ToolContext, the registry)
    jsonvalue, wire, settings, errors
"""

from planner.client import Client
from planner.errors import (
    BadRequest,
    BudgetExceeded,
    CalculationError,
    ChordalError,
    ConfigError,
    Conflict,
    InFlight,
    InvalidInput,
    ModelAuthError,
    ModelTransientError,
    NotFound,
    NoWorkerError,
    PermanentError,
    PlanError,
    PlanInvalid,
    PlanLoadError,
    Problem,
    RateLimited,
    RefError,
    RequestTooLarge,
    RunNotFound,
    ToolError,
    TransientError,
    Unauthorized,
    Unavailable,
    UserError,
)
from planner.language.plan import Plan, Step, load_plan_data, plan_json_schema
from planner.language.refs import Ref, parse_ref, resolve
from planner.language.validation import Limits, ValidPlan, validate
from planner.remote import AsyncClient, RemoteClient
from planner.settings import Settings
from planner.store.records import ErrorRecord, RunEvent, RunReport, StepReport
from planner.tools import Tool, ToolContext, ToolRegistry, load_registry, tool

__all__ = [
    "AsyncClient",
    "BadRequest",
    "BudgetExceeded",
    "CalculationError",
    "ChordalError",
    "Client",
    "ConfigError",
    "Conflict",
    "ErrorRecord",
    "InFlight",
    "InvalidInput",
    "Limits",
    "ModelAuthError",
    "ModelTransientError",
    "NoWorkerError",
    "NotFound",
    "PermanentError",
    "Plan",
    "PlanError",
    "PlanInvalid",
    "PlanLoadError",
    "Problem",
    "RateLimited",
    "Ref",
    "RefError",
    "RemoteClient",
    "RequestTooLarge",
    "RunEvent",
    "RunNotFound",
    "RunReport",
    "Settings",
    "Step",
    "StepReport",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "TransientError",
    "Unauthorized",
    "Unavailable",
    "UserError",
    "ValidPlan",
    "load_plan_data",
    "load_registry",
    "parse_ref",
    "plan_json_schema",
    "resolve",
    "tool",
    "validate",
]
