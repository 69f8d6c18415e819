"""An agent step's turns: one model call per task, each recorded before anything follows
from it (docs/design/agent-steps.md §3).

The step's own ``chordal.step`` delivery (:func:`start`) resolves its arguments and acts
on what the recorded conversation calls for (turn 0 on a first delivery; on a redelivery
or a re-drive it resumes). Each later turn is a ``chordal.agent_turn`` task
(:func:`run_turn`); tool calls are ``chordal.agent_call`` tasks
(:mod:`planner.engine.agent_calls`). The decisions are :mod:`planner.engine.agent_moves`'s;
this module does the I/O. Each entry point returns the engine's usual
``Retry | Failed | Dropped | None``.
"""

from __future__ import annotations

import logging
from typing import Any

from planner import metrics
from planner.engine import agent_moves as moves
from planner.engine.compiled import CompiledPlan
from planner.engine.metering import stop_for_budget
from planner.engine.outcomes import (
    Failed,
    Retry,
    StepFailed,
    after_finish,
    give_up,
    model_retry,
)
from planner.engine.runtime import Runtime
from planner.engine.steps import Dropped, _failed, output_problem
from planner.errors import BudgetExceeded, ChordalError, RefError, TransientError
from planner.language.refs import referenced_steps, resolve
from planner.language.validation import Limits
from planner.llm import roles
from planner.store.agents import NewCall
from planner.store.failure import ErrorRecord
from planner.store.steps import Begin
from planner.vocabulary import RunStatus, TurnKind

log = logging.getLogger("chordal.engine")

Decision = Retry | Failed | Dropped | None


def handoff_s(rt: Runtime) -> float:
    """How long the step lease covers the hop from one task to the next."""
    return rt.settings.engine.step_lease_s + rt.settings.engine.dispatch_grace_s


def spec_of(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str
            ) -> moves.AgentSpec:
    """The step's arguments, resolved (its $refs point at finished steps: they never
    change, so every turn resolves the same)."""
    step = compiled.step(step_id)
    args = resolve(step.args, rt.store.outputs(run_id, referenced_steps(step.args)))
    return moves.AgentSpec.of(args)


def _give_up(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str,
             version: int, worker: str, error: ErrorRecord, attempt: int | None,
             task_id: str | None) -> Failed:
    give_up(rt, compiled, run_id, step_id, version, worker, error, attempt)
    return _failed(rt, run_id, step_id, task_id, StepFailed(f"{error.type}: {error.message}"))


def start(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, begin: Begin,
          worker: str, task_id: str | None,
          timeouts: tuple[type[BaseException], ...] = ()) -> Decision:
    """The step's own delivery, once ``begin_step`` said run: resume the conversation
    where its record says (turn 0 when there is none)."""
    version = begin.version
    try:
        spec = spec_of(rt, compiled, run_id, step_id)
    except RefError as exc:
        return _give_up(rt, compiled, run_id, step_id, version, worker, ErrorRecord(
            type="RefError", message=str(exc)[:4_000], transient=False,
            attempt=begin.attempt), begin.attempt, task_id)
    conv = rt.store.conversation(run_id, step_id)
    move = moves.next_move(conv, spec, step_id)
    if isinstance(move, moves.Think):
        return _turn(rt, compiled, run_id, step_id, version, spec, move.conv, move.turn,
                     worker, task_id, 0, begin.attempt, inline=True, timeouts=timeouts)
    return act(rt, compiled, run_id, step_id, version, move, worker, begin.attempt, task_id)


def act(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
        move: moves.Move, worker: str, attempt: int | None, task_id: str | None,
        redrive: bool = True) -> Decision:
    """Carry out a move derived from the record (a resume): publish a turn or the calls
    without a result, finish with a recorded answer, or fail."""
    if isinstance(move, moves.Finish):
        return finish(rt, compiled, run_id, step_id, version, move.answer, worker, attempt,
                      task_id)
    if isinstance(move, moves.Fail):
        return _give_up(rt, compiled, run_id, step_id, version, worker,
                        move.error.model_copy(update={"attempt": attempt}), attempt, task_id)
    rt.store.take_leases(run_id, [step_id], handoff_s(rt))
    rt.publish(moves.messages(compiled, run_id, version, step_id, move, redrive))
    return None


def finish(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
           answer: Any, worker: str, attempt: int | None, task_id: str | None) -> Decision:
    """The conversation answered: the answer is the step's output."""
    limits = rt.settings.limits
    refused = output_problem(answer, limits.max_json_depth, limits.max_output_bytes)
    if refused is not None:
        return _give_up(rt, compiled, run_id, step_id, version, worker, ErrorRecord(
            type="OutputRefused", transient=False, attempt=attempt,
            message=f"agent step {step_id!r}: its answer: {refused}"), attempt, task_id)
    done = rt.store.finish_step(run_id, step_id, output=answer, worker=worker,
                                hold=compiled.is_checkpoint(step_id), attempt=attempt)
    if done.state == "superseded":
        return Dropped(f"step {step_id}: attempt {attempt} was superseded")
    after_finish(rt, run_id, step_id, done)
    return None


def run_turn(rt: Runtime, run_id: str, step_id: str, version: int, conv: int, turn: int,
             worker: str, task_id: str | None, retries: int,
             timeouts: tuple[type[BaseException], ...] = ()) -> Decision:
    """``chordal.agent_turn``: one model turn (``retries``: this task's Celery retries;
    ``timeouts``: what means the turn ran out of time, as for :func:`steps.run_step`)."""
    compiled = rt.compiled(run_id, version)
    try:
        spec = spec_of(rt, compiled, run_id, step_id)
    except RefError as exc:  # its $refs resolved at turn 0; a replan replaced them since
        return Dropped(f"step {step_id}: {exc}")
    return _turn(rt, compiled, run_id, step_id, version, spec, conv, turn, worker, task_id,
                 retries, None, timeouts=timeouts)


def _turn(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
          spec: moves.AgentSpec, conv: int, turn: int, worker: str, task_id: str | None,
          retries: int, attempt: int | None, inline: bool = False,
          timeouts: tuple[type[BaseException], ...] = ()) -> Decision:
    engine = rt.settings.engine
    begun = rt.store.begin_turn(run_id, step_id, conv, turn, worker, engine.step_lease_s,
                                task_id, attempt)
    if begun.state == "done":
        # Recorded already (its worker died after record_turn): carry its next move out.
        state = rt.store.conversation(run_id, step_id)
        move = moves.next_move(state, spec, step_id)
        step_attempt = rt.store.step_state(run_id, step_id).attempts
        decision = act(rt, compiled, run_id, step_id, version, move, worker, step_attempt,
                       task_id)
        return decision if decision is not None else Dropped(
            f"step {step_id}: turn {turn} was recorded already")
    if begun.state == "exhausted":
        error = ErrorRecord(type="WorkerLost", transient=True, message=(
            f"agent step {step_id!r}: turn {turn} was begun {begun.tries} times without "
            "an answer (workers killed or lost)"))
        return _give_up(rt, compiled, run_id, step_id, version, worker, error, None, task_id)
    if begun.state != "run":
        # inactive (run or step ended, paused, re-driven), early, or busy elsewhere.
        return Dropped(f"step {step_id}: turn {turn} not run ({begun.state} "
                       f"{begun.why})".strip())
    version, step_attempt = begun.version, begun.attempt
    compiled = rt.compiled(run_id, version)  # the version that holds the step now
    conversation = rt.store.conversation(run_id, step_id)
    metered = rt.metered(run_id, step_id)
    if metered is None:
        return _give_up(rt, compiled, run_id, step_id, version, worker, ErrorRecord(
            type="ModelError", transient=False, attempt=step_attempt,
            message=f"agent step {step_id!r} needs a model: this worker has none (set "
                    "ANTHROPIC_API_KEY or CHORDAL_LLM)"), step_attempt, task_id)
    tools = {name: compiled.tools[name] for name in spec.tools if name in compiled.tools}
    try:
        request = roles.agent_request(rt.settings, spec, conversation.turns, tools,
                                      metered.options.roles, step_id)
        with rt.leases.keep(run_id, step_id):
            # The budget is checked once the turn is recorded (below): whoever watches
            # the run sees the turn that crossed it before the run stops.
            response = metered.complete(request, stop_when_over=False)
    except BudgetExceeded as exc:
        return Dropped(f"step {step_id}: {exc}")
    except Exception as failed:
        if isinstance(failed, timeouts):  # the turn's time limit: one model call
            model_error: ChordalError = TransientError(
                f"the model call ran out of the turn's {compiled.timeout_s(step_id)} s")
        elif isinstance(failed, ChordalError):
            model_error = failed
        else:
            raise
        if rt.store.run_state(run_id).status == RunStatus.PAUSED:
            # The turn stays begun, its call not made: let the step lease go, so the turn
            # the resumed run publishes (outcomes.go_on) takes it over at once.
            rt.store.take_leases(run_id, [step_id], 0)
            return Dropped(f"step {step_id}: the run paused at its budget")
        again = model_retry(rt.settings, model_error, retries)
        if again is None:
            return _give_up(rt, compiled, run_id, step_id, version, worker, ErrorRecord(
                type="ModelError", transient=isinstance(model_error, TransientError),
                attempt=step_attempt, message=f"agent step {step_id!r}, turn {turn}: "
                f"{type(model_error).__name__}: {model_error}"[:4_000]), step_attempt, task_id)
        if inline:
            # The step's own task hands the turn on to a task of its own, which takes the
            # thinking turn over once the step lease lapses: held until then.
            rt.store.take_leases(run_id, [step_id], again.countdown)
            rt.publish([moves.turn_message(compiled, run_id, version, step_id, conv, turn,
                                           redrive=True, countdown=again.countdown)])
            return None
        # Hold the step through the countdown, so the reconciler leaves it alone (Celery's
        # retry keeps this task's id: it takes its own thinking turn over).
        rt.store.take_leases(run_id, [step_id], again.countdown + engine.step_lease_s)
        return again
    verdict = moves.judge(response, spec, turn, moves.repaired(conversation),
                          compiled.tools, Limits.from_settings(rt.settings))
    u = response.usage
    recorded = rt.store.record_turn(
        run_id, step_id, conv, turn, task_id, kind=verdict.kind, content=response.content,
        text=response.text(), stop_reason=response.stop_reason,
        usage={"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
               "cache_read_input_tokens": u.cache_read_input_tokens,
               "cache_creation_input_tokens": u.cache_creation_input_tokens},
        latency_ms=round(response.latency_s * 1000), answer=verdict.answer,
        problems=list(verdict.problems) or None,
        calls=[NewCall(c.index, c.tool, c.args, c.id or None, _queue(compiled, c.tool),
                       c.error) for c in verdict.calls],
        handoff_s=handoff_s(rt))
    if recorded.state != "ok":
        return Dropped(f"step {step_id}: turn {turn} was {recorded.state}")
    metrics.agent_turn(str(verdict.kind))
    for call in verdict.calls:
        if call.error is not None:
            metrics.agent_call(call.tool, "refused", None)
    over = metered.over_budget()
    if over and recorded.active:
        # Nothing new starts. Its calls are recorded, not published: a run paused at its
        # budget publishes them when it goes on (outcomes.go_on); an ended one shows them
        # cancelled. An answer is kept: the partial answer has it.
        if verdict.kind == TurnKind.FINAL:
            finish(rt, compiled, run_id, step_id, version, verdict.answer, worker,
                   step_attempt, task_id)
        stop_for_budget(rt.store, run_id, over, metered.options)
        return Dropped(f"step {step_id}: turn {turn} recorded; the run's budget is spent")
    if not recorded.active:
        return Dropped(f"step {step_id}: turn {turn} recorded; the run stopped meanwhile")
    return _follow(rt, compiled, run_id, step_id, version, conv, turn, verdict, worker,
                   step_attempt, task_id)


def _follow(rt: Runtime, compiled: CompiledPlan, run_id: str, step_id: str, version: int,
            conv: int, turn: int, verdict: moves.Verdict, worker: str, attempt: int,
            task_id: str | None) -> Decision:
    """What a recorded verdict sets off."""
    kind = verdict.kind
    if kind == TurnKind.TOOLS:
        rt.publish([moves.call_message(compiled, run_id, version, step_id, conv, turn,
                                       c.index, c.tool) for c in verdict.pending])
        return None
    if kind == TurnKind.FINAL:
        return finish(rt, compiled, run_id, step_id, version, verdict.answer, worker,
                      attempt, task_id)
    if kind in (TurnKind.REPAIR, TurnKind.REFUSED):
        rt.publish([moves.turn_message(compiled, run_id, version, step_id, conv,
                                       turn + 1)])
        return None
    spec = spec_of(rt, compiled, run_id, step_id)
    error = (moves.max_turns_error(step_id, spec, _LastTurn(turn, verdict))
             if kind == TurnKind.MAX_TURNS else moves.invalid_error(step_id,
                                                                    verdict.problems))
    return _give_up(rt, compiled, run_id, step_id, version, worker,
                    error.model_copy(update={"attempt": attempt}), attempt, task_id)


class _LastTurn:
    """The turn just judged, as :func:`agent_moves.max_turns_error` reads a record."""

    def __init__(self, turn: int, verdict: moves.Verdict) -> None:
        self.turn, self.calls, self.text = turn, verdict.calls, verdict.text


def _queue(compiled: CompiledPlan, tool: str) -> str:
    known = compiled.tools.get(tool)
    return known.queue if known is not None else ""
