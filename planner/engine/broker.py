"""What a Redis broker holds: which steps' messages wait in a queue or sit reserved by a
worker, so the reconciler can tell "lost" from "waiting behind others".

Kombu's Redis transport keeps a queue as Redis lists (one per priority step) of JSON
messages, and a message a worker took but has not acknowledged in the ``unacked`` hash
(acks are late: a step's message stays there until its task ends). A step's message is
found by its arguments ``(run_id, step_id, version)``, not its task id, so the answer does
not depend on how task ids are made; an agent step's turn and tool call messages start
with the same three, and count as its messages. Both places are read in one MULTI, so a
message moving from a queue to ``unacked`` (restored, or delivered) is seen in one of
them; the only gap left is the moment between a worker's BRPOP and its write to
``unacked``, which the reconciler covers by looking twice before it calls a message lost.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from planner.wire import (
    AGENT_CALL_TASK,
    AGENT_TURN_TASK,
    FINALIZE_TASK,
    PLAN_TASK,
    REPLAN_TASK,
    REVIEW_TASK,
    STEP_TASK,
    SYNTHESIZE_TASK,
)

#: A step's message, by what it names: (run_id, step_id, plan version).
StepKey = tuple[str, str, int]

#: The tasks that make a run's next move (their first argument is the run).
RUN_TASKS = frozenset({FINALIZE_TASK, PLAN_TASK, REPLAN_TASK, REVIEW_TASK, SYNTHESIZE_TASK})

#: Most messages read in one look; a bigger backlog answers "cannot say" (the reconciler
#: then waits for the queue to drain, as it would on a broker it cannot read).
MAX_SCAN = 10_000


def task_of(raw: Any, tasks: frozenset[str]) -> list[Any] | None:
    """The arguments of a kombu message (JSON text as the transport stores it, or that
    text parsed) of one of ``tasks``, or None."""
    try:
        message = json.loads(raw) if isinstance(raw, str | bytes) else raw
        if (message.get("headers") or {}).get("task") not in tasks:
            return None
        body: Any = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        return list(json.loads(body)[0])
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


#: The tasks that work on one step; their first arguments are (run_id, step_id, version):
#: the step's own, and an agent step's turns and tool calls (the reconciler tells an agent
#: step's hop waiting in a queue from a lost one by them).
STEP_TASKS = frozenset({STEP_TASK, AGENT_TURN_TASK, AGENT_CALL_TASK})


def step_of(raw: Any) -> StepKey | None:
    """The step a kombu message works on (:data:`STEP_TASKS`), or None."""
    args = task_of(raw, STEP_TASKS)
    try:
        return None if args is None else (str(args[0]), str(args[1]), int(args[2]))
    except (ValueError, TypeError, IndexError):
        return None


def _redis(channel: Any) -> bool:
    needed = ("_q_for_pri", "priority_steps", "unacked_key", "unacked_index_key",
              "conn_or_acquire")
    # kombu prefixes only some commands with a global_keyprefix: not worth guessing.
    return all(hasattr(channel, n) for n in needed) \
        and not getattr(channel, "global_keyprefix", None)


#: A run-level message a worker reserved this recently counts as at work: it is between the
#: worker's BRPOP and the task's first event (a loaded worker can take seconds there). One
#: reserved longer by a worker that died waits for the visibility timeout, not for this.
RESERVED_RECENTLY_S = 30.0


def queued_runs(channel: Any, queues: list[str], limit: int = MAX_SCAN,
                reserved_within_s: float = RESERVED_RECENTLY_S) -> set[str] | None:
    """The runs with a message of :data:`RUN_TASKS` waiting in ``queues``' lists, or
    reserved by a worker within ``reserved_within_s`` (kombu's ``unacked_index`` holds when
    each was delivered; an older reservation may be a dead worker's, which would wait for
    hours); None as for :func:`held_steps`."""
    if not _redis(channel):
        return None
    lists = sorted({channel._q_for_pri(q, p) for q in queues for p in channel.priority_steps})
    with channel.conn_or_acquire() as client:
        pipe = client.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        if sum(int(n or 0) for n in pipe.execute()) > limit:
            return None
        pipe = client.pipeline(transaction=False)
        for key in lists:
            pipe.lrange(key, 0, limit)
        pipe.zrangebyscore(channel.unacked_index_key, time.time() - reserved_within_s, "+inf",
                           start=0, num=limit)
        *found, recent = pipe.execute()
        reserved = client.hmget(channel.unacked_key, recent) if recent else []
    raws = [raw for items in found for raw in items]
    for entry in reserved:
        try:
            raws.append(json.loads(entry)[0])  # [message, exchange, routing key]
        except (ValueError, TypeError, IndexError):
            continue
    runs = (task_of(raw, RUN_TASKS) for raw in raws)
    return {str(args[0]) for args in runs if args}


def held_steps(channel: Any, queue: str, limit: int = MAX_SCAN) -> set[StepKey] | None:
    """The steps whose messages wait in ``queue`` or are reserved by any worker, read from
    a kombu Redis ``channel``; None when this is not kombu's Redis transport, keys carry a
    global prefix, or more than ``limit`` messages would have to be read."""
    if not _redis(channel):
        return None
    lists = sorted({channel._q_for_pri(queue, p) for p in channel.priority_steps})
    with channel.conn_or_acquire() as client:
        pipe = client.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        pipe.hlen(channel.unacked_key)
        if sum(int(n or 0) for n in pipe.execute()) > limit:
            return None
        pipe = client.pipeline(transaction=True)
        for key in lists:
            pipe.lrange(key, 0, limit)
        pipe.hvals(channel.unacked_key)
        *queued, reserved = pipe.execute()
    found = {step_of(raw) for items in queued for raw in items}
    for entry in reserved:
        try:
            found.add(step_of(json.loads(entry)[0]))  # [message, exchange, routing key]
        except (ValueError, TypeError, IndexError):
            continue
    found.discard(None)
    return {key for key in found if key is not None}
