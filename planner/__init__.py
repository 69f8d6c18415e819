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
    options        a run's options (RunOptions), the input of every door that makes one
    jsonvalue, wire, settings, errors
"""

from typing import TYPE_CHECKING, Any

# Names resolve on first use (PEP 562): ``import planner`` (and so `chordal --help`) loads
# neither the model SDK nor Celery nor the web framework; a name costs only what it needs.
_EXPORTS: dict[str, str] = {
    "AsyncClient": "planner.remote",
    "BadRequest": "planner.errors",
    "BudgetExceeded": "planner.errors",
    "CalculationError": "planner.errors",
    "ChordalError": "planner.errors",
    "Client": "planner.client",
    "ConfigError": "planner.errors",
    "Conflict": "planner.errors",
    "ErrorRecord": "planner.store.records",
    "InFlight": "planner.errors",
    "InvalidInput": "planner.errors",
    "Limits": "planner.language.validation",
    "load_plan_data": "planner.language.plan",
    "load_registry": "planner.tools",
    "ModelAuthError": "planner.errors",
    "ModelTransientError": "planner.errors",
    "NotFound": "planner.errors",
    "NoWorkerError": "planner.errors",
    "parse_ref": "planner.language.refs",
    "PermanentError": "planner.errors",
    "Plan": "planner.language.plan",
    "plan_json_schema": "planner.language.plan",
    "PlanError": "planner.errors",
    "PlanInvalid": "planner.errors",
    "PlanLoadError": "planner.errors",
    "Problem": "planner.errors",
    "RateLimited": "planner.errors",
    "Ref": "planner.language.refs",
    "RefError": "planner.errors",
    "RemoteClient": "planner.remote",
    "RequestTooLarge": "planner.errors",
    "resolve": "planner.language.refs",
    "RunEvent": "planner.store.records",
    "RunNotFound": "planner.errors",
    "RunOptions": "planner.options",
    "RunReport": "planner.store.records",
    "Settings": "planner.settings",
    "Step": "planner.language.plan",
    "StepReport": "planner.store.records",
    "Tool": "planner.tools",
    "tool": "planner.tools",
    "ToolContext": "planner.tools",
    "ToolError": "planner.errors",
    "ToolRegistry": "planner.tools",
    "TransientError": "planner.errors",
    "Unauthorized": "planner.errors",
    "Unavailable": "planner.errors",
    "UserError": "planner.errors",
    "validate": "planner.language.validation",
    "ValidPlan": "planner.language.validation",
}

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
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
    from planner.options import RunOptions
    from planner.remote import AsyncClient, RemoteClient
    from planner.settings import Settings
    from planner.store.records import ErrorRecord, RunEvent, RunReport, StepReport
    from planner.tools import Tool, ToolContext, ToolRegistry, load_registry, tool


def __getattr__(name: str) -> Any:
    import importlib

    module = _EXPORTS.get(name)
    if module is None:
        # A submodule (``planner.errors``) is an attribute once imported, as with any
        # package; `import planner` alone no longer imports them all, so import it here.
        try:
            value = importlib.import_module(f"planner.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"planner.{name}":
                raise
            raise AttributeError(f"module 'planner' has no attribute {name!r}") from None
        globals()[name] = value
        return value
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "RunOptions",
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
