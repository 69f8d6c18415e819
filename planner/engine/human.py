"""Human decisions: a plan that waits for approval, and a run paused at its budget.

A waiting run holds no worker: its status says why it waits, and the decision (approve,
reject, resume) is a call that records the change, then publishes what may now run.
"""

from __future__ import annotations

from planner.engine.outcomes import go_on
from planner.engine.runtime import Runtime
from planner.engine.start import request_plan, start_run
from planner.errors import Conflict
from planner.language.plan import Plan
from planner.store.records import ErrorRecord, RunOptions
from planner.vocabulary import RunStatus, StepStatus


def approve(rt: Runtime, run_id: str, edited: Plan | None = None) -> None:
    """Start a run that waits for approval; ``edited`` (validated by the caller) replaces
    its plan first, as a new plan version."""
    run = rt.store.run_state(run_id)
    if run.status != RunStatus.AWAITING_APPROVAL:
        raise Conflict(f"run {run_id!r} is {run.status}, not awaiting approval")
    if edited is not None:
        install = rt.store.install_plan(run_id, run.version + 1, edited,
                                        reason="edited before approval")
        if install.state != "ok":
            raise Conflict(f"run {run_id!r} changed while it was approved; look again")
    if not rt.store.set_status(run_id, RunStatus.PENDING, "approved",
                               from_=(RunStatus.AWAITING_APPROVAL,)):
        raise Conflict(f"run {run_id!r} is no longer awaiting approval")
    start_run(rt, run_id)


def reject(rt: Runtime, run_id: str, reason: str | None = None) -> None:
    """End a run that waits for approval, ``cancelled``; nothing of it ran."""
    run = rt.store.run_state(run_id)
    if run.status != RunStatus.AWAITING_APPROVAL or not rt.store.finish_run(
            run_id, RunStatus.CANCELLED, error=ErrorRecord(
                type="Rejected", message=f"plan rejected: {reason or 'no reason given'}")):
        raise Conflict(f"run {run_id!r} is {run.status}, not awaiting approval")


def retry(rt: Runtime, run_id: str, step_id: str | None = None) -> list[str]:
    """Re-drive a failed or cancelled run from where it stopped, keeping what it earned:
    ``step_id``, or every failed or cancelled step of its current version, runs again
    (with its attempts counted afresh). Returns the steps re-driven."""
    run = rt.store.run_state(run_id)
    states = rt.store.step_states(run_id)
    if run.version == 0:
        chosen: list[str] = []
    elif step_id is not None:
        chosen = [step_id]
    else:
        held = rt.compiled(run_id, run.version).deps
        chosen = sorted(s for s in held
                        if states.get(s) is not None
                        and states[s].status in (StepStatus.FAILED, StepStatus.CANCELLED))
    version = rt.store.retry_run(run_id, chosen)
    if version == 0:
        request_plan(rt, run_id)  # it failed while planning: plan again
    else:
        go_on(rt, run_id)
    return chosen


def pause(rt: Runtime, run_id: str, reason: str) -> bool:
    """Stop starting new steps (running ones finish) and wait for ``resume``."""
    return rt.store.set_status(run_id, RunStatus.PAUSED, reason, from_=(RunStatus.RUNNING,))


def resume(rt: Runtime, run_id: str, budget_tokens: int | None = None,
           budget_usd: float | None = None) -> None:
    """Go on with a paused run, with a new budget (unset parts keep theirs)."""
    run = rt.store.run_state(run_id)
    if run.status != RunStatus.PAUSED:
        raise Conflict(f"run {run_id!r} is {run.status}, not paused")
    options = rt.store.options(run_id)
    update = {k: v for k, v in (("budget_tokens", budget_tokens),
                                ("budget_usd", budget_usd)) if v is not None}
    rt.store.update_options(run_id, RunOptions.model_validate({**options.model_dump(),
                                                               **update}))
    if not rt.store.set_status(run_id, RunStatus.RUNNING, "resumed", from_=(RunStatus.PAUSED,)):
        raise Conflict(f"run {run_id!r} is no longer paused")
    go_on(rt, run_id)
