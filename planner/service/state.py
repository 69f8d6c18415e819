"""What one API process holds (its Client, keys, limits and async Redis), and the run
ownership rule every operation on a run goes through."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio
from fastapi import Request

from planner.client import Client
from planner.errors import RateLimited, RunNotFound
from planner.service.auth import Caller, KeyRing
from planner.service.idempotency import Idempotency
from planner.store.keys import api_calls_key
from planner.store.lost import not_found
from planner.store.ratelimit import RateLimiter

#: Default seconds between ``: keep-alive`` comments on a quiet event stream (proxies close
#: connections that stay silent for long).
KEEPALIVE_S = 15.0


@dataclass
class Service:
    client: Client
    keys: KeyRing
    #: For event streams: a blocking XREAD here waits without holding a thread.
    aredis: redis.asyncio.Redis
    keepalive_s: float = KEEPALIVE_S
    has_model: bool = False
    idempotency: Idempotency = field(init=False)
    #: Event streams open per caller scope on this server. Taken and given back on the
    #: event loop only (CountedStream), so no lock: nothing else touches it.
    streams: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.idempotency = Idempotency(self.client.store.r)

    def owned(self, run_id: str, who: Caller) -> None:
        """RunNotFound unless ``who`` may see the run: another tenant's run answers
        exactly as a run that does not exist, so ids cannot be probed."""
        try:
            owner = self.client.store.owner(run_id)
        except RunNotFound:
            owner, exists = None, False
        else:
            exists = True
        if not exists or not who.owns(owner):
            # What the store says of a run it has no record of, from the id and the store
            # alone: the same for another key's run as for a missing one.
            store = self.client.store
            raise not_found(store.r, run_id, store.retention_s, scoped=True)

    def take_create_slot(self, who: Caller, take: bool = True) -> None:
        """One run creation against the caller's per-minute limit (in Redis: every replica
        counts against the same window); ``take=False`` only checks that one is free (a
        caller over its limit is refused before its plan is even compiled)."""
        per_minute = self.client.settings.api_rate_limit_per_min
        if per_minute is None:
            return
        limiter = RateLimiter(self.client.store.r, per_minute, api_calls_key(who.scope))
        wait_ms = limiter.wait_ms(take)
        if wait_ms > 0:
            raise RateLimited(f"rate limit: {per_minute} runs per minute per API key "
                              f"(CHORDAL_API_RATE_LIMIT_PER_MIN); retry in "
                              f"{wait_ms / 1000:.1f} s", retry_after_s=wait_ms / 1000)


    def open_stream(self, who: Caller) -> StreamSlot:
        """A slot for one more event stream of the caller's, or 429: each open stream
        holds a Redis connection, and one key must not take them all."""
        most = self.client.settings.api_max_streams
        if self.streams.get(who.scope, 0) >= most:
            raise RateLimited(f"event streams: {most} already open for this API key on this "
                              "server (CHORDAL_API_MAX_STREAMS); close one, or retry",
                              retry_after_s=5)
        self.streams[who.scope] = self.streams.get(who.scope, 0) + 1
        return StreamSlot(self, who.scope)


@dataclass
class StreamSlot:
    """One open event stream, counted until :meth:`release` (safe to call twice)."""

    svc: Service
    scope: str
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            left = self.svc.streams.get(self.scope, 1) - 1
            if left > 0:
                self.svc.streams[self.scope] = left
            else:
                self.svc.streams.pop(self.scope, None)


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc
