"""Whether an agent step whose step lease lapsed is still at work (design §5), with no I/O.

An agent step is a ``running`` step whose work hops between short tasks: a turn task holds
the step lease while the model answers, each tool call task a call lease of its own
(``~<step>|<turn>|<index>`` in the run's leases), and ``record_turn``/``finish_call``
stretch the step lease over the hop to what they publish (a lease plus the dispatch
grace). Between hops nothing holds the step lease, so it lapses by design while tool calls
run, and a queue backlog longer than the hop lets it lapse while nothing is lost. The
reconciler's :func:`~planner.engine.reconcile.diagnose` asks :func:`at_work` before it
takes such a step for lost; the step is at work while

- (a) one of its calls runs under a live call lease (:func:`calling`; ``alive`` counts it);
- (b) a call published and not begun (``StepState.calls_due``) is within the dispatch
  grace of its due time, or its message may still wait in its queue;
- (c) a message of the step may still wait in the step's own queue (its next turn, behind
  a backlog).

"May still wait" is judged as for a pending step's message: found in the broker (or the
broker cannot say) while its queue is not empty, or missing on one look only (a worker
takes a message off its queue a moment before it notes it reserved). A message found only
as a worker's reservation while its queue is empty is a dead worker's, or starts now: the
step is reclaimed and its next attempt resumes the conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

#: A call lease's name starts with this, then ``<step>|<turn>|<index>``.
CALL_LEASE = "~"


@dataclass(frozen=True)
class Look:
    """What one look at a queue found of one step's messages."""

    #: A message of the step waits in the queue or is reserved by a worker; None: the
    #: broker cannot say (RabbitMQ, a global key prefix, too many messages to read).
    held: bool | None
    #: While ``held`` is False: since when (Redis clock) no look has found one.
    missing_since: float | None = None


def lease_step(name: str) -> str | None:
    """The step a call lease is named for, or None for any other lease."""
    if not name.startswith(CALL_LEASE):
        return None
    return name[len(CALL_LEASE):].split("|", 1)[0] or None


def calling(leases: Mapping[str, float], now: float) -> set[str]:
    """The steps with a tool call at work: a call lease that holds at ``now``."""
    return {sid for name, until in leases.items()
            if until > now and (sid := lease_step(name)) is not None}


def may_wait(look: Look, depth: int | None, now: float, confirm_s: float) -> bool:
    """Whether a message of the step may still wait in a queue holding ``depth`` messages
    (None: the broker cannot say)."""
    if look.held is False:
        return look.missing_since is not None and now - look.missing_since < confirm_s
    return depth != 0


def at_work(step_id: str, calls_due: Mapping[str, Sequence[Any]], now: float, grace_s: float,
            own_queue: str, waiting_in: Callable[[str], int | None],
            look_in: Callable[[str, str], Look], confirm_s: float) -> str | None:
    """Why the running agent step ``step_id``, its step lease lapsed, is still at work —
    (b) or (c) above — or None. ``calls_due``: its calls published and not begun, ``"t.i"``
    -> (queue, due); ``look_in(step, queue)``: what the broker holds of its messages."""
    why: list[str] = []
    # Every queue is looked at on every pass, not only until one answers: "missing" takes
    # two looks a pass apart, and a look skipped would start its count again.
    for key, (queue, due) in sorted(calls_due.items()):
        late = now - float(due)
        if late < grace_s:
            why.append(f"its call {key} was due {max(late, 0.0):.0f} s ago")
        elif may_wait(look_in(step_id, queue), waiting_in(queue), now, confirm_s):
            why.append(f"its call {key} may still wait in queue {queue!r}")
    if may_wait(look_in(step_id, own_queue), waiting_in(own_queue), now, confirm_s):
        why.append(f"its next turn may still wait in queue {own_queue!r}")
    return "; ".join(why) or None
