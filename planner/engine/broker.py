"""What a Redis broker holds: which steps' messages wait in a queue or sit reserved by a
worker, so the reconciler can tell "lost" from "waiting behind others".

Kombu's Redis transport keeps a queue as Redis lists (one per priority step) of JSON
messages, and a message a worker took but has not acknowledged in the ``unacked`` hash
(acks are late: a step's message stays there until its task ends). A step's message is
found by its arguments ``(run_id, step_id, version)``, not its task id, so the answer does
not depend on how task ids are made. Both places are read in one MULTI, so a message
moving from a queue to ``unacked`` (restored, or delivered) is seen in one of them; the
only gap left is the moment between a worker's BRPOP and its write to ``unacked``, which
the reconciler covers by looking twice before it calls a message lost.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from planner.wire import STEP_TASK

#: A step's message, by what it names: (run_id, step_id, plan version).
StepKey = tuple[str, str, int]

#: Most messages read in one look; a bigger backlog answers "cannot say" (the reconciler
#: then waits for the queue to drain, as it would on a broker it cannot read).
MAX_SCAN = 10_000


def step_of(raw: Any) -> StepKey | None:
    """The step a kombu message (JSON text as the transport stores it, or that text
    parsed) runs, or None."""
    try:
        message = json.loads(raw) if isinstance(raw, str | bytes) else raw
        if (message.get("headers") or {}).get("task") != STEP_TASK:
            return None
        body: Any = message["body"]
        if (message.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return (str(args[0]), str(args[1]), int(args[2]))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def held_steps(channel: Any, queue: str, limit: int = MAX_SCAN) -> set[StepKey] | None:
    """The steps whose messages wait in ``queue`` or are reserved by any worker, read from
    a kombu Redis ``channel``; None when this is not kombu's Redis transport, keys carry a
    global prefix, or more than ``limit`` messages would have to be read."""
    needed = ("_q_for_pri", "priority_steps", "unacked_key", "conn_or_acquire")
    if not all(hasattr(channel, name) for name in needed):
        return None  # another transport
    if getattr(channel, "global_keyprefix", None):
        return None  # kombu prefixes only some commands: not worth guessing
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
