"""Rate limits shared by every process: model calls across workers (Celery's ``rate_limit``
is per worker), and run creation per API key across API replicas.

A sliding window of call times in one Redis sorted set (``acquire_call.lua``): a call may go
when fewer than ``limit`` calls started in the last minute. ``key`` picks the set (the model
calls' by default).
"""

from __future__ import annotations

import time
import uuid

import redis

from planner.errors import TransientError
from planner.store import scripts
from planner.store.keys import MODEL_CALLS


class RateLimiter:
    def __init__(self, client: redis.Redis, per_minute: int, key: str = MODEL_CALLS) -> None:
        self.per_minute = per_minute
        self.key = key
        self._acquire = scripts.register(client, "acquire_call")

    def wait_ms(self, take: bool = True) -> int:
        """Take a slot (0) or say how many ms until one frees up; with ``take=False`` only
        look (0: one is free now)."""
        member = uuid.uuid4().hex if take else ""
        return int(self._acquire(keys=[self.key], args=[self.per_minute, member]))

    def acquire(self, max_wait_s: float = 30.0) -> None:
        """Block until a slot is free; past ``max_wait_s`` raise a transient error so the
        task retries later instead of holding a worker."""
        deadline = time.monotonic() + max_wait_s
        while (wait := self.wait_ms()) > 0:
            if time.monotonic() + wait / 1000 > deadline:
                raise TransientError(f"model rate limit ({self.per_minute}/min, "
                                     "CHORDAL_LLM_RATE_LIMIT_PER_MIN) is used up")
            time.sleep(wait / 1000)
