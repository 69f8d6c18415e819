"""The run store's words, written once: event types, run, step and attempt statuses, and the
sets of them the engine reasons with. The Lua scripts (planner/store/lua), the run page's
JavaScript and CSS (planner/service/page) and the terminal view use the same strings;
tests/test_vocabulary.py fails when any of them says a word this module does not, and the
page's ``vocabulary.js`` is generated from here (``python -m planner.vocabulary``).
docs/events.md describes each event and the status machines.

Members are ``str``: they compare equal to, and are stored and sent as, their value."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path


class RunStatus(StrEnum):
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    #: A replan left it out before it started.
    REPLACED = "replaced"
    #: Its run ended while it waited or ran (a late result is still recorded).
    CANCELLED = "cancelled"


class AttemptStatus(StrEnum):
    """How one attempt of a step ended (its record in the step's ``history``)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Its worker stopped renewing its lease: taken for dead.
    LOST = "lost"
    #: Celery revoked its task.
    REVOKED = "revoked"
    #: Its run ended while it ran.
    CANCELLED = "cancelled"
    #: It reported an outcome after another attempt took over, or after the step was
    #: retried or ended: recorded there only.
    SUPERSEDED = "superseded"


class EventType(StrEnum):
    """The ``type`` of an entry of a run's event stream (docs/events.md: when each is
    written and what its ``data`` holds)."""

    RUN_CREATED = "run.created"
    RUN_STARTED = "run.started"
    #: ``set_status``: a run moved to (or back from) a waiting status; one per status.
    RUN_AWAITING_APPROVAL = "run.awaiting_approval"
    RUN_PENDING = "run.pending"
    RUN_PAUSED = "run.paused"
    RUN_RUNNING = "run.running"
    RUN_FINISHED = "run.finished"
    RUN_RETRIED = "run.retried"
    RUN_REPAIRED = "run.repaired"
    RUN_CALLBACK_SENT = "run.callback_sent"
    RUN_CALLBACK_FAILED = "run.callback_failed"
    PLAN_INSTALLED = "plan.installed"
    #: A step of a plan that streams in was written whole (``CHORDAL_STREAM_PLANS``).
    PLAN_STEP_WRITTEN = "plan.step_written"
    STEP_STARTED = "step.started"
    STEP_FINISHED = "step.finished"
    STEP_RETRYING = "step.retrying"
    STEP_RELEASED = "step.released"
    STEP_SUPERSEDED = "step.superseded"
    #: A step started while its plan streamed in, which the final plan contradicts.
    STEP_CANCELLED = "step.cancelled"
    #: An agent step's model turn began (``thinking``) or was recorded (its ``TurnKind``).
    AGENT_TURN = "agent.turn"
    #: One tool call of an agent step changed state (its ``CallStatus``).
    AGENT_TOOL_CALL = "agent.tool_call"


class TurnKind(StrEnum):
    """What one model turn of an agent step came to (``thinking`` while the model answers)."""

    THINKING = "thinking"
    #: It asked for tool calls; the next turn runs once each has a result.
    TOOLS = "tools"
    #: It asked only for calls that were refused (unknown tool, bad args): the model sees why.
    REFUSED = "refused"
    #: It answered: the step's output.
    FINAL = "final"
    #: Its answer did not fit ``output_schema``: one more turn to repair it.
    REPAIR = "repair"
    #: The repaired answer did not fit either: the step fails (``OutputInvalid``).
    INVALID = "invalid"
    #: It asked for tools at its last turn: the step fails (``MaxTurns``).
    MAX_TURNS = "max_turns"


class CallStatus(StrEnum):
    """One tool call an agent step's model asked for."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Refused before it ran (no such tool here, bad arguments): the model sees why.
    REFUSED = "refused"
    #: Its step ended before it ran (shown so in a report, never stored).
    CANCELLED = "cancelled"


RUN_STATUSES: tuple[RunStatus, ...] = tuple(RunStatus)

#: A step in one of these states never changes again (``is_final`` in ``lib.lua`` is the
#: same rule). ``cancelled`` is not final: a late result is still recorded.
FINAL_STEP: frozenset[StepStatus] = frozenset({
    StepStatus.SUCCEEDED, StepStatus.SKIPPED, StepStatus.FAILED, StepStatus.REPLACED})
#: A step in one of these states has earned its output; its dependents may run.
EARNED_STEP: frozenset[StepStatus] = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})
#: A run in one of these states waits for a person (``chordal approve`` / ``resume``).
WAITING_RUN: frozenset[RunStatus] = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.PAUSED})
#: A run in one of these states has ended.
TERMINAL_RUN: frozenset[RunStatus] = frozenset({
    RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
#: The statuses ``set_status.lua`` moves a run between, each move a ``run.<status>`` event.
MOVABLE_RUN: frozenset[RunStatus] = frozenset({
    RunStatus.PENDING, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.PAUSED})


def moved(status: RunStatus) -> EventType:
    """The event ``set_status.lua`` writes when a run moves to ``status``."""
    return EventType(f"run.{status}")


#: The page's copy (planner/service/page/vocabulary.js), written by :func:`javascript`.
JS_PATH = Path(__file__).resolve().parent / "service" / "page" / "vocabulary.js"


def javascript() -> str:
    """The vocabulary as an ES module for the run page."""

    def words(enum: type[StrEnum], only: frozenset[str] | None = None) -> str:
        # In the order of the enum: the page lists them so.
        return json.dumps([m.value for m in enum if only is None or m in only])

    def table(enum: type[StrEnum]) -> str:
        rows = "".join(f"  {m.name}: {json.dumps(m.value)},\n" for m in enum)
        return f"Object.freeze({{\n{rows}}})"

    return (
        "// Generated from planner/vocabulary.py by `python -m planner.vocabulary`: do not\n"
        "// edit (tests/test_vocabulary.py fails when it is stale).\n"
        f"export const RUN = {table(RunStatus)};\n"
        f"export const STEP = {table(StepStatus)};\n"
        f"export const ATTEMPT = {table(AttemptStatus)};\n"
        f"export const EVENT = {table(EventType)};\n"
        f"export const TURN = {table(TurnKind)};\n"
        f"export const CALL = {table(CallStatus)};\n"
        f"export const RUN_STATUSES = {words(RunStatus)};\n"
        f"export const STEP_STATUSES = {words(StepStatus)};\n"
        f"export const ATTEMPT_STATUSES = {words(AttemptStatus)};\n"
        f"export const TERMINAL_RUN = new Set({words(RunStatus, TERMINAL_RUN)});\n"
        f"export const WAITING_RUN = new Set({words(RunStatus, WAITING_RUN)});\n"
        f"export const FINAL_STEP = new Set({words(StepStatus, FINAL_STEP)});\n"
        f"export const EARNED_STEP = new Set({words(StepStatus, EARNED_STEP)});\n")


if __name__ == "__main__":
    # Rewrite the page's copy (or, with --check, only say whether it is current).
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if JS_PATH.read_text(encoding="utf-8") == javascript() else 1)
    JS_PATH.write_text(javascript(), encoding="utf-8")
