"""The life of a step: one delivery of its message, and its errback.

A delivery begins the step in the run store (which refuses a finished step, a replaced
plan version, an ended run, or spent attempts), resolves its ``$ref`` arguments, calls the
tool, and records the outcome before acting on it. A transient failure with attempts left
comes back as a :class:`Retry` for the task layer to schedule (so Celery shows RETRY).
"""

from __future__ import annotations

from typing import Any

from planner.engine.outcomes import (
    Retry,
    after_finish,
    give_up,
    recover,
    resend,
    retry_delay,
    retry_or_give_up,
)
from planner.engine.runtime import Runtime
from planner.errors import PermanentError, RefError, ToolError, TransientError
from planner.jsonvalue import json_problems, json_size
from planner.language.refs import referenced_steps, resolve
from planner.store.records import ErrorRecord
from planner.tools.tool import ToolContext


def _error(exc: BaseException, kind: type[ToolError], attempt: int) -> ErrorRecord:
    return ErrorRecord(type=type(exc).__name__, message=str(exc)[:4_000],
                       transient=kind is TransientError, attempt=attempt)


def output_problem(output: Any, max_depth: int, max_bytes: int) -> str | None:
    """Why a tool's output cannot be recorded (not JSON, or too big), or None."""
    problems = json_problems(output, max_depth, "output")
    if problems:
        path, what = problems[0]
        return f"its output is not plain JSON: {path}: {what}"
    size = json_size(output)
    if size > max_bytes:
        return (f"its output is {size} bytes of JSON; the limit is {max_bytes} "
                "(raise CHORDAL_MAX_OUTPUT_BYTES, or keep large data out of outputs and "
                "return a reference to it)")
    return None


def run_step(rt: Runtime, run_id: str, step_id: str, version: int, worker: str,
             timeouts: tuple[type[BaseException], ...] = ()) -> Retry | None:
    """One delivery of a step. ``timeouts`` are the exceptions that mean the attempt ran
    out of time (Celery's soft time limit)."""
    max_attempts = rt.compiled(run_id, version).max_attempts(step_id)
    begin = rt.store.begin_step(run_id, step_id, version, worker, max_attempts,
                                rt.settings.step_lease_s)
    if begin.state in ("inactive", "waiting"):
        # The run is not running, no current version holds the step, or it is not ready in
        # the current version (whoever unlocks it publishes it again).
        return None
    if begin.state == "busy":
        # It runs elsewhere under a live lease. Come back when the lease would lapse: if
        # its worker died (a pool process killed, its message handed back at once), this
        # message takes the step over then, reconciler or not.
        return Retry(float(begin.detail) + 1.0)
    # The step runs as the version that holds it now defines it (a replan may keep it).
    version = begin.version
    compiled = rt.compiled(run_id, version)
    if begin.state == "done":
        recover(rt, compiled, run_id, version, step_id, begin.detail)  # type: ignore[arg-type]
        return None
    if begin.state == "exhausted":
        give_up(rt, compiled, run_id, step_id, version, worker, ErrorRecord(
            type="WorkerLost", transient=True, attempt=int(begin.detail),
            message=f"{begin.detail} attempt(s) ended without a result (worker killed "
                    "or lost) and no attempts are left"))
        return None

    attempt = begin.attempt
    retry_after: float | None = None
    step = compiled.step(step_id)
    tool = compiled.tool_of(step_id)
    if tool is None:
        modules = ", ".join(rt.settings.tool_modules) or "none"
        give_up(rt, compiled, run_id, step_id, version, worker, ErrorRecord(
            type="ToolMissing", transient=False, attempt=attempt,
            message=f"worker {worker} has no tool {step.tool!r} (it loaded the built-ins "
                    f"and CHORDAL_TOOL_MODULES: {modules}); start workers with the "
                    "CHORDAL_TOOL_MODULES that define it"))
        return None
    try:
        args = resolve(step.args, rt.store.outputs(run_id, referenced_steps(step.args)))
        with rt.leases.keep(run_id, step_id):
            output = tool.invoke(args, ToolContext(run_id, step_id, attempt,
                                                   rt.ask(run_id, step_id)))
    except timeouts:
        error = ErrorRecord(type="Timeout", transient=True, attempt=attempt,
                            message=f"attempt {attempt} timed out after "
                                    f"{compiled.timeout_s(step_id)} s")
    except RefError as exc:
        error = _error(exc, PermanentError, attempt)
    except Exception as exc:
        error = _error(exc, tool.classify(exc), attempt)
        retry_after = getattr(exc, "retry_after_s", None)
    else:
        refused = output_problem(output, rt.settings.max_json_depth,
                                 rt.settings.max_output_bytes)
        if refused is not None:
            error = ErrorRecord(type="OutputRefused", transient=False, attempt=attempt,
                                message=f"tool {tool.name!r}: {refused}")
            output = None
        if refused is None:
            finish = rt.store.finish_step(run_id, step_id, output=output, worker=worker,
                                          hold=compiled.is_checkpoint(step_id))
            after_finish(rt, run_id, step_id, finish)
            return None
    delay = retry_or_give_up(rt, compiled, run_id, step_id, version, worker, error,
                             retry_after)
    return None if delay is None else Retry(delay)


def step_failed_outside(rt: Runtime, task_id: str, run_id: str, step_id: str,
                        version: int) -> None:
    """The errback of a step task that failed outside the tool: killed at the hard time
    limit, or an error in Chordal itself. The attempt counts; the step is retried or
    given up."""
    run = rt.store.run_state(run_id)
    if run.ended or not run.version:
        return
    # Act in the version that holds the step now; a step no version holds is done with.
    version = run.version
    compiled = rt.compiled(run_id, version)
    if step_id not in compiled.deps:
        return
    state = rt.store.step_state(run_id, step_id)
    # Errbacks can fire twice for one failure (a hard time limit is also a lost worker):
    # act once per attempt.
    if not rt.store.claim(run_id, f"errback:{step_id}:{state.attempts}", task_id):
        return
    if state.final:
        # The outcome is recorded; what follows from it may not have been published.
        recover(rt, compiled, run_id, version, step_id, state.status)
        return
    if state.status == "pending":
        # It failed before it began (or its retry was never published): send it again.
        if run.active:
            resend(rt, compiled, run_id, version, step_id, retry_delay(rt.settings, 1, None))
        return
    attempt = state.attempts or 1
    error = ErrorRecord(
        type="TaskFailed", transient=True, attempt=attempt,
        message=f"attempt {attempt} ended without a result: the task {task_id} failed "
                "outside the tool (hard time limit, or a worker error; see the worker's log)")
    delay = retry_or_give_up(rt, compiled, run_id, step_id, version,
                             state.worker or "unknown", error)
    if delay is not None:
        resend(rt, compiled, run_id, version, step_id, delay)
