"""Replanning: a step with ``on_failure="replan"`` failed for good, and the run adapts.

One replanner at a time per plan version (a claim in the run store); a failure noted while
it thinks is taken up by the next one, never lost. Nothing earned or in flight is thrown
away, and nothing waits for the replanner that does not need to: steps that do not read a
failed step keep running while it thinks. The new version is installed atomically from the
step states of the moment (``install_plan.lua``): completed and running steps are kept as
they are; steps not started are kept only if the replanner lists them again. Bounded by
``max_replans``; past it, or when the replanner cannot produce a valid plan, the run ends
``failed`` with a partial answer written from what it earned.
"""

from __future__ import annotations

from typing import Any

from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import replan_message
from planner.engine.outcomes import Retry, dispatch, end_failed, go_on, model_retry
from planner.engine.runtime import Runtime
from planner.errors import ChordalError
from planner.language.plan import Step
from planner.llm.planning import preview
from planner.llm.planning import replan as replan_with_model
from planner.store.records import (
    EARNED_STEP,
    REPLAN_REASONS,
    ErrorRecord,
    PlanVersion,
    StepState,
)
from planner.vocabulary import StepStatus


def replan(rt: Runtime, run_id: str, step_id: str, version: int,
           retries: int = 0, holder: str | None = None) -> Retry | None:
    """Handle every failure noted in the run's current version (``step_id`` and
    ``version`` say which failure sent this; the run's state decides). ``holder``: the
    task's id, so a redelivery of this task may take its own claim again."""
    run = rt.store.run_state(run_id)
    if not run.active:
        return None
    if run.streaming:
        # The plan is still being written: its final install wakes a replanner for the
        # failures noted meanwhile (they stay noted).
        return None
    current = run.version
    claim = f"replan:{current}"
    if not rt.store.claim(run_id, claim, holder or step_id, reentrant=holder is not None):
        return None  # a replanner is at work on this version: it takes this failure up
    failures = rt.store.unhandled(run_id)
    if not failures:
        rt.store.release(run_id, claim)  # handled already; let a later failure claim it
        # A replanner that died after its install, before publishing: publish now.
        go_on(rt, run_id)
        return None
    compiled = rt.compiled(run_id, current)
    states = rt.store.step_states(run_id)
    causes = {f: states.get(f, StepState()).error for f in failures}
    why = "; ".join(f"step {f!r} failed: {c.message if c else 'no error recorded'}"
                    for f, c in causes.items())

    history = rt.store.versions(run_id)
    done = replans_so_far(history)
    limit = max_replans(rt, run_id, compiled)
    if done >= limit:
        end_failed(rt, run_id, ErrorRecord(
            type="ReplanLimit", step=failures[0], policy="replan",
            message=f"{why}; the run has replanned {done} time(s), its limit "
                    f"(max_replans={limit})", completed=rt.store.completed(run_id)))
        return None
    metered = rt.metered(run_id)
    if metered is None:
        end_failed(rt, run_id, ErrorRecord(
            type="StepFailed", step=failures[0], policy="replan",
            cause=causes[failures[0]], completed=rt.store.completed(run_id),
            message=f"{why}; replanning needs a model (set ANTHROPIC_API_KEY or "
                    "CHORDAL_LLM), so the run ends with what it earned"))
        return None

    kept, context, forbidden = situation(rt, run_id, compiled, states, failures, history)
    try:
        outcome = replan_with_model(metered, rt.settings, rt.tools, compiled.plan.goal,
                                    context, kept, forbidden, metered.options.roles)
    except ChordalError as exc:
        retry = model_retry(rt.settings, exc, retries)
        if retry is not None:
            rt.store.release(run_id, claim)
            return retry
        end_failed(rt, run_id, ErrorRecord(type=type(exc).__name__, step=failures[0],
                                           message=f"replanner: {exc}"))
        return None
    if outcome.plan is None:
        error = outcome.error()
        error["message"] = f"{why}; the replanner's {error['message'].removeprefix('the ')}"
        end_failed(rt, run_id, ErrorRecord.model_validate({**error, "step": failures[0]}))
        return None

    install = rt.store.install_plan(run_id, current + 1, outcome.plan, reason="replan",
                                    failed=failures)
    if install.state != "ok":
        # Another version (a checkpoint's revision) was installed meanwhile: the failures
        # it still holds are replanned against it.
        rt.store.release(run_id, claim)
        wake_replanner(rt, run_id)
        return None
    new = rt.compiled(run_id, current + 1)
    dispatch(rt, new, run_id, current + 1, install.ready, install.remaining == 0)
    wake_replanner(rt, run_id)
    return None


def wake_replanner(rt: Runtime, run_id: str) -> None:
    """After an install: failures noted meanwhile (while a replanner or a review thought)
    are taken up by the next replan of the current version."""
    failures = rt.store.unhandled(run_id)
    run = rt.store.run_state(run_id)
    if failures and run.active:
        rt.publish([replan_message(run_id, failures[0], run.version)])


def replans_so_far(history: list[PlanVersion]) -> int:
    """Versions installed by a replan or by a checkpoint's revision."""
    return sum(1 for v in history if v.reason in REPLAN_REASONS)


def max_replans(rt: Runtime, run_id: str, compiled: CompiledPlan) -> int:
    """The run's bound: its option, else its plan's, else the setting."""
    option = rt.store.options(run_id).max_replans
    if option is not None:
        return option
    if compiled.plan.max_replans is not None:
        return compiled.plan.max_replans
    return rt.settings.engine.max_replans


def situation(rt: Runtime, run_id: str, compiled: CompiledPlan,
               states: dict[str, StepState], failures: list[str],
               history: list[PlanVersion]) -> tuple[list[Step], dict[str, Any], dict[str, str]]:
    """What stays (completed and in-flight steps), what the replanner is shown, and the ids
    a new step may not take."""
    plan = compiled.plan

    def state(sid: str) -> StepState:
        return states.get(sid, StepState())

    earned = [s for s in plan.steps if state(s.id).status in EARNED_STEP]
    # In flight: running, or waiting for a retry's countdown (it has started).
    flying = [s for s in plan.steps if state(s.id).status == StepStatus.RUNNING
              or (state(s.id).status == StepStatus.PENDING and state(s.id).attempts > 0)]
    blocked: set[str] = set()
    frontier = list(failures)
    while frontier:
        for child in compiled.dependents.get(frontier.pop(), []):
            if child not in blocked:
                blocked.add(child)
                frontier.append(child)
    kept_ids = {s.id for s in earned + flying}
    not_started = [s for s in plan.steps
                   if s.id not in kept_ids and s.id not in failures]
    outputs = rt.store.outputs(run_id, [s.id for s in earned])
    context: dict[str, Any] = {
        "goal": plan.goal,
        "plan_version": max((v.version for v in history), default=1),
        "current_plan": plan.model_dump(mode="json"),
        "completed_steps": [{"id": s.id, "description": s.description, "tool": s.tool,
                             "status": state(s.id).status,
                             "output": preview(outputs.get(s.id)),
                             # a step skipped after failing says why
                             **({"error": _dump(state(s.id).error)}
                                if state(s.id).status == StepStatus.SKIPPED else {})}
                            for s in earned],
        "running_steps": [{"id": s.id, "description": s.description, "tool": s.tool}
                          for s in flying],
        "failed_steps": [{"id": f, "description": plan.step(f).description,
                          "tool": plan.step(f).tool, "args": plan.step(f).args,
                          "error": _dump(state(f).error)} for f in failures],
        "cannot_run": sorted(blocked),
        "not_started": [s.id for s in not_started],
        "earlier_replans": [v.model_dump(mode="json") for v in history
                            if v.reason in REPLAN_REASONS],
    }
    # A new step may not take the id of any step the current version does not hold (its
    # state, even a late result, belongs to that other step), nor of a failed one.
    forbidden: dict[str, str] = {sid: st.status for sid, st in states.items()
                                 if sid not in compiled.deps or st.status == StepStatus.FAILED}
    return earned + flying, context, forbidden


def _dump(error: ErrorRecord | None) -> Any:
    return error.model_dump(mode="json") if error else None
