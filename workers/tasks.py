"""The tasks: thin adapters from Celery to the engine's decisions (``planner.engine``).

Messages carry ids only (run, step, plan version); everything else is read from the run
store. Tasks may run more than once (at-least-once delivery): the run store makes every
outcome final once, so a redelivered message never runs a succeeded step again. A
decision to retry comes back as a value and becomes Celery's own ``retry`` here, with the
tool's error; a step that failed for good raises the tool's error here, once its outcome
is recorded and acted on: Celery and Flower show RETRY and FAILURE as they happened.

Every task runs inside a span (its publisher's child) and a log context naming its run
and step, both set up by Celery's prerun signal and closed by its postrun signal, so
Celery's own lines about the task carry them too.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar, Token
from functools import cache
from typing import Any

from celery import Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import task_postrun, task_prerun, task_revoked
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from planner import logs, metrics, tracing
from planner.engine import agent, agent_calls, join, replan, review, start, steps
from planner.engine.inline import Chain
from planner.engine.outcomes import Failed, Retry
from planner.engine.publisher import CeleryPublisher
from planner.engine.runtime import Runtime
from planner.settings import Settings
from planner.store.records import ErrorRecord
from planner.vocabulary import RunStatus
from planner.wire import (
    AGENT_CALL_TASK,
    AGENT_TURN_TASK,
    FINALIZE_TASK,
    PLAN_TASK,
    REPLAN_TASK,
    REVIEW_TASK,
    STEP_ERROR_TASK,
    STEP_REVOKED_TASK,
    STEP_TASK,
    SYNTHESIZE_TASK,
    TASKS,
)
from workers import deadline, inline
from workers.app import app

log = logging.getLogger("chordal.worker")


@cache
def runtime() -> Runtime:
    """One per worker process, built on first use (after the pool forks)."""
    settings = Settings.from_env()
    if not settings.metrics.metrics_port and metrics.multiprocess_dir() is None:
        metrics.unexported()  # no /metrics here, and no files for another to serve
    return Runtime(settings, CeleryPublisher(app))


def _retry(task: Task, decision: Retry | Failed | steps.Dropped | None) -> None:
    """Act on a decision the engine has recorded: retry with the error that caused it (the
    retry's traceback then leads with the tool's), or fail with the step's error. A
    delivery that ran nothing (Dropped) ends as Celery ends a revoked task: a
    task-revoked event (Flower: REVOKED), no result, no errback, its message acked."""
    if isinstance(decision, steps.Dropped):
        # Celery says only "ignored": the log says why.
        log.info("%s[%s] dropped: %s", task.request.shadow or task.name, task.request.id,
                 decision.why)
        if task.app.conf.worker_send_task_events:
            task.send_event("task-revoked", terminated=False, signum=None, expired=False)
        raise Ignore(decision.why)
    if isinstance(decision, Failed):
        raise decision.error
    if decision is not None:
        retry = task.retry(countdown=decision.countdown, exc=decision.error, throw=False)
        raise retry from decision.error


def _ends_run_on_error(run_id: str, what: str, fn: Callable[[], Retry | None]
                       ) -> Retry | None:
    """A run-level task (join, synthesis, planning) holds a lease of its own while it
    works, and through its retry's countdown (so the reconciler leaves the run alone, and
    knows when its worker died); one that fails unexpectedly ends its run with the reason,
    instead of leaving it running with nothing queued."""
    rt = runtime()
    # One lease per holder: a duplicate task that gives up at once must not drop the
    # lease of the one at work.
    lease = f"@{what.split()[-1]}:{uuid.uuid4().hex[:12]}"
    try:
        with rt.leases.keep(run_id, lease, take=True):
            decision = fn()
        if decision is not None:
            rt.store.take_leases(run_id, [lease],
                                 decision.countdown + rt.settings.engine.step_lease_s)
        return decision
    except Exception as exc:
        log.exception("run %s: %s failed", run_id, what)
        rt.store.finish_run(run_id, RunStatus.FAILED, error=ErrorRecord(
            type=type(exc).__name__, message=f"{what}: {exc}"))
        return None


@app.task(name=STEP_TASK, bind=True, max_retries=None)
def run_step(self: Task, run_id: str, step_id: str, version: int) -> None:
    rt, started = runtime(), time.monotonic()
    chained = inline.policy(self, rt, started)
    try:
        with inline.own_limits(self, rt, run_id, step_id, version):
            decision = steps.run_step(rt, run_id, step_id, version,
                                      self.request.hostname or "unknown",
                                      timeouts=(SoftTimeLimitExceeded,),
                                      task_id=self.request.id, inline=chained)
    except deadline.StepKilled as exc:
        # Its hard stop, armed by the worker: it ends as Celery's hard limit ends a task,
        # failed (its errback records the attempt and applies the step's policy).
        raise TimeLimitExceeded(str(exc)) from exc
    finally:
        deadline.disarm()
    if isinstance(decision, Chain):
        # This step succeeded and made one step ready that this task runs next.
        if chained is not None:
            inline.run_chain(self, rt, run_id, decision, chained)
        return
    _retry(self, decision)


@app.task(name=AGENT_TURN_TASK, bind=True, max_retries=None)
def agent_turn(self: Task, run_id: str, step_id: str, version: int, conv: int,
               turn: int) -> None:
    """One model turn of an agent step."""
    _retry(self, agent.run_turn(runtime(), run_id, step_id, version, conv, turn,
                                self.request.hostname or "unknown", self.request.id,
                                self.request.retries, timeouts=(SoftTimeLimitExceeded,)))


@app.task(name=AGENT_CALL_TASK, bind=True, max_retries=None)
def agent_call(self: Task, run_id: str, step_id: str, version: int, conv: int, turn: int,
               index: int) -> None:
    """One tool call an agent step's model asked for."""
    _retry(self, agent_calls.run_call(runtime(), run_id, step_id, version, conv, turn,
                                      index, self.request.hostname or "unknown",
                                      timeouts=(SoftTimeLimitExceeded,),
                                      task_id=self.request.id))


# No events: the step's own task shows the attempt; this is its bookkeeping (see
# planner.engine.publisher.ShadowNamedAMQP, which sends no "sent" event for it either).
@app.task(name=STEP_ERROR_TASK, bind=True, send_events=False)
def step_error(self: Task, task_id: str, run_id: str, step_id: str, version: int) -> None:
    steps.step_failed_outside(runtime(), task_id, run_id, step_id, version)


@task_revoked.connect
def _step_revoked(sender: Task | None = None, request: Any = None, terminated: bool = False,
                  **_: Any) -> None:
    """A step's task was revoked (Flower's Terminate): its step ends now, in the worker's
    main process, instead of being re-sent under an id every worker discards."""
    if sender is None or request is None or sender.name not in (STEP_TASK, AGENT_CALL_TASK):
        return
    run_id, step_id = (*(request.args or ()), None, None)[:2]
    if not isinstance(run_id, str) or not isinstance(step_id, str):
        return
    if sender.name == AGENT_CALL_TASK:
        try:
            agent_calls.call_revoked(runtime(), tuple(request.args), bool(terminated),
                                     request.id)
        except Exception:
            log.exception("run %s: could not record the revoke of a call of step %s",
                          run_id, step_id)
        return
    try:
        steps.record_revoke(runtime(), run_id, step_id, request.hostname or "unknown",
                            bool(terminated), request.id)
    except Exception:
        # Neither the run store nor the broker took it: only the log has it now.
        log.exception("run %s: could not end revoked step %s, nor hand its revoke to a "
                      "task: it may be re-driven", run_id, step_id)


# No events, as the errback: bookkeeping of the step's revoked task, which Flower shows.
@app.task(name=STEP_REVOKED_TASK, bind=True, send_events=False, max_retries=40)
def step_revoked(self: Task, run_id: str, step_id: str, worker: str, terminated: bool,
                 task_id: str, revoked_at: float) -> None:
    """A revoke its worker could not record at once (``steps.record_revoke``): record it,
    retried (up to ~15 minutes) until the run store answers."""
    try:
        steps.step_revoked(runtime(), run_id, step_id, worker, terminated, task_id,
                           revoked_at)
    except Exception as exc:
        raise self.retry(exc=exc, countdown=min(30, 2 ** self.request.retries)) from exc


@app.task(name=FINALIZE_TASK)
def finalize(run_id: str, version: int) -> None:
    _ends_run_on_error(run_id, "join", lambda: join.finalize(runtime(), run_id, version))


@app.task(name=SYNTHESIZE_TASK, bind=True, max_retries=None)
def synthesize(self: Task, run_id: str, version: int, partial: bool = False) -> None:
    _retry(self, _ends_run_on_error(run_id, "synthesizer", lambda: join.synthesize(
        runtime(), run_id, version, self.request.retries, partial)))


@app.task(name=PLAN_TASK, bind=True, max_retries=None)
def plan_run(self: Task, run_id: str) -> None:
    _retry(self, _ends_run_on_error(run_id, "planner", lambda: start.plan_run(
        runtime(), run_id, self.request.retries)))


@app.task(name=REVIEW_TASK, bind=True, max_retries=None)
def review_checkpoint(self: Task, run_id: str, step_id: str, version: int) -> None:
    _retry(self, _ends_run_on_error(run_id, "checkpoint review", lambda: review.review(
        runtime(), run_id, step_id, version, self.request.retries, self.request.id)))


@app.task(name=REPLAN_TASK, bind=True, max_retries=None)
def replan_run(self: Task, run_id: str, step_id: str, version: int) -> None:
    _retry(self, _ends_run_on_error(run_id, "replanner", lambda: replan.replan(
        runtime(), run_id, step_id, version, self.request.retries, self.request.id)))


# -- spans and log context, around every Chordal task --------------------------------------

#: What prerun opened for the task running in this thread, for postrun to close.
_Opened = tuple[Any, Token[otel_context.Context], Token[Any]]
_open: ContextVar[_Opened | None] = ContextVar("chordal_task_open", default=None)


def _subject(name: str, args: tuple[Any, ...]) -> tuple[str | None, str | None, Any]:
    """(run, step, plan version) a task is about, from its arguments (see planner.wire)."""
    if name == STEP_ERROR_TASK:
        args = args[1:]  # Celery puts the failed task's id first
    run_id = args[0] if args and isinstance(args[0], str) else None
    step_id = (args[1] if name in (STEP_TASK, STEP_ERROR_TASK, REVIEW_TASK, REPLAN_TASK,
                                   STEP_REVOKED_TASK, AGENT_TURN_TASK, AGENT_CALL_TASK)
               and len(args) > 1 else None)
    version = args[2] if step_id is not None and name != STEP_REVOKED_TASK and len(args) > 2 else (
        args[1] if name in (FINALIZE_TASK, SYNTHESIZE_TASK) and len(args) > 1 else None)
    return run_id, step_id, version


@task_prerun.connect
def _opened(task_id: str = "", task: Task | None = None, args: Any = (), **_: Any) -> None:
    if task is None or task.name not in TASKS:
        return
    run_id, step_id, version = _subject(task.name, tuple(args or ()))
    if run_id is None:
        return
    request = task.request
    log_token = logs.bind(run_id=run_id, step_id=step_id, task_id=task_id,
                          task=request.shadow or task.name)
    carrier = request.headers or {}
    if not tracing.enabled():
        # Nothing records spans here: the publisher's context is made current as it came
        # (what a no-op span would carry), so what this task publishes continues its trace
        # for the workers that do record, without a span, its attributes or its wait.
        context_token = otel_context.attach(tracing.task_context(run_id, carrier))
        _open.set((None, context_token, log_token))
        return
    wait = (tracing.queue_wait_s(carrier, request.eta) if task.name == STEP_TASK
            else None)
    span = tracing.tracer().start_span(
        request.shadow or task.name, kind=trace.SpanKind.CONSUMER,
        context=tracing.task_context(run_id, carrier),
        attributes={k: v for k, v in {
            "chordal.run_id": run_id, "chordal.step_id": step_id,
            "chordal.plan_version": version, "chordal.queue_wait_s": wait,
            "chordal.retries": request.retries, "messaging.message.id": task_id,
            "messaging.destination.name": (request.delivery_info or {}).get("routing_key"),
            "celery.task_name": task.name}.items() if v is not None})
    span_token = otel_context.attach(trace.set_span_in_context(span))
    _open.set((span, span_token, log_token))


@task_postrun.connect
def _closed(task: Task | None = None, retval: Any = None, state: str | None = None,
            args: Any = (), **_: Any) -> None:
    opened = _open.get()
    if opened is None or task is None:
        return
    _open.set(None)
    span, span_token, log_token = opened
    try:
        if span is None:  # tracing is off (see _opened)
            otel_context.detach(span_token)
            return
        if state == "FAILURE" and getattr(span, "status", None) is not None \
                and span.status.status_code is StatusCode.UNSET:
            # Not a tool's error (the engine marks those): Chordal's own, or a kill.
            if isinstance(retval, BaseException):
                span.record_exception(retval)
            span.set_status(Status(StatusCode.ERROR, f"{state}: {retval!r}"[:300]))
        span.set_attribute("celery.state", state or "")
        span.end()
        otel_context.detach(span_token)
        if tracing.enabled():
            _run_span(*_subject(task.name, tuple(args or ()))[:1])
    finally:
        logs.unbind(log_token)


def _run_span(run_id: str | None) -> None:
    """Write the run's span once, after the task in which it ended (whichever it was)."""
    if run_id is None:
        return
    try:
        rt = runtime()
        run = rt.store.run_state(run_id)
        if run.ended and rt.store.claim(run_id, "span:run", uuid.uuid4().hex):
            tracing.write_run_span(run_id, run.status, run.goal, run.created_at,
                                   run.finished_at, run.error.message if run.error else None)
    except Exception as exc:
        log.warning("run %s: could not write its span: %s", run_id, exc)
