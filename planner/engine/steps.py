"""The life of a step: one delivery of its message, and its errback.

A delivery begins the step in the run store (which refuses a finished step, a replaced
plan version, an ended run, or spent attempts), resolves its ``$ref`` arguments, calls the
tool, and records the outcome before acting on it. A transient failure with attempts left
comes back as a :class:`Retry` for the task layer to schedule (so Celery shows RETRY); a
step that failed for good comes back as :class:`Failed`, for the task layer to raise (so
Celery shows FAILURE), once its outcome is recorded and acted on.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, replace

from planner import logs, tracing
from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import revoked_message
from planner.engine.inline import Chain, InlinePolicy
from planner.engine.outcomes import (
    Failed,
    Retry,
    StepFailed,
    after_finish,
    give_up,
    output_problem,
    recover,
    resend,
    retry_delay,
    retry_or_give_up,
)
from planner.engine.runtime import Runtime
from planner.errors import PermanentError, RefError, RunNotFound, ToolError, TransientError
from planner.language.refs import referenced_steps, resolve
from planner.store.records import REVOKED, ErrorRecord, RunState, StepState
from planner.tools.aio import AttemptTimeout
from planner.tools.tool import ToolContext
from planner.vocabulary import AttemptStatus, StepStatus

log = logging.getLogger("chordal.engine")

#: Frames and characters of a tool's traceback kept in its error record: the innermost
#: ones say where it failed; the whole of it is in the worker's log.
TRACEBACK_FRAMES = 12
TRACEBACK_CHARS = 4_000


def trimmed_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc, limit=-TRACEBACK_FRAMES))
    return text if len(text) <= TRACEBACK_CHARS else "...\n" + text[-TRACEBACK_CHARS:]


def _error(exc: BaseException, kind: type[ToolError], attempt: int) -> ErrorRecord:
    return ErrorRecord(type=type(exc).__name__, message=str(exc)[:4_000],
                       transient=kind is TransientError, attempt=attempt,
                       traceback=trimmed_traceback(exc))


def _errback_claim(step_id: str, attempts: int) -> str:
    """The once-per-attempt claim of a step's errback (see :func:`step_failed_outside`)."""
    return f"errback:{step_id}:{attempts}"


def _failed(rt: Runtime, run_id: str, step_id: str, task_id: str | None,
            error: BaseException) -> Failed:
    """The step failed for good, and what follows is done: take this attempt's errback
    claim first, so the errback that the task's failure fires finds nothing to do (its
    retry or recovery would repeat what is done). A worker that dies before this line
    leaves the claim free, and the errback or the redelivery recovers as ever."""
    if task_id is not None:
        attempts = rt.store.step_state(run_id, step_id).attempts
        rt.store.claim(run_id, _errback_claim(step_id, attempts), task_id)
    return Failed(error)


@dataclass(frozen=True)
class Dropped:
    """This delivery ran nothing and succeeded at nothing: the run is not running (ended,
    cancelled, paused), no current version holds the step, it is not ready yet (whoever
    unlocks it publishes it again), or it ended already without succeeding. The task
    layer ends it as revoked, so Flower never shows SUCCESS for a step that did not
    succeed (a SUCCESS row also hides a later attempt's FAILURE)."""

    why: str


def run_step(rt: Runtime, run_id: str, step_id: str, version: int, worker: str,
             timeouts: tuple[type[BaseException], ...] = (), task_id: str | None = None,
             inline: InlinePolicy | None = None) -> Retry | Failed | Dropped | Chain | None:
    """One delivery of a step. ``timeouts`` are the exceptions that mean the attempt ran
    out of time (Celery's soft time limit); ``task_id``: the delivering task's;
    ``inline``: may the task run the step this one makes ready next (a :class:`Chain`)
    instead of publishing it (planner/engine/inline.py)."""
    timeouts = (*timeouts, AttemptTimeout)  # an async tool's own time limit
    sent_version, sent_as = version, rt.compiled(run_id, version)
    max_attempts = sent_as.max_attempts(step_id)
    # Its inputs are read by the call that begins it, as the message's version defines
    # the step (the version that holds it now almost always does too).
    reads = referenced_steps(sent_as.step(step_id).args) if step_id in sent_as.deps else ()
    begin = rt.store.begin_step(run_id, step_id, version, worker, max_attempts,
                                rt.settings.engine.step_lease_s, task_id, reads)
    if begin.state == "inactive":
        return Dropped(f"step {step_id} not run ({begin.detail})")
    if begin.state == "waiting":
        return Dropped(f"step {step_id} is not ready")
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
        return None if begin.detail == StepStatus.SUCCEEDED else Dropped(f"step {step_id} is "
                                                                f"{begin.detail} already")
    step = compiled.step(step_id)
    tracing.annotate(tool=step.tool, plan_version=version)
    if begin.state == "exhausted":
        lost = ErrorRecord(
            type="WorkerLost", transient=True, attempt=int(begin.detail),
            message=f"{begin.detail} attempt(s) ended without a result (worker killed "
                    "or lost) and no attempts are left")
        give_up(rt, compiled, run_id, step_id, version, worker, lost)
        return _failed(rt, run_id, step_id, task_id, StepFailed(f"WorkerLost: {lost.message}"))

    attempt = begin.attempt
    # Every line logged from here on says which attempt it is.
    logs.add(attempt=attempt)
    tracing.annotate(attempt=attempt)
    retry_after: float | None = None
    raised: BaseException | None = None
    tool = compiled.tool_of(step_id)
    if tool is None:
        modules = ", ".join(rt.settings.tools.tool_modules) or "none"
        missing = ErrorRecord(
            type="ToolMissing", transient=False, attempt=attempt,
            message=f"worker {worker} has no tool {step.tool!r} (it loaded the built-ins "
                    f"and CHORDAL_TOOL_MODULES: {modules}); start workers with the "
                    "CHORDAL_TOOL_MODULES that define it")
        give_up(rt, compiled, run_id, step_id, version, worker, missing)
        return _failed(rt, run_id, step_id, task_id,
                       StepFailed(f"ToolMissing: {missing.message}"))
    if compiled.is_agent(step_id):
        from planner.engine import agent  # it builds on this module

        return agent.start(rt, compiled, run_id, step_id, begin, worker, task_id, timeouts)
    try:
        wanted = referenced_steps(step.args)
        args = resolve(step.args, begin.inputs if sent_version == version and reads
                       else rt.store.outputs(run_id, wanted) if wanted else {})
        with rt.leases.keep(run_id, step_id):
            output = tool.invoke(args, ToolContext(run_id, step_id, attempt,
                                                   rt.ask(run_id, step_id),
                                                   compiled.timeout_s(step_id)))
    except timeouts as exc:
        error = ErrorRecord(type="Timeout", transient=True, attempt=attempt,
                            message=f"attempt {attempt} timed out after "
                                    f"{compiled.timeout_s(step_id)} s")
        raised = exc
    except RefError as exc:
        error, raised = _error(exc, PermanentError, attempt), exc
    except Exception as exc:
        error, raised = _error(exc, tool.classify(exc), attempt), exc
        retry_after = getattr(exc, "retry_after_s", None)
    else:
        refused = output_problem(output, rt.settings.limits.max_json_depth,
                                 rt.settings.limits.max_output_bytes)
        if refused is not None:
            error = ErrorRecord(type="OutputRefused", transient=False, attempt=attempt,
                                message=f"tool {tool.name!r}: {refused}")
            output = None
        if refused is None:
            # Its dependents' first messages are noted dispatched by the finish itself.
            finish = rt.store.finish_step(
                run_id, step_id, output=output, worker=worker,
                hold=compiled.is_checkpoint(step_id), attempt=attempt,
                dispatching={d: compiled.queue_of(d) for d in compiled.dependents[step_id]})
            if finish.state == "superseded":
                log.warning("run %s: step %s attempt %d finished after another attempt "
                            "took over, or after the step was retried or ended: its result "
                            "is recorded as superseded, not as the step's", run_id, step_id,
                            attempt)
                return Dropped(f"step {step_id}: attempt {attempt} was superseded")
            if finish.version != version:
                # Installed while it ran: the queues given were the older version's; the
                # publish notes the newer one's dependents as before.
                finish = replace(finish, noted=False)
            nxt = inline.choose(rt, run_id, finish) if inline is not None else None
            if nxt is not None:
                # Noted dispatched 'p' by the finish: recovered as a message never sent.
                after_finish(rt, run_id, step_id, replace(finish, ready=()))
                return Chain(nxt, finish.version)
            after_finish(rt, run_id, step_id, finish)
            return None
    if raised is not None:
        tracing.failed(raised, error.type)
    delay = retry_or_give_up(rt, compiled, run_id, step_id, version, worker, error,
                             retry_after, attempt=attempt, tries=begin.tries)
    if delay is not None:
        # Celery logs a retry in one line; the tool's traceback is logged here. (A step
        # that failed for good raises the tool's error from its task: Celery logs that.)
        log.warning("run %s: step %s attempt %d failed (%s: %s); retrying in %.1f s",
                    run_id, step_id, attempt, error.type, error.message, delay,
                    exc_info=raised)
        return Retry(delay, raised)
    state = rt.store.step_state(run_id, step_id)
    if state.status not in (StepStatus.FAILED, StepStatus.SKIPPED) or state.superseded(attempt):
        # Not recorded as the step's: a duplicate attempt failed after another one
        # finished, this attempt was superseded, or its run was cancelled. It did not
        # succeed: never SUCCESS in Flower.
        return Dropped(f"step {step_id}: the failure of attempt {attempt} is not the "
                       "step's outcome")
    return _failed(rt, run_id, step_id, task_id, raised if raised is not None and not
                   isinstance(raised, timeouts) else StepFailed(f"{error.type}: "
                                                                f"{error.message}"))


#: How an attempt whose task can never be the step's again ended: taken for lost (its
#: re-drive gets a new task id), superseded, or revoked.
_GONE = (AttemptStatus.LOST, AttemptStatus.SUPERSEDED, AttemptStatus.REVOKED)


def is_current_task(state: StepState, task_id: str | None) -> bool:
    """Whether the step lives under the task ``task_id``: the one its last message was
    published under, or its last attempt began under (the store keeps it; Celery's own
    retry keeps the id). Any other task is stale: a superseded or lost attempt's, or a
    message a re-drive replaced. Unknown on either side (a record from before task ids
    were kept): taken for current."""
    if not task_id:
        return True
    if any(a.task == task_id and a.status in _GONE for a in state.history):
        return False
    return not state.task or state.task == task_id


def _stale(rt: Runtime, run_id: str, step_id: str, task_id: str, error: ErrorRecord,
           what: str) -> None:
    """A stale task ended: note it on its own attempt, and leave the step alone."""
    noted = rt.store.note_stale(run_id, step_id, task_id, error)
    log.warning("run %s: step %s: task %s %s, but the step lives under task %s now: %s",
                run_id, step_id, task_id, what,
                rt.store.step_state(run_id, step_id).task,
                f"attempt {noted} noted so, the step left alone" if noted
                else "left alone")


def _live(rt: Runtime, run_id: str, step_id: str
          ) -> tuple[RunState, CompiledPlan, StepState] | None:
    """The run, the version that holds the step now and the step's state, for a decision
    made outside a delivery (an errback, a revoke); None when there is nothing to decide:
    the run is gone or ended, has no plan yet, or no current version holds the step."""
    try:
        run = rt.store.run_state(run_id)
    except RunNotFound:
        return None
    if run.ended or not run.version:
        return None
    compiled = rt.compiled(run_id, run.version)
    if step_id not in compiled.deps:
        return None
    return run, compiled, rt.store.step_state(run_id, step_id)


def step_failed_outside(rt: Runtime, task_id: str, run_id: str, step_id: str,
                        version: int) -> None:
    """The errback of a step task that failed outside the tool: killed at the hard time
    limit, or an error in Chordal itself. The attempt counts; the step is retried or
    given up."""
    live = _live(rt, run_id, step_id)
    if live is None:
        return
    run, compiled, state = live
    version = run.version
    if not is_current_task(state, task_id):
        # A superseded attempt's task (or a replaced message's) failed: the step runs, or
        # will, under another; that one's errback (its own claim) speaks for it.
        _stale(rt, run_id, step_id, task_id, ErrorRecord(
            type="TaskFailed", transient=True, message=f"the task {task_id} failed "
            "outside the tool after the step moved on to another task"), "failed")
        return
    # Errbacks can fire twice for one failure (a hard time limit is also a lost worker):
    # act once per attempt.
    # The step task takes the claim itself when it fails for good on purpose, after its
    # outcome is recorded and acted on (:func:`_failed`): then there is nothing to do.
    if not rt.store.claim(run_id, _errback_claim(step_id, state.attempts), task_id):
        return
    if state.final:
        # The outcome is recorded; what follows from it may not have been published.
        recover(rt, compiled, run_id, version, step_id, state.status)
        return
    if state.status == StepStatus.PENDING:
        # It failed before it began (or its retry was never published): send it again.
        if run.active:
            resend(rt, compiled, run_id, version, step_id, retry_delay(rt.settings, 1, None))
        return
    attempt = state.attempts or 1
    tries = state.tries or 1
    error = ErrorRecord(
        type="TaskFailed", transient=True, attempt=attempt,
        message=f"attempt {attempt} ended without a result: the task {task_id} failed "
                "outside the tool (hard time limit, or a worker error; see the worker's log)")
    delay = retry_or_give_up(rt, compiled, run_id, step_id, version,
                             state.worker or "unknown", error, tries=tries)
    if delay is not None:
        resend(rt, compiled, run_id, version, step_id, delay)


#: A revoke the worker cannot record at once is tried again this many times, this many
#: seconds apart (the worker's main process waits meanwhile: keep it short), then handed
#: to a bookkeeping task (:func:`record_revoke`).
REVOKE_TRIES = 3
REVOKE_PAUSE_S = 0.2


def record_revoke(rt: Runtime, run_id: str, step_id: str, worker: str, terminated: bool,
                  task_id: str | None) -> None:
    """Record that Celery revoked a step's task, in the worker that heard it. Celery acks
    the message before it says so, so a revoke not recorded is lost (and the reconciler
    would re-drive a step a person stopped): if the run store fails, try again a few
    times, then publish the bookkeeping task ``chordal.step_revoked`` (retried until the
    store answers), which records it as of now."""
    at = time.time()
    for attempt in range(1, REVOKE_TRIES + 1):
        try:
            step_revoked(rt, run_id, step_id, worker, terminated, task_id)
            return
        except Exception as exc:
            log.warning("run %s: could not record the revoke of step %s (try %d of %d): "
                        "%s", run_id, step_id, attempt, REVOKE_TRIES, exc)
            if attempt < REVOKE_TRIES:
                time.sleep(REVOKE_PAUSE_S * attempt)
    rt.publish([revoked_message(run_id, step_id, worker, terminated,
                                task_id or f"{run_id}.{step_id}", at)])


def _revoked_while_current(state: StepState, task_id: str, at: float) -> bool:
    """A revoke recorded late (:func:`record_revoke`) applies to the attempt it stopped
    even if, meanwhile, the reconciler took that attempt for lost (its worker stopped
    renewing its lease, since its task was terminated): unless another attempt began
    since, or it was taken for lost before the revoke."""
    last = state.history[-1] if state.history else None
    return (last is not None and last.task == task_id and last.status == AttemptStatus.LOST
            and last.finished_at is not None and last.finished_at.timestamp() >= at)


def step_revoked(rt: Runtime, run_id: str, step_id: str, worker: str,
                 terminated: bool, task_id: str | None = None,
                 revoked_at: float | None = None) -> None:
    """Celery revoked a step's task ``task_id`` (Flower's Terminate, ``celery control
    revoke``): a person stopped it. The step fails for good with a ``Revoked`` error and
    its ``on_failure`` policy applies at once; re-sending it would not do: a worker
    discards every message whose task id was revoked (re-drives get new ids,
    :func:`~planner.engine.dispatch.step_message`). Unless the step lives under another
    task now (:func:`is_current_task`): the revoked one was a superseded attempt's, or a
    stale copy. ``revoked_at``: when it was revoked, if it is recorded late."""
    live = _live(rt, run_id, step_id)
    if live is None:
        return
    run, compiled, state = live
    version = run.version
    if state.final:
        return
    how = ("terminated while it ran" if terminated
           else "revoked: the worker discarded its message")
    if task_id and not is_current_task(state, task_id) and not (
            revoked_at is not None and _revoked_while_current(state, task_id, revoked_at)):
        _stale(rt, run_id, step_id, task_id, ErrorRecord(
            type=REVOKED, transient=False, message=f"its task was {how}, after the step "
            "moved on to another task"), "was revoked")
        return
    error = ErrorRecord(
        type=REVOKED, transient=False, attempt=state.attempts or None,
        message=f"its task was {how} (Flower's Terminate, or celery control revoke); a "
                "revoked step is not run again by itself: `chordal retry` re-drives it")
    log.warning("run %s: step %s: %s", run_id, step_id, error.message)
    give_up(rt, compiled, run_id, step_id, version, worker, error)
