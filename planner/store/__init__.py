"""The run store: every run's state in Redis, changed only by atomic scripts."""

from typing import TYPE_CHECKING, Any

from planner.store.records import (
    FINAL_STEP,
    TERMINAL_RUN,
    ErrorRecord,
    RunEvent,
    RunOptions,
    RunReport,
    RunState,
    RunStatus,
    StepReport,
    StepState,
    StepStatus,
)

if TYPE_CHECKING:
    from planner.store.lost import new_run_id
    from planner.store.runs import Begin, Finish, RunStore

# The typed records are light; the store itself loads the Redis client, so it resolves on
# first use (PEP 562): a reader of records (the CLI's views) does not pay for Redis.
_LAZY = {"Begin": "planner.store.runs", "Finish": "planner.store.runs",
         "RunStore": "planner.store.runs", "new_run_id": "planner.store.lost"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'planner.store' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

__all__ = [
    "FINAL_STEP",
    "TERMINAL_RUN",
    "Begin",
    "ErrorRecord",
    "Finish",
    "RunEvent",
    "RunOptions",
    "RunReport",
    "RunState",
    "RunStatus",
    "RunStore",
    "StepReport",
    "StepState",
    "StepStatus",
    "new_run_id",
]
