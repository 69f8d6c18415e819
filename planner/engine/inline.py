"""Inline steps: a finish that made exactly one step ready runs it in the same task.

A chain of steps otherwise costs one broker hop per step (publish, deliver, ack). When a
step's finish makes exactly one dependent ready and the worker running it consumes that
dependent's queue, the task runs the dependent next itself (:class:`InlinePolicy`
decides; the task layer, ``workers/inline.py``, runs it with its own Celery events and
span). The dependent is begun as any delivery begins it (``begin_step`` with the task id
its first message would have had, the one ``finish_step`` noted as its live task), so it
gets its own attempt record, lease, events and metrics.

Why it is safe, at-least-once: ``finish_step`` notes the dependent dispatched ``'p'``
("to be published") exactly as when its message is published next, so

- a worker that dies between the finish and the dependent's begin leaves a ready step
  noted but held by no queue: the redelivered message of the finished step recovers it
  (``recover`` republishes 'p'-noted steps), and otherwise the reconciler re-drives it as
  ``message_lost`` (which it is: the message was never sent) after CHORDAL_LOST_GRACE_S;
- a worker that dies during the dependent holds its lease: the reconciler re-drives it as
  ``lease_expired``, as for any step.

What is never inlined: an agent step (its turns and calls are tasks of their own), a
checkpoint (its review must follow it as a task), a step of a run whose plan still
streams (a contradicted early step is revoked by its task id, which no message carries
here), a step in a queue this worker does not consume (another pool serves it), the last
step's join (``join_here`` does that), and anything once ``max_in_row`` steps ran in the
task (a long chain hops through the broker then, so other work gets its turn) or when
what is left of the task's time limit does not cover the step's whole hold (its
``timeout_s``, the grace to its hard stop and the process's own end after it). Celery's
limits count from the task's start: with inline steps on, the worker arms each step's own
stops around it (workers/deadline.py), and a step's message carries only a hard limit
that bounds its chain (``CompiledPlan.time_limits``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from planner.engine.runtime import Runtime
from planner.store.runs import Finish

#: Seconds kept in hand beyond an inline step's hold before the task's time limit, for
#: recording its outcome.
TIME_MARGIN_S = 5.0


@dataclass(frozen=True)
class Chain:
    """A step's finish made ``step_id`` ready, and this task runs it next (in ``version``):
    no message was published for it."""

    step_id: str
    version: int


@dataclass
class InlinePolicy:
    """Which step, if any, a task runs next in place of publishing it."""

    #: The queues this worker consumes.
    queues: Collection[str]
    #: How many more steps this task may run inline.
    left: int
    #: Seconds left before the task's time limit (None: none is enforced).
    time_left: Callable[[], float | None] = lambda: None
    #: Runs seen with a plan that no longer streams (the mark is only set while the first
    #: plan streams in, before any step finishes: one look per run and task).
    settled: set[str] = field(default_factory=set)

    def choose(self, rt: Runtime, run_id: str, finish: Finish) -> str | None:
        if self.left <= 0 or finish.state != "ok" or not finish.noted \
                or len(finish.ready) != 1:
            return None
        nxt = finish.ready[0]
        compiled = rt.compiled(run_id, finish.version)
        if nxt not in compiled.deps or compiled.is_agent(nxt) \
                or compiled.is_checkpoint(nxt) or compiled.queue_of(nxt) not in self.queues:
            return None
        left = self.time_left()
        if left is not None and left < compiled.hold_s(nxt) + TIME_MARGIN_S:
            return None
        if run_id not in self.settled:
            if rt.store.streaming(run_id):
                return None
            self.settled.add(run_id)
        self.left -= 1
        return nxt
