"""A model-call rate limit shared by every worker (Celery's ``rate_limit`` is per worker).

A sliding window of call times in one Redis sorted set: a call may go when fewer than
``limit`` calls started in the last minute.
"""

from __future__ import annotations

import time
import uuid

import redis

from planner.errors import TransientError

_ACQUIRE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now_ms - 60000)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now_ms, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 61000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + 60000 - now_ms
"""

KEY = "chordal:llm:calls"


class RateLimiter:
    def __init__(self, client: redis.Redis, per_minute: int) -> None:
        self.per_minute = per_minute
        self._acquire = client.register_script(_ACQUIRE)

    def wait_ms(self) -> int:
        """Take a slot (0) or say how many ms until one frees up."""
        return int(self._acquire(keys=[KEY], args=[self.per_minute, uuid.uuid4().hex]))

    def acquire(self, max_wait_s: float = 30.0) -> None:
        """Block until a slot is free; past ``max_wait_s`` raise a transient error so the
        task retries later instead of holding a worker."""
        deadline = time.monotonic() + max_wait_s
        while (wait := self.wait_ms()) > 0:
            if time.monotonic() + wait / 1000 > deadline:
                raise TransientError(f"model rate limit ({self.per_minute}/min, "
                                     "CHORDAL_LLM_RATE_LIMIT_PER_MIN) is used up")
            time.sleep(wait / 1000)
