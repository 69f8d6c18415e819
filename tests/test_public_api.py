"""The public API is what ``planner`` exports, pinned here so a change to it is deliberate;
and the planner side loads no worker code."""

from __future__ import annotations

import subprocess
import sys

import planner
import planner.errors

PUBLIC = {
    # what apps and tool authors import
    "Client", "RemoteClient", "AsyncClient", "RunOptions",
    "Settings", "Plan", "Step", "tool", "Tool", "ToolContext", "ToolRegistry",
    "load_registry", "validate", "ValidPlan", "Limits", "load_plan_data", "plan_json_schema",
    "Ref", "parse_ref", "resolve", "RunReport", "StepReport", "RunEvent", "ErrorRecord",
    # the error tree
    "ChordalError", "UserError", "InvalidInput", "PlanError", "PlanLoadError", "PlanInvalid",
    "Problem", "RefError", "ConfigError", "NotFound", "RunNotFound", "Conflict", "InFlight",
    "Unavailable", "NoWorkerError", "BadRequest", "RequestTooLarge", "Unauthorized",
    "RateLimited", "ToolError", "TransientError", "PermanentError",
    "ModelTransientError", "ModelAuthError", "BudgetExceeded", "CalculationError",
}


def test_public_api_is_pinned():
    assert set(planner.__all__) == PUBLIC
    for name in planner.__all__:
        assert getattr(planner, name) is not None


def test_every_exception_is_in_the_one_tree_and_drawn_in_its_docstring():
    classes = [v for v in vars(planner.errors).values()
               if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) >= 20
    doc = planner.errors.__doc__ or ""
    for cls in classes:
        assert issubclass(cls, planner.errors.ChordalError), cls
        assert cls.__name__ in doc, f"{cls.__name__} is not drawn in planner/errors.py"
        assert cls.__name__ in planner.__all__, f"{cls.__name__} is not exported"


def test_user_errors_map_to_statuses_and_tool_signals_stay_apart():
    e = planner.errors
    assert e.InvalidInput.http_status == 422 and e.PlanInvalid.http_status == 422
    assert e.RunNotFound.http_status == 404 and e.Conflict.http_status == 409
    assert e.NoWorkerError.http_status == 503
    assert (e.BadRequest.http_status, e.Unauthorized.http_status,
            e.RequestTooLarge.http_status, e.RateLimited.http_status) == (400, 401, 413, 429)
    assert all(c.exit_code == 2 for c in (e.InvalidInput, e.ConfigError, e.NotFound,
                                          e.Conflict, e.Unavailable))
    for signal in (e.TransientError, e.PermanentError, e.BudgetExceeded,
                   e.ModelTransientError, e.ModelAuthError, e.CalculationError):
        assert not issubclass(signal, e.UserError)
        assert issubclass(signal, e.ToolError)


def test_the_planner_side_loads_no_worker_code():
    code = ("import planner, planner.client, planner.cli, sys; "
            "loaded = [m for m in sys.modules if m.startswith('workers')]; "
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
