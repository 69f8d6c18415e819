"""What event streams may take of one server: slots per key and per server, and their own
Redis connections.

A stream holds one Redis connection while it waits (``XREAD BLOCK``), so streams get a pool
of their own, apart from the one ordinary requests use: a flood of streams can exhaust
neither that pool nor its threads. Slots are counted in memory, on the event loop, before
a stream touches Redis: a key over ``CHORDAL_API_MAX_STREAMS`` is a 429, a server holding
``CHORDAL_API_STREAM_POOL`` streams is a 503, both at once. Each slot is one connection of
the pool, so an admitted stream never waits for one (and if one ever leaked, the wait is
bounded: an error, not a hang).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.asyncio.connection import parse_url

from planner.errors import RateLimited, Unavailable
from planner.settings.redis_url import is_cluster
from planner.store.connect import connect_async, is_cluster_client

#: Seconds a blocking read may overrun its ``BLOCK`` before the socket gives up: a Redis
#: that stalls longer is taken for down (the client reconnects with Last-Event-ID).
READ_MARGIN_S = 5.0
#: Seconds a stream waits for a pool connection (there is one per slot; only a leak waits).
POOL_WAIT_S = 2.0
#: Seconds to connect, unless the URL says (?socket_connect_timeout=): without it redis-py
#: would connect with the socket timeout, the keep-alive wait and more.
CONNECT_TIMEOUT_S = 5.0


@dataclass
class StreamSlots:
    """The server's event streams: their Redis client and who holds how many."""

    redis: redis.asyncio.Redis
    per_key: int
    most: int
    #: Open streams per caller scope. Taken and given back on the event loop only
    #: (CountedStream), so no lock: nothing else touches them.
    held: dict[str, int] = field(default_factory=dict)
    total: int = 0

    @classmethod
    def connect(cls, url: str, per_key: int, most: int, keepalive_s: float) -> StreamSlots:
        if is_cluster(url):
            # A cluster client keeps a pool per node, up to ``most`` each: a stream holds
            # a connection of its run's node, so none waits for one either.
            return cls(connect_async(url, most, decode_responses=True,
                                     socket_connect_timeout=CONNECT_TIMEOUT_S,
                                     socket_timeout=keepalive_s + READ_MARGIN_S),
                       per_key, most)
        options: dict[str, Any] = {"socket_connect_timeout": CONNECT_TIMEOUT_S,
                                   **parse_url(url)}
        # Over the URL's own options (?socket_timeout=): a read that blocks for
        # keepalive_s needs a socket that waits longer, whatever redis-py's default (5 s
        # in redis-py 8, under the 15 s keep-alive). All at construction: redis-py 5.0.0's
        # pool sized itself there (50), whatever max_connections said afterwards.
        options.update(max_connections=most, timeout=POOL_WAIT_S, decode_responses=True,
                       socket_timeout=keepalive_s + READ_MARGIN_S)
        pool = redis.asyncio.BlockingConnectionPool(**options)
        return cls(redis.asyncio.Redis(connection_pool=pool), per_key, most)

    async def close(self) -> None:
        await self.redis.aclose()  # a cluster client closes its nodes' pools here
        if not is_cluster_client(self.redis):
            await self.redis.connection_pool.disconnect()

    def take(self, scope: str) -> StreamSlot:
        """A slot for one more stream of ``scope``'s, or 429 (the key's cap) / 503 (the
        server's), before anything touches Redis."""
        if self.held.get(scope, 0) >= self.per_key:
            raise RateLimited(f"event streams: {self.per_key} already open for this API "
                              "key on this server (CHORDAL_API_MAX_STREAMS); close one, or "
                              "retry", retry_after_s=5)
        if self.total >= self.most:
            raise Unavailable(f"event streams: this server holds its most ({self.most}, "
                              "CHORDAL_API_STREAM_POOL); retry, or reach another replica",
                              retry_after_s=5)
        self.held[scope] = self.held.get(scope, 0) + 1
        self.total += 1
        return StreamSlot(self, scope)


@dataclass
class StreamSlot:
    """One open event stream, counted until :meth:`release` (safe to call twice)."""

    slots: StreamSlots
    scope: str
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.slots.total -= 1
        left = self.slots.held.get(self.scope, 1) - 1
        if left > 0:
            self.slots.held[self.scope] = left
        else:
            self.slots.held.pop(self.scope, None)
