"""Checkpoints: is the plan still right?

A step with ``"checkpoint": true`` (or every step, with the run option ``checkpoint_all``)
holds its dependents when it succeeds; the replanner role reviews the goal, the results so
far and the remaining plan, and answers ``continue_plan`` (the dependents go) or
``submit_plan`` (the revised remainder, installed exactly as a replan). Only the
checkpoint's descendants wait for the verdict; other branches keep running. A review that
cannot be had (no model, the model failing, replans spent) goes on as planned.
"""

from __future__ import annotations

import logging

from planner.engine.outcomes import Retry, after_finish, dispatch, model_retry, recover
from planner.engine.replan import max_replans, replans_so_far, situation, wake_replanner
from planner.engine.runtime import Runtime
from planner.errors import ChordalError
from planner.llm.planning import preview
from planner.llm.planning import replan as ask_replanner
from planner.store.records import StepState
from planner.vocabulary import StepStatus

log = logging.getLogger("chordal.engine")


def review(rt: Runtime, run_id: str, step_id: str, version: int,
           retries: int = 0, holder: str | None = None) -> Retry | None:
    run = rt.store.run_state(run_id)
    if not run.active or run.version != version:
        return None  # over, waiting, or replanned since: the new version does not hold it
    claim = f"review:{version}:{step_id}"
    if not rt.store.claim(run_id, claim, holder or step_id, reentrant=holder is not None):
        return None
    compiled = rt.compiled(run_id, version)
    history = rt.store.versions(run_id)
    metered = rt.metered(run_id)
    if metered is None or replans_so_far(history) >= max_replans(rt, run_id, compiled):
        _go_on(rt, run_id, step_id, version)
        return None
    states = rt.store.step_states(run_id)
    # The reviewer judges the plan from everything so far, failures included (a skipped
    # failure, or one whose replan waits behind this review).
    failed = [sid for sid in compiled.deps
              if states.get(sid, StepState()).status == StepStatus.FAILED]
    kept, context, forbidden = situation(rt, run_id, compiled, states, failed, history)
    context["checkpoint"] = {"id": step_id,
                             "description": compiled.step(step_id).description,
                             "output": preview(rt.store.outputs(run_id, [step_id])
                                               .get(step_id))}
    try:
        outcome = ask_replanner(metered, rt.settings, rt.tools, compiled.plan.goal, context,
                                kept, forbidden, metered.options.roles, checkpoint=True)
    except ChordalError as exc:
        retry = model_retry(rt.settings, exc, retries)
        if retry is not None:
            rt.store.release(run_id, claim)
            return retry
        log.warning("run %s: review of %s failed (%s); going on as planned", run_id,
                    step_id, exc)
        _go_on(rt, run_id, step_id, version)
        return None
    if outcome.go_on or outcome.plan is None:
        _go_on(rt, run_id, step_id, version)
        return None
    install = rt.store.install_plan(run_id, version + 1, outcome.plan, reason="checkpoint",
                                    failed=failed)
    if install.state == "ok":
        dispatch(rt, rt.compiled(run_id, version + 1), run_id, version + 1, install.ready,
                 install.remaining == 0)
        wake_replanner(rt, run_id)
    return None


def _go_on(rt: Runtime, run_id: str, step_id: str, version: int) -> None:
    released = rt.store.release_step(run_id, step_id, version)
    if released.state == "ok":
        after_finish(rt, run_id, step_id, released)
    else:
        # Released already (this review is a redelivery of one that died before it
        # published): publish what the release made ready, once more, idempotently.
        recover(rt, rt.compiled(run_id, version), run_id, version, step_id, StepStatus.SUCCEEDED)
