"""What follows from a step's outcome: which steps to publish, when to retry, and what a
step that failed for good does to its run (its ``on_failure`` policy).

Every function here is idempotent: a redelivered message or an errback that fires twice
may call it again, and the run store's once-only transitions make the repeat harmless.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from planner.engine import agent_moves
from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import (
    Message,
    finalize_message,
    replan_message,
    review_message,
    step_message,
    synthesize_message,
)
from planner.engine.runtime import Runtime
from planner.errors import ChordalError, RefError, TransientError
from planner.jsonvalue import json_problems, json_size
from planner.language.refs import referenced_steps, resolve
from planner.settings import Settings
from planner.store.records import EARNED_STEP, ErrorRecord, StepStatus
from planner.store.runs import Finish
from planner.vocabulary import RunStatus

log = logging.getLogger("chordal.engine")

#: Celery-level retries of a model call whose SDK retries were all used (429/529/5xx).
MODEL_TASK_RETRIES = 5


@dataclass(frozen=True)
class Retry:
    """Schedule this task again after ``countdown`` seconds (the task layer does, so
    Celery and Flower show the task as retried, with ``error``: what failed, if known)."""

    countdown: float
    error: BaseException | None = None


class StepFailed(Exception):
    """A step failed for good without an exception of its tool's (a timeout, a refused
    output, a missing tool, attempts lost with their workers): raised in its stead."""


@dataclass(frozen=True)
class Failed:
    """The step failed for good; its outcome is recorded and acted on. The task layer
    raises ``error`` (the tool's own exception when there is one), so Celery and Flower
    show the task as failed with the step's error instead of as a success."""

    error: BaseException


def output_problem(output: Any, max_depth: int, max_bytes: int) -> str | None:
    """Why a tool's output (or an agent's answer) cannot be recorded (not JSON, or too
    big), or None."""
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


def backoff_s(settings: Settings, attempt: int) -> float:
    """Exponential backoff with jitter: base * 2**(attempt-1), capped, times 0.5-1.0.
    (Celery's full jitter may wait 0 s; a retry storm on a throttled service should not.)"""
    engine = settings.engine
    ceiling = min(engine.retry_backoff_max_s, engine.retry_backoff_s * 2 ** (attempt - 1))
    return float(ceiling * (0.5 + random.random() / 2))  # noqa: S311 (jitter, not crypto)


def retry_delay(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """Backoff with jitter, but never sooner than the service's retry-after."""
    return max(backoff_s(settings, attempt), retry_after or 0.0)


def model_retry(settings: Settings, exc: ChordalError, retries: int) -> Retry | None:
    """A retry (honouring retry-after) when a model call failed transiently and the task's
    ``retries`` so far leave room; None when the caller must record the failure."""
    if isinstance(exc, TransientError) and retries < MODEL_TASK_RETRIES:
        return Retry(retry_delay(settings, retries + 1, exc.retry_after_s), exc)
    return None


def dispatch(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int,
             ready: Sequence[str], finalize: bool, redrive: bool = False,
             noted: bool = False) -> None:
    """Publish the steps that became ready (and the join when nothing remains), then note
    them dispatched so recovery does not publish them again. ``redrive``: they were
    published before (each message gets a new task id); ``noted``: the finish that made
    them ready noted them dispatched already (``finish_step``'s ``dispatching``)."""
    messages: list[Message] = [step_message(compiled, run_id, version, s, redrive=redrive)
                               for s in ready]
    # Each step's task id is the one it lives under now (a revoke of an older one is stale).
    task_ids = {m.args[1]: m.task_id or "" for m in messages}
    if finalize:
        messages.append(finalize_message(run_id, version))
    rt.publish(messages)
    if noted:
        return
    rt.store.mark_dispatched(run_id, list(ready),
                             queues={s: compiled.queue_of(s) for s in ready},
                             task_ids=task_ids)


def after_finish(rt: Runtime, run_id: str, step_id: str, finish: Finish) -> None:
    """Publish what a recorded finish unlocked, in the plan version that holds the step
    now (a replan may have installed a newer one while it ran). The finish that leaves
    nothing to run joins the run here (:func:`join_here`) instead of publishing the join."""
    if finish.state == "ok":
        last = finish.remaining == 0 and not finish.ready
        if last and rt.settings.engine.inline_join and join_here(rt, run_id, finish.version):
            return
        dispatch(rt, rt.compiled(run_id, finish.version), run_id, finish.version,
                 finish.ready, finish.remaining == 0, noted=finish.noted)
    elif finish.state == "held":
        rt.publish([review_message(run_id, step_id, finish.version)])


def join_here(rt: Runtime, run_id: str, version: int) -> bool:
    """The join's work, in the task whose finish left nothing to run: a run without a
    written answer ends here, saving a broker hop (``chordal.finalize``); one whose answer
    a model writes publishes its synthesizer from here. False when it could not be done
    (an error reading or writing the run store): the caller publishes the join message,
    which does it again with its own error handling.

    Safe to repeat and to race: the finish that brought ``remaining`` to 0 is recorded
    before this runs, so a redelivery of the step's message or the reconciler re-publish
    the join if this task dies; :func:`~planner.engine.join.finalize` re-checks the run
    (active, this version, every step earned) and ``finish_run.lua`` ends a run once, so a
    concurrent join message changes nothing more: both write the same answer, the sinks'
    recorded outputs, which no longer change."""
    from planner.engine import join  # the join builds on this module

    try:
        join.finalize(rt, run_id, version)
    except Exception as exc:
        log.warning("run %s: the join in the last step's task failed (%s); publishing it "
                    "as a task", run_id, exc, exc_info=True)
        return False
    return True


def retry_or_give_up(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str,
                     version: int, worker: str, error: ErrorRecord,
                     retry_after: float | None = None, *, attempt: int | None = None,
                     tries: int | None = None) -> float | None:
    """A failed attempt: if it is transient and attempts are left, record the retry and
    return its delay (the caller schedules it); otherwise apply the step's policy. None
    when nothing is to be scheduled. ``attempt``: the attempt that reports it (None: the
    engine decides); ``tries``: the attempts made since the run's last retry (default:
    the error's attempt)."""
    tries = tries or error.attempt or 1
    if error.transient and tries < compiled.max_attempts(step_id):
        delay = retry_delay(rt.settings, tries, retry_after)
        recorded = rt.store.record_retry(
            run_id, step_id, error.model_copy(update={"retry_in_s": round(delay, 3)}),
            attempt)
        # Not recorded: a duplicate attempt failed after another one finished the step,
        # or a superseded one.
        return delay if recorded else None
    give_up(rt, compiled, run_id, step_id, version, worker, error, attempt)
    return None


def give_up(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
            worker: str, error: ErrorRecord, attempt: int | None = None) -> None:
    """A step failed for good: apply its ``on_failure`` policy. ``attempt``: the attempt
    that failed (None: the engine decides)."""
    policy = compiled.step(step_id).on_failure
    if policy == "skip":
        finish = rt.store.finish_step(run_id, step_id, output=None, worker=worker,
                                      skipped_error=error, attempt=attempt)
        after_finish(rt, run_id, step_id, finish)
        return
    if not rt.store.fail_step(run_id, step_id, error, worker, attempt):
        return  # a duplicate delivery already recorded the outcome, or it was superseded
    apply_failure(rt, run_id, step_id, version, policy, error)


def apply_failure(rt: Runtime, run_id: str, step_id: str, version: int, policy: str,
                  error: ErrorRecord | None) -> None:
    """The run-level effect of a failed step; idempotent, so recovery may repeat it."""
    if policy == "fail":
        message = error.message if error else ""
        rt.store.finish_run(run_id, RunStatus.FAILED, error=ErrorRecord(
            type="StepFailed", step=step_id, policy="fail",
            cause=error.model_dump(mode="json") if error else None,
            message=f"step {step_id!r} failed: {message}"))
    elif rt.store.flag_failure(run_id, step_id):
        # Noted for the next replan: if one is thinking already, it takes this up when it
        # is done; the message below only wakes one if none is.
        rt.publish([replan_message(run_id, step_id, version)])


def synthesizes(rt: Runtime, run_id: str) -> bool:
    """Whether the synthesizer writes this run's answer: a property of the run, never of
    the worker that happens to end it (the join often runs in the last step's task, on a
    tool worker with no model). The run's ``synthesize`` option says it (every door records
    it: a goal's run does; a plan's run when the plan's ``"synthesize"`` or the submitter
    says so); where it is None (a run made by the store alone, or recorded before the
    option), the submitted plan's ``"synthesize"``; where that says nothing too, the rule
    of those runs: when there is a model, here. A run that is synthesized gets the
    synthesizer's message on the ``llm`` queue, whose worker answers as a model-less join
    does when it has no model itself (:func:`planner.engine.join.synthesize`)."""
    wanted = rt.store.options(run_id).synthesize
    if wanted is None and rt.store.run_state(run_id).version >= 1:
        wanted = rt.compiled(run_id, 1).plan.synthesize  # cached: it ran version 1
    return rt.model is not None if wanted is None else wanted


def end_failed(rt: Runtime, run_id: str, error: ErrorRecord) -> None:
    """End a run as failed, keeping what it earned: a run that is synthesized
    (:func:`synthesizes`) has the synthesizer write a partial answer from the earned
    outputs first (no new step starts meanwhile); any other's answer is those outputs.
    Either way ``partial`` is set."""
    run = rt.store.run_state(run_id)
    if run.ended:
        return
    if run.status == RunStatus.RUNNING and synthesizes(rt, run_id):
        if rt.store.set_ending(run_id, error):
            rt.publish([synthesize_message(run_id, run.version, partial=True)])
        return
    earned = rt.store.outputs(run_id, rt.store.completed(run_id))
    rt.store.finish_run(run_id, RunStatus.FAILED, answer={"partial": earned}, error=error,
                        partial=True)


def recover(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int, step_id: str,
            status: StepStatus) -> None:
    """A finished step's message came back: its worker may have died after recording the
    outcome and before acting on it. Redo what follows from the outcome (all idempotent)."""
    if status == StepStatus.FAILED:
        error = rt.store.step_state(run_id, step_id).error
        apply_failure(rt, run_id, step_id, version, compiled.step(step_id).on_failure, error)
        return
    if status not in EARNED_STEP:
        return  # replaced by a replan: nothing follows from it
    if rt.store.step_state(run_id, step_id).held == version:
        # A checkpoint whose worker died before it asked for the review.
        rt.publish([review_message(run_id, step_id, version)])
        return
    ready = rt.store.ready_unstarted(run_id, compiled.dependents[step_id], noted=True)
    run = rt.store.run_state(run_id)
    dispatch(rt, compiled, run_id, version, ready, run.active and run.remaining == 0)


def go_on(rt: Runtime, run_id: str) -> None:
    """A paused run goes on: publish again whatever arrived while it was paused and was
    dropped: the ready steps never published (and the join if nothing remains), the
    reviews of held checkpoints, a replan for noted failures, or the partial answer of a
    run that was ending. All of them are idempotent, so a duplicate is harmless."""
    run = rt.store.run_state(run_id)
    if run.status != RunStatus.RUNNING:
        return
    if run.ending is not None:
        rt.publish([synthesize_message(run_id, run.version, partial=True)])
        return
    compiled = rt.compiled(run_id, run.version)
    dispatch(rt, compiled, run_id, run.version, rt.store.ready_unstarted(run_id),
             run.remaining == 0, redrive=True)
    held = [sid for sid, st in rt.store.step_states(run_id).items()
            if st.held == run.version]
    rt.publish([review_message(run_id, sid, run.version) for sid in held])
    failures = rt.store.unhandled(run_id)
    if failures:
        rt.publish([replan_message(run_id, failures[0], run.version)])
    for sid, st in rt.store.step_states(run_id).items():
        if st.status == StepStatus.RUNNING and sid in compiled.deps and compiled.is_agent(sid):
            _resume_agent(rt, compiled, run_id, run.version, sid)


@dataclass(frozen=True)
class AgentEnd:
    """What a conversation's end did to its agent step: ``finished`` (its answer is the
    step's output), ``failed`` for good with ``error``, or nothing (``superseded``: the
    attempt that ended it is not the step's current one)."""

    state: Literal["finished", "failed", "superseded"]
    error: ErrorRecord | None = None


def end_agent(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
              move: agent_moves.Finish | agent_moves.Fail, worker: str,
              attempt: int | None) -> AgentEnd:
    """An agent step's conversation ended (``move``, derived from its record): its answer
    becomes the step's output, or the step fails for good, as attempt ``attempt``."""
    if isinstance(move, agent_moves.Finish):
        limits = rt.settings.limits
        refused = output_problem(move.answer, limits.max_json_depth, limits.max_output_bytes)
        if refused is None:
            done = rt.store.finish_step(run_id, step_id, output=move.answer, worker=worker,
                                        hold=compiled.is_checkpoint(step_id), attempt=attempt)
            if done.state == "superseded":
                return AgentEnd("superseded")
            after_finish(rt, run_id, step_id, done)
            return AgentEnd("finished")
        error = ErrorRecord(type="OutputRefused", transient=False, attempt=attempt,
                            message=f"agent step {step_id!r}: its answer: {refused}")
    else:
        error = move.error.model_copy(update={"attempt": attempt})
    give_up(rt, compiled, run_id, step_id, version, worker, error, attempt)
    return AgentEnd("failed", error)


def _resume_agent(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int,
                  step_id: str) -> None:
    """An agent step of a run that goes on: publish its next turn, or its calls without a
    result (its turn boundary dropped them while the run was paused), holding the step
    over the hop; or end it with the answer or the failure its last turn recorded while
    the run was paused (nothing else acts on it: a reclaim would cost an attempt)."""
    step = compiled.step(step_id)
    try:
        args = resolve(step.args, rt.store.outputs(run_id, referenced_steps(step.args)))
    except RefError:
        return
    spec = agent_moves.AgentSpec.of(args)
    conv = rt.store.conversation(run_id, step_id)
    move = agent_moves.next_move(conv, spec, step_id)
    if isinstance(move, agent_moves.Finish | agent_moves.Fail):
        st = rt.store.step_state(run_id, step_id)
        end_agent(rt, compiled, run_id, step_id, version, move, st.worker or "unknown",
                  st.attempts)
        return
    begun = isinstance(move, agent_moves.Think) and move.turn < len(conv.turns)
    if not begun:
        # A turn begun and left (its run paused before the model call) is taken over
        # once the step lease lapses: hold the lease only over a hop to new work.
        engine = rt.settings.engine
        rt.store.take_leases(run_id, [step_id], engine.step_lease_s + engine.dispatch_grace_s)
    rt.publish(agent_moves.messages(compiled, run_id, version, step_id, move))


def resend(rt: Runtime, compiled: CompiledPlan, run_id: str, version: int, step_id: str,
           countdown: float) -> None:
    """Publish one step again after ``countdown`` seconds (its errback's retry, or the
    reconciler's after a lost attempt), under a new task id."""
    message = step_message(compiled, run_id, version, step_id, countdown, redrive=True)
    rt.publish([message])
    if message.task_id:
        # Its new id is the one the step lives under: a revoke of an older one is stale.
        rt.store.note_task(run_id, step_id, message.task_id)
