"""The tasks: a step, the join, and the failure callbacks.

Messages carry ids only (run, step, plan version); everything else is read from the run
store. Steps may run more than once (at-least-once delivery): the run store makes a
finished step final, so a redelivered message never runs a succeeded step again.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery import Task
from celery.exceptions import Retry, SoftTimeLimitExceeded

from planner.compiler import STEP_ERROR_TASK, STEP_TASK, CompiledPlan, Mode
from planner.errors import ChordalError, PermanentError, RefError, ToolError, TransientError
from planner.llm import LLM_QUEUE, NO_MODEL
from planner.llm.roles import plan_goal, synthesize_request
from planner.refs import referenced_steps, resolve
from planner.store import Finish
from workers.app import app
from workers.runtime import Runtime, runtime
from workers.tools.registry import DEFAULT_QUEUE, ToolContext

log = logging.getLogger("chordal.worker")
# Celery-level retries of a model call whose SDK retries were all used (429/529/5xx).
MODEL_TASK_RETRIES = 5


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
        rt.store.mark_dispatched(run_id, list(ready))
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
            recover(rt, compiled, run_id, version, step_id, begin.detail)
        return
    if begin.state == "exhausted":
        give_up(rt, compiled, run_id, step_id, version, worker, mode, {
            "type": "WorkerLost", "transient": True, "attempt": int(begin.detail),
            "message": f"{begin.detail} attempt(s) ended without a result (worker killed "
                       "or lost) and no attempts are left"})
        return

    attempt = begin.attempt
    retry_after: float | None = None
    step = compiled.step(step_id)
    tool = compiled.tool_of(step_id)
    try:
        args = resolve(step.args, rt.store.outputs(run_id, referenced_steps(step.args)))
        output = tool.invoke(args, ToolContext(run_id, step_id, attempt,
                                               rt.ask(run_id, step_id)))
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
        retry_after = getattr(exc, "retry_after_s", None)
    else:
        finish = rt.store.finish_step(run_id, step_id, output=output, worker=worker,
                                      dependents=compiled.dependents[step_id])
        _after_finish(rt, compiled, run_id, version, finish, mode)
        return

    if kind is TransientError and attempt < max_attempts:
        delay = retry_delay(rt, attempt, retry_after)
        if not rt.store.record_retry(run_id, step_id, {**error, "retry_in_s": round(delay, 3)}):
            return  # a duplicate attempt failed after another one finished the step
        raise self.retry(countdown=delay)
    give_up(rt, compiled, run_id, step_id, version, worker, mode, error)


def retry_delay(rt: Runtime, attempt: int, retry_after: float | None) -> float:
    """Backoff with jitter, but never sooner than the provider's retry-after."""
    return max(backoff_s(rt, attempt), retry_after or 0.0)


def give_up(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
            worker: str, mode: Mode, error: dict[str, Any]) -> None:
    """A step failed for good: apply its ``on_failure`` policy."""
    policy = compiled.step(step_id).on_failure
    if policy == "skip":
        finish = rt.store.finish_step(run_id, step_id, output=None, worker=worker,
                                      dependents=compiled.dependents[step_id],
                                      skipped_error=error)
        _after_finish(rt, compiled, run_id, version, finish, mode)
        return
    if not rt.store.fail_step(run_id, step_id, error, worker):
        return  # a duplicate delivery already recorded the outcome
    apply_failure(rt, run_id, step_id, version, policy, error)


def apply_failure(rt: Runtime, run_id: str, step_id: str, version: int, policy: str,
                  error: dict[str, Any]) -> None:
    """The run-level effect of a failed step; idempotent, so recovery may repeat it."""
    if policy == "fail":
        rt.store.finish_run(run_id, "failed", error={
            "type": "StepFailed", "step": step_id, "policy": "fail", "cause": error,
            "message": f"step {step_id!r} failed: {error.get('message', '')}"})
    else:
        app.signature("chordal.replan", args=(run_id, step_id, version), immutable=True,
                      queue=DEFAULT_QUEUE).apply_async()


def recover(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int, step_id: str,
            status: str) -> None:
    """A finished step's message came back: its worker may have died after recording the
    outcome and before acting on it. Redo what follows from the outcome (all idempotent)."""
    if status == "failed":
        state = rt.store.step_states(run_id).get(step_id, {})
        error = json.loads(state["error"]) if state.get("error") else {}
        apply_failure(rt, run_id, step_id, version, compiled.step(step_id).on_failure, error)
        return
    ready = rt.store.ready_unstarted(run_id, compiled.dependents[step_id])
    run = rt.store.run_fields(run_id)
    finalize = run.get("status") == "running" and run.get("remaining") == "0"
    publish(rt, compiled, run_id, version, ready, finalize)


@app.task(name=STEP_ERROR_TASK, bind=True)
def step_error(self: Task, task_id: str, run_id: str, step_id: str, version: int) -> None:
    """Errback of a step task that failed outside the tool: killed at the hard time limit,
    or an error in Chordal itself. The attempt counts; the step is retried or given up."""
    rt = runtime()
    compiled = rt.compiled(run_id, version)
    state = rt.store.step_states(run_id).get(step_id, {})
    status = state.get("status")
    # Errbacks can fire twice for one failure (a hard time limit is also a lost worker):
    # act once per attempt.
    if not rt.store.claim(run_id, f"errback:{step_id}:{state.get('attempts', '0')}",
                          task_id):
        return
    if status in ("succeeded", "skipped", "failed"):
        # The outcome is recorded; what follows from it may not have been published.
        recover(rt, compiled, run_id, version, step_id, str(status))
        return
    if status == "pending":
        # It failed before it began (or its retry was never published): send it again.
        if rt.store.run_fields(run_id).get("status") == "running":
            compiled.step_signature(app, run_id, version, step_id).apply_async(
                countdown=retry_delay(rt, 1, None))
        return
    attempt = int(state.get("attempts", "1"))
    error = {"type": "TaskFailed", "transient": True, "attempt": attempt,
             "message": f"attempt {attempt} ended without a result: the task {task_id} failed "
                        "outside the tool (hard time limit, or a worker error; see the "
                        "worker's log)"}
    if attempt < compiled.max_attempts(step_id):
        delay = retry_delay(rt, attempt, None)
        if rt.store.record_retry(run_id, step_id, {**error, "retry_in_s": round(delay, 3)}):
            compiled.step_signature(app, run_id, version, step_id).apply_async(countdown=delay)
        return
    give_up(rt, compiled, run_id, step_id, version, state.get("worker", "unknown"),
            "dataflow", error)


@contextmanager
def ends_run_on_error(rt: Runtime, run_id: str, what: str) -> Iterator[None]:
    """A run-level task (join, synthesis, planning) that fails unexpectedly ends its run
    with the reason, instead of leaving it running with nothing queued."""
    try:
        yield
    except Retry:
        raise
    except Exception as exc:
        log.exception("run %s: %s failed", run_id, what)
        rt.store.finish_run(run_id, "failed", error={"type": type(exc).__name__,
                                                     "message": f"{what}: {exc}"})


@app.task(name="chordal.finalize")
def finalize(run_id: str, version: int) -> None:
    """The join. With a model, the synthesizer writes the answer (on the `llm` queue);
    without one, the answer is the sink steps' outputs by step id."""
    rt = runtime()
    with ends_run_on_error(rt, run_id, "join"):
        compiled = rt.compiled(run_id, version)
        states = rt.store.step_states(run_id)
        unfinished = [s for s in compiled.deps if states.get(s, {}).get("status") not in
                      ("succeeded", "skipped")]
        if unfinished:
            log.warning("run %s: join reached with unfinished steps %s", run_id, unfinished)
            return
        if rt.model is not None:
            app.signature("chordal.synthesize", args=(run_id, version), immutable=True,
                          queue=LLM_QUEUE, task_id=f"{run_id}.{version}.synthesize"
                          ).apply_async()
            return
        outputs = rt.store.outputs(run_id, compiled.sinks)
        rt.store.finish_run(run_id, "succeeded",
                            answer={s: outputs.get(s) for s in compiled.sinks})


def retry_model_call(task: Task, rt: Runtime, exc: ChordalError) -> None:
    """Retry the task (honouring retry-after) when a model call failed transiently and
    retries are left; otherwise return, and the caller records the failure."""
    if isinstance(exc, TransientError) and task.request.retries < MODEL_TASK_RETRIES:
        raise task.retry(countdown=retry_delay(
            rt, task.request.retries + 1, getattr(exc, "retry_after_s", None))) from None


@app.task(name="chordal.synthesize", bind=True, max_retries=None)
def synthesize(self: Task, run_id: str, version: int) -> None:
    """goal + step outputs -> the answer, by the synthesizer model."""
    rt = runtime()
    if rt.store.run_fields(run_id).get("status") != "running":
        return
    with ends_run_on_error(rt, run_id, "synthesizer"):
        compiled = rt.compiled(run_id, version)
        outputs = rt.store.outputs(run_id, [s.id for s in compiled.plan.steps])
        metered = rt.metered(run_id)
        if metered is None:  # this worker has no model: answer as a model-less join does
            rt.store.finish_run(run_id, "succeeded",
                                answer={s: outputs.get(s) for s in compiled.sinks})
            return
        request = synthesize_request(rt.settings, compiled.plan.goal, outputs,
                                     {s.id: s.description for s in compiled.plan.steps},
                                     metered.options.get("roles"))
        try:
            # The answer is the last call of a run: if it crosses the budget, it is kept.
            answer = metered.complete(request, stop_when_over=False).text()
        except ChordalError as exc:
            retry_model_call(self, rt, exc)
            rt.store.finish_run(run_id, "failed", answer={"outputs": outputs}, error={
                "type": type(exc).__name__, "message": f"synthesizer: {exc}"})
            return
        rt.store.finish_run(run_id, "succeeded", answer=answer)


@app.task(name="chordal.plan", bind=True, max_retries=None)
def plan_run(self: Task, run_id: str) -> None:
    """goal -> plan by the planner model, then start the run. Runs on the `llm` queue, so a
    worker restart redelivers the call instead of losing it; every stage is idempotent."""
    rt = runtime()
    run = rt.store.run_fields(run_id)
    if run.get("status") not in ("pending", "running"):
        return
    with ends_run_on_error(rt, run_id, "planner"):
        if run.get("version") == "0":
            metered = rt.metered(run_id)
            if metered is None:
                rt.store.finish_run(run_id, "failed", error={"type": "ConfigError",
                                                             "message": NO_MODEL})
                return
            try:
                outcome = plan_goal(metered, rt.settings, rt.tools, run["goal"],
                                    metered.options.get("roles"))
            except ChordalError as exc:
                retry_model_call(self, rt, exc)
                rt.store.finish_run(run_id, "failed", error={
                    "type": type(exc).__name__, "message": f"planner: {exc}"})
                return
            if outcome.plan is None:
                rt.store.finish_run(run_id, "failed", error=outcome.report())
                return
            rt.store.add_plan(run_id, 1, outcome.plan, outcome.plan.dependencies())
        compiled = rt.compiled(run_id, 1)
        rt.store.start_run(run_id)
        if rt.store.run_fields(run_id).get("status") == "running":
            # Roots not yet published (all of them, unless this is a redelivery).
            publish(rt, compiled, run_id, 1, rt.store.ready_unstarted(run_id, compiled.roots),
                    False)


@app.task(name="chordal.barrier")
def barrier() -> None:
    """The body of each level's chord in the levels baseline: waits, does nothing."""


@app.task(name="chordal.replan")
def replan(run_id: str, step_id: str, version: int) -> None:
    """Called once per plan version when a step with ``on_failure="replan"`` fails for good.

    Replanning with the model is not wired in yet (``planner.llm.roles.replan`` builds the
    call): the run ends as failed with a report of what failed and what was earned.
    """
    rt = runtime()
    if not rt.store.claim(run_id, f"replan:{version}", step_id):
        return  # an earlier failure in this plan version is being handled
    states = rt.store.step_states(run_id)
    failed = states.get(step_id, {})
    rt.store.finish_run(run_id, "failed", error={
        "type": "StepFailed", "step": step_id, "policy": "replan",
        "message": f"step {step_id!r} failed; replanning is not available yet, so the run "
                   "ends with what it earned",
        "cause": json.loads(failed["error"]) if failed.get("error") else None,
        "completed": sorted(s for s, st in states.items() if st.get("status") == "succeeded"),
    })


@app.task(name="chordal.noop")
def noop() -> None:
    """Does nothing: the raw-Celery baseline in bench/, and a cheap health check."""
