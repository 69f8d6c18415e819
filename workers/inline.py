"""The task side of inline steps (planner/engine/inline.py): run a :class:`Chain` in the
task that made it ready, as its own Celery task would have run it.

Each inline step has the task id its first message would have had
(``<run>.<version>.<step>``, noted as its live task by the finish that made it ready), and
shows in Flower under it, named as a step row is (``chordal.step <tool> <step>``): the
worker sends task-sent, task-received and task-started for it, then task-succeeded,
task-failed, task-retried or task-revoked, through its event dispatcher, when task events
are on. It runs in a span of its own, a child of the task's, and in a log context naming
it.

Its outcomes are acted on as its own task would: a retry is a message published with its
countdown, under the same id (as Celery's ``retry`` keeps it), never retried inline; a
failure for good is recorded and acted on by the engine, and ends only its own row as
FAILURE, not the task that ran it; an error of Chordal's own is handed to the errback's
logic (``steps.step_failed_outside``), as a task's errback would be.
"""

from __future__ import annotations

import logging
import time
import traceback
from contextlib import AbstractContextManager
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from planner import logs, tracing
from planner.engine import steps
from planner.engine.dispatch import step_message
from planner.engine.inline import Chain, InlinePolicy
from planner.engine.outcomes import Failed, Retry
from planner.engine.runtime import Runtime
from planner.wire import STEP_TASK, task_id
from workers import deadline, events

log = logging.getLogger("chordal.worker")


def _limits(task: Task) -> tuple[float | None, float | None]:
    """The (hard, soft) Celery time limits of the task's message."""
    hard, soft = (*tuple(task.request.timelimit or ()), None, None)[:2]
    return hard, soft


def policy(task: Task, rt: Runtime, started: float) -> InlinePolicy | None:
    """What the task ``task`` (begun at ``started``, monotonic) may run inline, if
    anything: the steps of the queues this worker consumes, within its time limit."""
    if not rt.settings.engine.inline_steps:
        return None
    amqp_queues = task.app.amqp.queues
    queues = set(amqp_queues.consume_from or amqp_queues)
    hard, soft = _limits(task)
    # Only a prefork child has Celery's time limits enforced (the pool signals it at the
    # soft limit and kills it at the hard one, counted from the task's start); the other
    # pools enforce none, and an async tool's own limit holds in every pool (tools/aio).
    # A message with inline steps on carries no soft limit (CompiledPlan.time_limits);
    # one sent with them off still may.
    limit = (soft or hard) if deadline.enforced() else None

    def time_left() -> float | None:
        return None if not limit else float(limit) - (time.monotonic() - started)

    return InlinePolicy(queues, rt.settings.engine.inline_max, time_left)


def own_limits(task: Task, rt: Runtime, run_id: str, step_id: str, version: int
               ) -> AbstractContextManager[None]:
    """The stops of the step a task's message names: armed by the worker when the message
    carries no soft limit of its own (inline steps on) in a process whose pool enforces
    limits, otherwise left to the pool (workers/deadline.py)."""
    _, soft = _limits(task)
    compiled = rt.compiled(run_id, version)
    armed = soft is None and step_id in compiled.deps and deadline.enforced()
    return deadline.step_limits(compiled.timeout_s(step_id) if armed else 0.0,
                                compiled.hard_limit_grace_s, armed)


def _events(task: Task, uuid: str, *types: tuple[str, dict[str, Any]]) -> None:
    """Send the inline task ``uuid``'s events, in order, off the step's path."""
    if task.app.conf.worker_send_task_events:
        events.send(task.app, task.request.hostname,
                    [(type_, uuid, fields) for type_, fields in types])


def _traceback(exc: BaseException | None) -> str:
    """What Flower shows of an error: its traceback, as Celery's events carry it."""
    return "".join(traceback.format_exception(exc)) if exc is not None else ""


def run_chain(task: Task, rt: Runtime, run_id: str, chain: Chain, inline: InlinePolicy
              ) -> None:
    """Run ``chain`` and whatever chains on from it, until a step makes no single step
    ready, or ``inline`` says no more."""
    worker = task.request.hostname or "unknown"
    nxt: Chain | None = chain
    while nxt is not None:
        nxt = _one(task, rt, run_id, nxt, worker, inline)


def _one(task: Task, rt: Runtime, run_id: str, chain: Chain, worker: str,
         inline: InlinePolicy) -> Chain | None:
    step_id, version = chain.step_id, chain.version
    compiled = rt.compiled(run_id, version)
    uuid = task_id(run_id, version, step_id)
    shadow = f"{STEP_TASK} {compiled.step(step_id).tool} {step_id}"
    queue = compiled.queue_of(step_id)
    about = {"name": shadow, "args": repr((run_id, step_id, version)), "kwargs": "{}",
             "retries": 0, "root_id": task.request.root_id, "parent_id": task.request.id}
    _events(task, uuid, ("task-sent", {**about, "queue": queue, "routing_key": queue,
                                       "exchange": ""}),
            ("task-received", about), ("task-started", {}))
    log_token = logs.bind(run_id=run_id, step_id=step_id, task_id=uuid, task=shadow)
    span = tracing.tracer().start_span(shadow, kind=trace.SpanKind.CONSUMER, attributes={
        "chordal.run_id": run_id, "chordal.step_id": step_id, "chordal.plan_version": version,
        "chordal.inline": True, "messaging.message.id": uuid, "celery.task_name": STEP_TASK})
    span_token = otel_context.attach(trace.set_span_in_context(span))
    began = time.monotonic()
    state = "SUCCESS"
    try:
        # Its own stops, as its own task would have had from its pool (workers/deadline.py).
        with deadline.step_limits(compiled.timeout_s(step_id), compiled.hard_limit_grace_s,
                                  deadline.enforced()):
            decision = steps.run_step(rt, run_id, step_id, version, worker,
                                      timeouts=(SoftTimeLimitExceeded,), task_id=uuid,
                                      inline=inline)
        if isinstance(decision, Failed):
            # As Celery logs a task that raised (in the step's log context): the tool's
            # error with its traceback.
            state = "FAILURE"
            log.error("Task %s[%s] raised unexpected: %r", shadow, uuid, decision.error,
                      exc_info=decision.error)
        elif isinstance(decision, Retry):
            state = "RETRY"
    except (Exception, deadline.StepKilled) as exc:
        # Chordal's own error, its soft stop outside the tool, or its hard stop: what the
        # step's errback would do when its task failed.
        log.error("run %s: inline step %s failed outside its tool", run_id, step_id,
                  exc_info=exc)
        state = "FAILURE"
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, repr(exc)[:300]))
        _events(task, uuid, ("task-failed", {"exception": repr(exc),
                                             "traceback": _traceback(exc)}))
        steps.step_failed_outside(rt, uuid, run_id, step_id, version)
        return None
    finally:
        deadline.disarm()
        span.set_attribute("celery.state", state)
        span.end()
        otel_context.detach(span_token)
        logs.unbind(log_token)
    runtime = time.monotonic() - began
    if isinstance(decision, Retry):
        # Back to the broker, under the same id, after its countdown: never inline again.
        message = step_message(compiled, run_id, version, step_id, decision.countdown)
        rt.publish([message])
        _events(task, uuid, ("task-retried", {"exception": repr(decision.error),
                                              "traceback": _traceback(decision.error)}))
        return None
    if isinstance(decision, Failed):
        _events(task, uuid, ("task-failed", {"exception": repr(decision.error),
                                             "traceback": _traceback(decision.error)}))
        return None
    if isinstance(decision, steps.Dropped):
        log.info("%s[%s] dropped: %s", shadow, uuid, decision.why)
        _events(task, uuid, ("task-revoked", {"terminated": False, "signum": None,
                                              "expired": False}))
        return None
    _events(task, uuid, ("task-succeeded", {"result": "None", "runtime": runtime}))
    return decision
