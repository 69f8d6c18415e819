"""Replanning: what a run does when a step with ``on_failure="replan"`` fails for good.

Called once per plan version (a claim in the run store). Replanning with the model is not
wired in yet (``planner.llm.planning.replan`` builds the call): the run ends as failed with
a report of what failed and what was earned.
"""

from __future__ import annotations

from planner.engine.runtime import Runtime
from planner.store.records import ErrorRecord


def replan(rt: Runtime, run_id: str, step_id: str, version: int) -> None:
    if not rt.store.claim(run_id, f"replan:{version}", step_id):
        return  # an earlier failure in this plan version is being handled
    failed = rt.store.step_state(run_id, step_id)
    rt.store.finish_run(run_id, "failed", error=ErrorRecord(
        type="StepFailed", step=step_id, policy="replan",
        message=f"step {step_id!r} failed; replanning is not available yet, so the run "
                "ends with what it earned",
        cause=failed.error.model_dump(mode="json") if failed.error else None,
        completed=rt.store.completed(run_id)))
