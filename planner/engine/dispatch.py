"""Dispatch: the messages the engine sends, and the publishers that send them.

The engine's decisions produce :class:`Message` s; a :class:`Publisher` sends them. The
Celery one (:mod:`planner.engine.publisher`) turns them into signatures published by task
name; the :class:`MemoryPublisher` records them, so every decision can be tested without a
broker or a worker. Nothing here imports Celery: a client that only reads runs never loads
it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from planner.engine.broker import StepKey
from planner.engine.compiled import CompiledPlan
from planner.wire import (
    AGENT_CALL_TASK,
    AGENT_TURN_TASK,
    DEFAULT_QUEUE,
    FINALIZE_TASK,
    LLM_QUEUE,
    PLAN_TASK,
    REPLAN_TASK,
    REVIEW_TASK,
    STEP_ERROR_TASK,
    STEP_REVOKED_TASK,
    STEP_TASK,
    SYNTHESIZE_TASK,
    task_id,
)


@dataclass(frozen=True)
class Message:
    """One task message: which task, its arguments, where it goes and how it is limited."""

    task: str
    args: tuple[Any, ...]
    queue: str
    task_id: str | None = None
    countdown: float | None = None
    soft_time_limit: float | None = None
    time_limit: float | None = None
    # Results live in the run store, not in Celery's backend.
    ignore_result: bool = False
    errback: Message | None = None
    # An errback is not immutable: Celery calls it with the failed task's id first.
    immutable: bool = True
    #: What Flower and the worker's log call the task (Celery's ``shadow`` name): the task's
    #: name and what it is about, e.g. ``chordal.step http_request hotels`` (tool, step).
    shadow: str | None = None


def _nonce(redrive: bool) -> str:
    return f".{uuid.uuid4().hex[:8]}" if redrive else ""


def step_message(compiled: CompiledPlan, run_id: str, version: int, step_id: str,
                 countdown: float | None = None, redrive: bool = False) -> Message:
    """A step's message. Its first is ``<run>.<version>.<step>``; a re-drive (a retry
    after a lost attempt, a message re-sent, a retried run) gets an id of its own,
    ``<run>.<version>.<step>.<8 hex>``: a worker discards every message whose id was
    revoked, so a re-drive under the revoked id would never run."""
    soft, hard = compiled.time_limits(step_id)
    what = f"{step_id}.{uuid.uuid4().hex[:8]}" if redrive else step_id
    return Message(
        STEP_TASK, (run_id, step_id, version), compiled.queue_of(step_id),
        task_id=task_id(run_id, version, what), countdown=countdown,
        soft_time_limit=soft, time_limit=hard,
        # Its tool too: metrics keep the tool and drop the step id (deploy/prometheus).
        ignore_result=True, shadow=f"{STEP_TASK} {compiled.step(step_id).tool} {step_id}",
        # A task that fails outside the tool (killed at the hard time limit, a worker error)
        # reports here, so its step is retried or its policy applied, never left running.
        errback=Message(STEP_ERROR_TASK, (run_id, step_id, version), DEFAULT_QUEUE,
                        task_id=task_id(run_id, version, f"{step_id}.error"),
                        immutable=False, shadow=f"{STEP_ERROR_TASK} {step_id}"))


def turn_message(compiled: CompiledPlan, run_id: str, version: int, step_id: str,
                 conv: int, turn: int, redrive: bool = False,
                 countdown: float | None = None) -> Message:
    timeout = compiled.timeout_s(step_id)
    return Message(
        AGENT_TURN_TASK, (run_id, step_id, version, conv, turn), compiled.queue_of(step_id),
        task_id=task_id(run_id, version, f"{step_id}.c{conv}t{turn}{_nonce(redrive)}"),
        countdown=countdown, soft_time_limit=timeout,
        time_limit=timeout + compiled.hard_limit_grace_s, ignore_result=True,
        shadow=f"{AGENT_TURN_TASK} {step_id} t{turn}")


def call_message(compiled: CompiledPlan, run_id: str, version: int, step_id: str,
                 conv: int, turn: int, index: int, tool_name: str, redrive: bool = False,
                 countdown: float | None = None) -> Message:
    tool = compiled.tools.get(tool_name)
    queue = tool.queue if tool is not None else compiled.queue_of(step_id)
    timeout = tool.timeout_s if tool is not None else compiled.timeout_s(step_id)
    return Message(
        AGENT_CALL_TASK, (run_id, step_id, version, conv, turn, index), queue,
        task_id=task_id(run_id, version,
                        f"{step_id}.c{conv}t{turn}i{index}{_nonce(redrive)}"),
        countdown=countdown, soft_time_limit=timeout,
        time_limit=timeout + compiled.hard_limit_grace_s, ignore_result=True,
        shadow=f"chordal.agent {step_id} \u2192 {tool_name}")


def revoked_message(run_id: str, step_id: str, worker: str, terminated: bool,
                    revoked: str, at: float) -> Message:
    """The bookkeeping of a step task ``revoked`` at ``at`` (epoch seconds) that its
    worker could not record: one per revoked task (its id is the revoked one's, plus
    ``.revoked``), unseen in Flower like a step's errback."""
    return Message(STEP_REVOKED_TASK, (run_id, step_id, worker, terminated, revoked, at),
                   DEFAULT_QUEUE, f"{revoked}.revoked")


def finalize_message(run_id: str, version: int) -> Message:
    return Message(FINALIZE_TASK, (run_id, version), DEFAULT_QUEUE,
                   task_id(run_id, version, "finalize"))


def synthesize_message(run_id: str, version: int, partial: bool = False) -> Message:
    """The synthesizer's call; ``partial``: the answer of a failed run, from what it
    earned."""
    return Message(SYNTHESIZE_TASK, (run_id, version, partial), LLM_QUEUE,
                   task_id(run_id, version, "partial" if partial else "synthesize"),
                   shadow=f"{SYNTHESIZE_TASK} partial" if partial else None)


def plan_message(run_id: str) -> Message:
    return Message(PLAN_TASK, (run_id,), LLM_QUEUE, task_id(run_id, 0, "plan"))


def review_message(run_id: str, step_id: str, version: int) -> Message:
    """Ask the replanner whether the plan is still right after checkpoint ``step_id``.
    One id per request, as for a replan: the review's claim admits its holder again."""
    return Message(REVIEW_TASK, (run_id, step_id, version), LLM_QUEUE,
                   task_id(run_id, version, f"review-{step_id}.{uuid.uuid4().hex[:8]}"),
                   shadow=f"{REVIEW_TASK} {step_id}")


def replan_message(run_id: str, step_id: str, version: int) -> Message:
    """Wake the replanner for the failures noted in ``version`` (``step_id``: the one that
    sent it; the replanner handles every failure noted when it looks). Its id,
    ``<run>.<version>.replan.<step>.<nonce>``, is one per wake-up: the replanner's claim
    admits its holder's redelivery (same id) again, so two wake-ups sharing an id would
    both pass it."""
    wake = f"{step_id}.{uuid.uuid4().hex[:8]}"
    return Message(REPLAN_TASK, (run_id, step_id, version), DEFAULT_QUEUE,
                   task_id(run_id, version, f"replan.{wake}"),
                   shadow=f"{REPLAN_TASK} {step_id}")


class Publisher(Protocol):
    """Sends messages. Publishing is at-least-once: a receiver must tolerate duplicates."""

    def publish(self, messages: Sequence[Message]) -> None: ...

    def waiting(self, queue: str) -> int | None:
        """Messages waiting in ``queue`` on the broker (not those workers reserved), or
        None if the broker cannot say."""
        ...

    def held(self, queue: str) -> set[StepKey] | None:
        """The steps whose messages wait in ``queue`` or are reserved by a worker, or None
        if the broker cannot say."""
        ...

    def queued_runs(self, queues: list[str]) -> set[str] | None:
        """The runs whose next move (a join, a plan, a replan, a review, an answer) waits
        in ``queues``, or None if the broker cannot say."""
        ...


@dataclass
class MemoryPublisher:
    """Records what would be published, in order (for tests of the engine's decisions)."""

    sent: list[Message] = field(default_factory=list)
    #: What :meth:`waiting` answers per queue (0 for any other).
    depths: dict[str, int | None] = field(default_factory=dict)
    #: What :meth:`held` answers for any queue (None: cannot say).
    holding: set[StepKey] | None = None
    #: What :meth:`queued_runs` answers.
    queued: set[str] | None = None

    def publish(self, messages: Sequence[Message]) -> None:
        self.sent.extend(messages)

    def waiting(self, queue: str) -> int | None:
        return self.depths.get(queue, 0)

    def held(self, queue: str) -> set[StepKey] | None:
        return self.holding

    def queued_runs(self, queues: list[str]) -> set[str] | None:
        return self.queued

    def tasks(self, name: str | None = None) -> list[Message]:
        return [m for m in self.sent if name is None or m.task == name]

    def clear(self) -> None:
        self.sent.clear()
