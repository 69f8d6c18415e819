"""The run store: every run's state in Redis, changed only by atomic scripts."""

from planner.store.lost import new_run_id
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
from planner.store.runs import Begin, Finish, RunStore

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
