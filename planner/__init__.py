"""Chordal: plan-and-execute LLM agents that run on Celery.

The public API; everything else in ``planner`` is an implementation detail.
"""

from planner.errors import (
    ChordalError,
    ConfigError,
    NoWorkerError,
    PermanentError,
    PlanError,
    PlanInvalid,
    PlanLoadError,
    Problem,
    RefError,
    RunNotFound,
    ToolError,
    TransientError,
)
from planner.plan import Plan, Step, load_plan_data, plan_json_schema
from planner.refs import Ref, parse_ref, resolve
from planner.settings import Settings
from planner.validation import Limits, ValidPlan, validate

__all__ = [
    "ChordalError",
    "ConfigError",
    "Limits",
    "NoWorkerError",
    "PermanentError",
    "Plan",
    "PlanError",
    "PlanInvalid",
    "PlanLoadError",
    "Problem",
    "Ref",
    "RefError",
    "RunNotFound",
    "Settings",
    "Step",
    "ToolError",
    "TransientError",
    "ValidPlan",
    "load_plan_data",
    "parse_ref",
    "plan_json_schema",
    "resolve",
    "validate",
]
