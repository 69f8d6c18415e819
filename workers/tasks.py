"""The tasks: thin adapters from Celery to the engine's decisions (``planner.engine``).

Messages carry ids only (run, step, plan version); everything else is read from the run
store. Tasks may run more than once (at-least-once delivery): the run store makes every
outcome final once, so a redelivered message never runs a succeeded step again. A
decision to retry comes back as a value and becomes Celery's own ``retry`` here, so
Celery and Flower show it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from functools import cache

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from planner.engine import join, replan, review, start, steps
from planner.engine.dispatch import CeleryPublisher
from planner.engine.outcomes import Retry
from planner.engine.runtime import Runtime
from planner.settings import Settings
from planner.store.records import ErrorRecord
from planner.wire import (
    FINALIZE_TASK,
    PLAN_TASK,
    REPLAN_TASK,
    REVIEW_TASK,
    STEP_ERROR_TASK,
    STEP_TASK,
    SYNTHESIZE_TASK,
)
from workers.app import app

log = logging.getLogger("chordal.worker")


@cache
def runtime() -> Runtime:
    """One per worker process, built on first use (after the pool forks)."""
    return Runtime(Settings.from_env(), CeleryPublisher(app))


def _retry(task: Task, decision: Retry | None) -> None:
    if decision is not None:
        raise task.retry(countdown=decision.countdown)


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
                                 decision.countdown + rt.settings.step_lease_s)
        return decision
    except Exception as exc:
        log.exception("run %s: %s failed", run_id, what)
        rt.store.finish_run(run_id, "failed", error=ErrorRecord(
            type=type(exc).__name__, message=f"{what}: {exc}"))
        return None


@app.task(name=STEP_TASK, bind=True, max_retries=None)
def run_step(self: Task, run_id: str, step_id: str, version: int) -> None:
    _retry(self, steps.run_step(runtime(), run_id, step_id, version,
                                self.request.hostname or "unknown",
                                timeouts=(SoftTimeLimitExceeded,)))


@app.task(name=STEP_ERROR_TASK, bind=True)
def step_error(self: Task, task_id: str, run_id: str, step_id: str, version: int) -> None:
    steps.step_failed_outside(runtime(), task_id, run_id, step_id, version)


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
