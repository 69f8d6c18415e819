"""What one API process holds (its Client, keys, limits and async Redis), and the run
ownership rule every operation on a run goes through."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from planner.client import Client
from planner.errors import RateLimited, RunNotFound
from planner.service.auth import Caller, KeyRing
from planner.service.idempotency import Idempotency
from planner.service.streams import StreamSlots
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
    #: Event streams: their slots and their own async Redis (a blocking XREAD there waits
    #: without holding a thread, or a connection of ordinary requests).
    streams: StreamSlots
    keepalive_s: float = KEEPALIVE_S
    has_model: bool = False
    idempotency: Idempotency = field(init=False)

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
        per_minute = self.client.settings.api.api_rate_limit_per_min
        if per_minute is None:
            return
        limiter = RateLimiter(self.client.store.r, per_minute, api_calls_key(who.scope))
        wait_ms = limiter.wait_ms(take)
        if wait_ms > 0:
            raise RateLimited(f"rate limit: {per_minute} runs per minute per API key "
                              f"(CHORDAL_API_RATE_LIMIT_PER_MIN); retry in "
                              f"{wait_ms / 1000:.1f} s", retry_after_s=wait_ms / 1000)


async def service(request: Request) -> Service:
    # async: no thread for what does no I/O (see auth.caller).
    svc: Service = request.app.state.service
    return svc
