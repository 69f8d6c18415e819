"""The event streams' slots and pool, in process, against real Redis:

- the pool holds as many connections as it has slots, from its construction (redis-py
  5.0.0 sized its queue there: 50, whatever was set afterwards);
- its sockets wait out a keep-alive block, and connect within their own bound;
- a key over its cap is refused on the event loop, before any thread: with every thread
  of the pool busy, the 429 still comes at once.
"""

from __future__ import annotations

import asyncio
import time

import anyio
import anyio.to_thread
import httpx
import pytest

from planner.errors import RateLimited, Unavailable
from planner.service.app import create_app
from planner.service.state import Service
from planner.service.streams import CONNECT_TIMEOUT_S, READ_MARGIN_S, StreamSlots
from planner.settings import Settings
from tests import redis_server

REDIS_URL = redis_server.url(13)
SECRET = "alice-secret-0123456789"


def test_the_pool_holds_a_connection_per_slot_from_the_start():
    """More blocking reads at once than redis-py's default pool size (50): each gets its
    connection; none waits for one (a wait would be POOL_WAIT_S, then an error)."""
    most, block_ms = 60, 3000
    slots = StreamSlots.connect(REDIS_URL, per_key=most, most=most, keepalive_s=1)

    async def scenario() -> float:
        start = time.monotonic()
        try:
            replies = await asyncio.gather(*[
                slots.redis.xread({f"test:slots:{i}": "$"}, block=block_ms)
                for i in range(most)])
        finally:
            await slots.close()
        assert not any(replies)
        return time.monotonic() - start

    took = asyncio.run(scenario())
    assert took < 2 * block_ms / 1000, f"{most} blocking reads took {took:.1f} s"


def test_the_pools_sockets_wait_out_the_keepalive_and_connect_in_bounded_time():
    async def options(url: str) -> dict[str, object]:
        slots = StreamSlots.connect(url, per_key=1, most=3, keepalive_s=15)
        await slots.close()
        pool = slots.redis.connection_pool
        assert pool.max_connections == 3
        return dict(pool.connection_kwargs)

    plain = asyncio.run(options(REDIS_URL))
    # Not the socket timeout (20 s): redis-py would connect with it if none were set.
    assert plain["socket_connect_timeout"] == CONNECT_TIMEOUT_S
    assert plain["socket_timeout"] == 15 + READ_MARGIN_S
    assert plain["decode_responses"] is True
    # The URL's connect timeout is kept; its socket timeout would cut quiet streams.
    given = asyncio.run(options(REDIS_URL + "?socket_connect_timeout=1.5&socket_timeout=0.1"))
    assert given["socket_connect_timeout"] == 1.5
    assert given["socket_timeout"] == 15 + READ_MARGIN_S


def test_a_full_server_is_unavailable_with_a_retry_after():
    slots = StreamSlots.connect(REDIS_URL, per_key=2, most=3, keepalive_s=1)
    taken = [slots.take("alice"), slots.take("alice"), slots.take("bob")]
    with pytest.raises(RateLimited):
        slots.take("alice")
    with pytest.raises(Unavailable) as full:
        slots.take("carol")
    assert full.value.retry_after_s == 5
    assert "CHORDAL_API_STREAM_POOL" in str(full.value)
    taken.pop().release()
    slots.take("carol")
    asyncio.run(slots.close())


def test_the_stream_cap_is_checked_before_any_thread():
    """Every thread of the server's pool busy: a key at its cap still gets its 429 at once
    (the key and the service are known on the event loop, the slot checked there)."""
    app = create_app(Settings.from_env({"CHORDAL_REDIS_URL": REDIS_URL,
                                        "CHORDAL_API_KEYS": f"alice={SECRET}",
                                        "CHORDAL_API_MAX_STREAMS": "2"}))
    svc: Service = app.state.service

    async def scenario() -> None:
        held = [svc.streams.take("alice"), svc.streams.take("alice")]
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = 1
        busy, done = asyncio.Event(), asyncio.Event()

        async def hold_the_only_thread() -> None:
            async with limiter:
                busy.set()
                await done.wait()

        holder = asyncio.ensure_future(hold_the_only_thread())
        await busy.wait()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                         base_url="http://test") as http:
                reply = await asyncio.wait_for(http.get(
                    "/v1/runs/0123456789abcdef/events",
                    headers={"Authorization": f"Bearer {SECRET}"}), 10)
            assert reply.status_code == 429, reply.text
            assert "CHORDAL_API_MAX_STREAMS" in reply.json()["error"]["message"]
        finally:
            done.set()
            await holder
            for slot in held:
                slot.release()
            await svc.streams.close()

    asyncio.run(scenario())
