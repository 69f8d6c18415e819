"""One tool call of an agent step (``chordal.agent_call``): ``run_step``'s tool path for a
call the model asked for. ``begin_call`` hands out the tool and its arguments (or says
why not: a call with a result never runs again); ``finish_call`` records the outcome, and
the call that settles its turn's last one publishes the next turn."""

from __future__ import annotations

import logging
import time
from typing import Any, Literal

from planner import metrics, tracing
from planner.engine import agent_moves as moves
from planner.engine.outcomes import Failed, Retry, StepFailed, retry_delay
from planner.engine.runtime import Runtime
from planner.engine.steps import Dropped, _error, output_problem
from planner.store.failure import ErrorRecord
from planner.store.keys import call_lease
from planner.store.records import REVOKED
from planner.tools.aio import AttemptTimeout
from planner.tools.tool import ToolContext

log = logging.getLogger("chordal.engine")

Decision = Retry | Failed | Dropped | None

#: ``begin_call``'s own bound on attempts: the tool's ``max_retries`` is checked here,
#: once the call's record says which tool it is.
ATTEMPTS_CAP = 1_000


def _handoff_s(rt: Runtime) -> float:
    return rt.settings.engine.step_lease_s + rt.settings.engine.dispatch_grace_s


def _metric(tool: str, outcome: str, seconds: float | None) -> None:
    metrics.agent_call(tool, outcome, seconds)


def run_call(rt: Runtime, run_id: str, step_id: str, version: int, conv: int, turn: int,
             index: int, worker: str, timeouts: tuple[type[BaseException], ...] = (),
             task_id: str | None = None) -> Decision:
    timeouts = (*timeouts, AttemptTimeout)
    engine = rt.settings.engine
    begun = rt.store.begin_call(run_id, step_id, conv, turn, index, worker, ATTEMPTS_CAP,
                                engine.step_lease_s, task_id)
    if begun.state == "busy":
        # Running under a live lease elsewhere: come back when it would lapse (its worker
        # died: this message takes the call over then).
        return Retry(begun.secs + 1.0)
    if begun.state == "done":
        # Its worker may have died between finish_call and publishing the next turn.
        if begun.left == 0 and not begun.next_begun:
            _next_turn(rt, run_id, step_id, version, conv, turn, redrive=True)
        return Dropped(f"step {step_id}: call t{turn}.c{index} has a result already")
    if begun.state == "exhausted":
        return _failed(rt, run_id, step_id, version, conv, turn, index, "", ErrorRecord(
            type="WorkerLost", transient=True, attempt=begun.attempts,
            message=f"{begun.attempts} attempt(s) ended without a result (worker killed "
                    "or lost) and no attempts are left"), None, None)
    if begun.state != "run":
        return Dropped(f"step {step_id}: call t{turn}.c{index} not run ({begun.state} "
                       f"{begun.why or begun.attempts})")
    attempt, name, args = begun.attempt, begun.tool, begun.args
    tracing.annotate(tool=name, attempt=attempt)
    tool = rt.tools.get(name)
    if tool is None:
        return _failed(rt, run_id, step_id, version, conv, turn, index, name, ErrorRecord(
            type="ToolMissing", transient=False, attempt=attempt,
            message=f"worker {worker} has no tool {name!r}"), None, None, attempt=attempt)
    if attempt > tool.max_retries + 1:
        return _failed(rt, run_id, step_id, version, conv, turn, index, name, ErrorRecord(
            type="WorkerLost", transient=True, attempt=attempt,
            message=f"{attempt - 1} attempt(s) ended without a result (worker killed or "
                    "lost) and no attempts are left"), None, None, attempt=attempt)
    started = time.monotonic()
    retry_after: float | None = None
    raised: BaseException | None = None
    try:
        with rt.leases.keep(run_id, call_lease(step_id, turn, index)):
            output = tool.invoke(args, _context(rt, run_id, step_id, attempt, tool.timeout_s,
                                                f"t{turn}.c{index}"))
    except timeouts as exc:
        error = ErrorRecord(type="Timeout", transient=True, attempt=attempt,
                            message=f"attempt {attempt} timed out after {tool.timeout_s} s")
        raised = exc
    except Exception as exc:
        error, raised = _error(exc, tool.classify(exc), attempt), exc
        retry_after = getattr(exc, "retry_after_s", None)
    else:
        took = time.monotonic() - started
        limits = rt.settings.limits
        refused = output_problem(output, limits.max_json_depth, limits.max_output_bytes)
        if refused is None:
            return _settled(rt, run_id, step_id, version, conv, turn, index, attempt,
                            output, None, (name, took))
        error = ErrorRecord(type="OutputRefused", transient=False, attempt=attempt,
                            message=f"tool {name!r}: {refused}")
    took = time.monotonic() - started
    if raised is not None:
        tracing.failed(raised, error.type)
    if error.transient and attempt < tool.max_retries + 1:
        delay = retry_delay(rt.settings, attempt, retry_after)
        reply = rt.store.finish_call(run_id, step_id, conv, turn, index, outcome="retry",
                                     error=error, attempt=attempt, delay_s=delay,
                                     queue=tool.queue, handoff_s=_handoff_s(rt))
        if reply.state != "retry":
            return Dropped(f"step {step_id}: call t{turn}.c{index} was {reply.state}")
        _metric(name, "retry", took)
        log.warning("run %s: step %s call t%d.c%d (%s) attempt %d failed (%s: %s); "
                    "retrying in %.1f s", run_id, step_id, turn, index, name, attempt,
                    error.type, error.message, delay, exc_info=raised)
        return Retry(delay, raised)
    return _failed(rt, run_id, step_id, version, conv, turn, index, name, error, raised,
                   took, timeouts, attempt)


def _context(rt: Runtime, run_id: str, step_id: str, attempt: int, timeout_s: float,
             call_id: str) -> ToolContext:
    return ToolContext(run_id, step_id, attempt, rt.ask(run_id, step_id), timeout_s,
                       call_id=call_id)


def _failed(rt: Runtime, run_id: str, step_id: str, version: int, conv: int, turn: int,
            index: int, name: str, error: ErrorRecord, raised: BaseException | None,
            took: float | None, timeouts: tuple[type[BaseException], ...] = (),
            attempt: int | None = None) -> Decision:
    """The call failed for good: the model sees its error as an ``is_error`` result."""
    decision = _settled(rt, run_id, step_id, version, conv, turn, index, attempt, None,
                        error, (name, took))
    if decision is not None:
        return decision
    # Celery shows FAILURE with the tool's own error (a timeout: the engine's words).
    return Failed(raised if raised is not None and not isinstance(raised, timeouts)
                  else StepFailed(f"{error.type}: {error.message}"))


def _settled(rt: Runtime, run_id: str, step_id: str, version: int, conv: int, turn: int,
             index: int, attempt: int | None, output: Any, error: ErrorRecord | None,
             ran: tuple[str, float | None] | None = None) -> Dropped | None:
    """Record a call's result (``error`` None: it succeeded with ``output``); the turn's
    last one publishes the next turn. ``ran``: the tool and how long it ran, counted
    once the result is recorded as the call's."""
    outcome: Literal["succeeded", "failed"] = "succeeded" if error is None else "failed"
    reply = rt.store.finish_call(run_id, step_id, conv, turn, index, outcome=outcome,
                                 output=output, error=error, attempt=attempt,
                                 handoff_s=_handoff_s(rt))
    if ran is not None and reply.state in ("ok", "last", "recorded"):
        _metric(ran[0], outcome, ran[1])
    if reply.state == "last":
        _next_turn(rt, run_id, step_id, reply.version or version, conv, turn)
        return None
    if reply.state in ("ok", "recorded"):
        return None
    return Dropped(f"step {step_id}: call t{turn}.c{index} was {reply.state}")


def _next_turn(rt: Runtime, run_id: str, step_id: str, version: int, conv: int, turn: int,
               redrive: bool = False) -> None:
    compiled = rt.compiled(run_id, version)
    rt.publish([moves.turn_message(compiled, run_id, version, step_id, conv, turn + 1,
                                   redrive)])



def call_revoked(rt: Runtime, args: tuple[Any, ...], terminated: bool,
                 task_id: str | None) -> None:
    """Celery revoked a call's task (Flower's Terminate): the call fails for good with a
    ``Revoked`` error, which the model reads at its next turn."""
    run_id, step_id, version, conv, turn, index = args[:6]
    how = "terminated while it ran" if terminated else "revoked before it ran"
    error = ErrorRecord(type=REVOKED, transient=False,
                        message=f"its task {task_id} was {how} (Flower's Terminate, or "
                                "celery control revoke)")
    _settled(rt, run_id, step_id, int(version), int(conv), int(turn), int(index), None,
             None, error)
