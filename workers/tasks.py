"""The tasks: a step, the join, and the failure callbacks.

Messages carry ids only (run, step, plan version); everything else is read from the run
store. Steps may run more than once (at-least-once delivery): the run store makes a
finished step final, so a redelivered message never runs a succeeded step again.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from planner.compiler import STEP_TASK, CompiledPlan, Mode
from planner.errors import PermanentError, RefError, ToolError, TransientError
from planner.refs import referenced_steps, resolve
from planner.store import Finish
from workers.app import app
from workers.runtime import Runtime, runtime
from workers.tools.registry import DEFAULT_QUEUE, ToolContext

log = logging.getLogger("chordal.worker")


def backoff_s(rt: Runtime, attempt: int) -> float:
    """Exponential backoff with jitter: base * 2**(attempt-1), capped, times 0.5-1.0."""
    ceiling = min(rt.settings.retry_backoff_max_s,
                  rt.settings.retry_backoff_s * 2 ** (attempt - 1))
    return float(ceiling * (0.5 + random.random() / 2))  # noqa: S311 (jitter, not crypto)


def _error(exc: BaseException, kind: type[ToolError], attempt: int) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc)[:4_000],
            "transient": kind is TransientError, "attempt": attempt}


def publish(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int,
            ready: tuple[str, ...] | list[str], finalize: bool) -> None:
    if ready:
        compiled.ready_canvas(app, run_id, version, list(ready)).apply_async()
    if finalize:
        compiled.finalize_signature(app, run_id, version).apply_async()


def _after_finish(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int,
                  finish: Finish, mode: Mode) -> None:
    if mode == "dataflow" and finish.state == "ok":
        publish(rt, compiled, run_id, version, finish.ready, finish.remaining == 0)


@app.task(name=STEP_TASK, bind=True, max_retries=None)
def run_step(self: Task, run_id: str, step_id: str, version: int,
             mode: Mode = "dataflow") -> None:
    rt = runtime()
    compiled = rt.compiled(run_id, version)
    worker = self.request.hostname or "unknown"
    max_attempts = compiled.max_attempts(step_id)
    begin = rt.store.begin_step(run_id, step_id, version, worker, max_attempts)
    if begin.state == "inactive":
        return  # the run is over (failed, cancelled) or this plan version was replaced
    if begin.state == "done":
        if mode == "dataflow":
            _redispatch(rt, compiled, run_id, version, step_id)
        return
    if begin.state == "exhausted":
        give_up(rt, compiled, run_id, step_id, version, worker, mode, {
            "type": "WorkerLost", "transient": True, "attempt": int(begin.detail),
            "message": f"{begin.detail} attempt(s) ended without a result (worker killed "
                       "or lost) and no attempts are left"})
        return

    attempt = begin.attempt
    step = compiled.plan.step(step_id)
    tool = compiled.tool_of(step_id)
    try:
        args = resolve(step.args, rt.store.outputs(run_id, referenced_steps(step.args)))
        output = tool.invoke(args, ToolContext(run_id, step_id, attempt))
    except SoftTimeLimitExceeded:
        kind: type[ToolError] = TransientError
        error = {"type": "Timeout", "transient": True, "attempt": attempt,
                 "message": f"attempt {attempt} timed out after "
                            f"{compiled.timeout_s(step_id)} s"}
    except RefError as exc:
        kind, error = PermanentError, _error(exc, PermanentError, attempt)
    except Exception as exc:
        kind = tool.classify(exc)
        error = _error(exc, kind, attempt)
    else:
        finish = rt.store.finish_step(run_id, step_id, output=output, worker=worker,
                                      dependents=compiled.dependents[step_id])
        _after_finish(rt, compiled, run_id, version, finish, mode)
        return

    if kind is TransientError and attempt < max_attempts:
        delay = backoff_s(rt, attempt)
        rt.store.record_retry(run_id, step_id, {**error, "retry_in_s": round(delay, 3)})
        raise self.retry(countdown=delay)
    give_up(rt, compiled, run_id, step_id, version, worker, mode, error)


def give_up(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
            worker: str, mode: Mode, error: dict[str, Any]) -> None:
    """A step failed for good: apply its ``on_failure`` policy."""
    policy = compiled.plan.step(step_id).on_failure
    if policy == "skip":
        finish = rt.store.finish_step(run_id, step_id, output=None, worker=worker,
                                      dependents=compiled.dependents[step_id],
                                      skipped_error=error)
        _after_finish(rt, compiled, run_id, version, finish, mode)
        return
    if not rt.store.fail_step(run_id, step_id, error, worker):
        return  # a duplicate delivery already recorded the outcome
    if policy == "fail":
        rt.store.finish_run(run_id, "failed", error={
            "type": "StepFailed", "step": step_id, "policy": "fail", "cause": error,
            "message": f"step {step_id!r} failed: {error['message']}"})
    else:
        app.signature("chordal.replan", args=(run_id, step_id, version), immutable=True,
                      queue=DEFAULT_QUEUE).apply_async()


def _redispatch(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int,
                step_id: str) -> None:
    """A finished step's message came back: its worker died after recording the result,
    maybe before publishing what it unlocked. Publish whatever is ready and unstarted."""
    ready = rt.store.ready_unstarted(run_id, compiled.dependents[step_id])
    run = rt.store.run_fields(run_id)
    finalize = run.get("status") == "running" and run.get("remaining") == "0"
    publish(rt, compiled, run_id, version, ready, finalize)


@app.task(name="chordal.finalize")
def finalize(run_id: str, version: int) -> None:
    """The join: without a model, the answer is the sink steps' outputs by step id."""
    rt = runtime()
    compiled = rt.compiled(run_id, version)
    states = rt.store.step_states(run_id)
    unfinished = [s for s in compiled.deps if states.get(s, {}).get("status") not in
                  ("succeeded", "skipped")]
    if unfinished:
        log.warning("run %s: join reached with unfinished steps %s", run_id, unfinished)
        return
    outputs = rt.store.outputs(run_id, compiled.sinks)
    rt.store.finish_run(run_id, "succeeded", answer={s: outputs.get(s) for s in compiled.sinks})


@app.task(name="chordal.barrier")
def barrier() -> None:
    """The body of each level's chord in the levels baseline: waits, does nothing."""


@app.task(name="chordal.replan")
def replan(run_id: str, step_id: str, version: int) -> None:
    """Called once per plan version when a step with ``on_failure="replan"`` fails for good.

    Without a model, replanning is not available: the run ends as failed with a report of
    what failed and what was already earned.
    """
    rt = runtime()
    if not rt.store.claim(run_id, f"replan:{version}", step_id):
        return  # an earlier failure in this plan version is being handled
    states = rt.store.step_states(run_id)
    failed = states.get(step_id, {})
    rt.store.finish_run(run_id, "failed", error={
        "type": "StepFailed", "step": step_id, "policy": "replan",
        "message": f"step {step_id!r} failed and no model is configured to replan",
        "cause": failed.get("error"),
        "completed": sorted(s for s, st in states.items() if st.get("status") == "succeeded"),
    })


@app.task(name="chordal.noop")
def noop() -> None:
    """Does nothing: the raw-Celery baseline in bench/, and a cheap health check."""
