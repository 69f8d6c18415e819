"""Event streams under load, on real ``chordal serve`` processes and real Redis (loopback):

- one key that opens 200 streams at once gets its first ``MAX_STREAMS`` and a quick 429 for
  the rest, without touching Redis; another key's stream and ordinary requests, made during
  that flood, go on;
- a stream refused after taking its slot (404, 422) gives it back;
- streams have their own bounded Redis pool: when the server holds its most, a new stream
  is a quick 503 (never a hang, never a cut of those open), and slots come back;
- a quiet stream outlives any socket timeout: its blocking read sets its own.

The runs wait for approval, so their streams stay open with keep-alives and no worker is
needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from planner import RunOptions
from tests import redis_server
from tests.integration.conftest import base_env
from tests.service.conftest import Server, start_server

REDIS_URL = redis_server.url(13)
KEYS = {"alice": "alice-secret-0123456789", "bob": "bob-secret-0123456789",
        "carol": "carol-secret-0123456789"}
MAX_STREAMS = 5   # per key
POOL = 12         # per server: alice 5 + bob 5 + carol 2, then full
FLOOD = 200
PLAN = {"goal": "wait for a person", "steps": [{"id": "a", "tool": "echo",
                                                "args": {"value": 1}}]}


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    env = base_env(REDIS_URL, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_API_KEYS=",".join(f"{n}={s}" for n, s in KEYS.items()),
                   CHORDAL_API_MAX_STREAMS=str(MAX_STREAMS),
                   CHORDAL_API_STREAM_POOL=str(POOL),
                   CHORDAL_API_RATE_LIMIT_PER_MIN="100000")
    srv = start_server(env, tmp_path_factory.mktemp("flood") / "serve.log",
                       "--keepalive", "1")
    try:
        yield srv
    finally:
        srv.stop()


def waiting_run(srv: Server, owner: str) -> str:
    """A run that awaits approval: its stream stays open, with keep-alives."""
    return srv.client.submit(PLAN, RunOptions(approve=True, owner=owner))


async def open_streams(url: str, path: str, who: str, count: int
                       ) -> tuple[list[httpx.Response], list[tuple[int, float]], Any]:
    """``count`` stream requests at once; the open ones (200) are returned still open,
    with (status, seconds) of every answer, and the client that holds them."""
    http = httpx.AsyncClient(base_url=url, headers=auth(who), timeout=60,
                             limits=httpx.Limits(max_connections=None,
                                                 max_keepalive_connections=0))

    async def one() -> tuple[httpx.Response, float]:
        start = time.monotonic()
        reply = await http.send(http.build_request("GET", path), stream=True)
        return reply, time.monotonic() - start

    answers = await asyncio.gather(*[one() for _ in range(count)])
    opened = []
    for reply, _ in answers:
        if reply.status_code == 200:
            opened.append(reply)
        else:
            await reply.aread()
            await reply.aclose()
    return opened, [(r.status_code, s) for r, s in answers], http


_lines: dict[int, Any] = {}


async def keeps_alive(reply: httpx.Response, timeout: float = 15) -> bool:
    """Whether the stream still sends: a keep-alive comment comes within ``timeout``. (One
    line iterator per response, kept: a response's body is read once.)"""
    lines = _lines.setdefault(id(reply), reply.aiter_lines())

    async def first() -> bool:
        async for line in lines:
            if line.startswith(": keep-alive"):
                return True
        return False  # the stream ended
    try:
        return await asyncio.wait_for(first(), timeout)
    except TimeoutError:
        return False


async def close(opened: list[httpx.Response], http: httpx.AsyncClient) -> None:
    for reply in opened:
        _lines.pop(id(reply), None)
        await reply.aclose()
    await http.aclose()


def test_one_key_flooding_streams_is_refused_quickly_and_others_go_on(server: Server):
    mine, theirs = waiting_run(server, "alice"), waiting_run(server, "bob")

    async def their_stream(bob: httpx.AsyncClient) -> float:
        start = time.monotonic()
        async with bob.stream("GET", f"/v1/runs/{theirs}/events") as reply:
            assert reply.status_code == 200
            opened_in = time.monotonic() - start
            assert await keeps_alive(reply)
        return opened_in

    async def their_requests(bob: httpx.AsyncClient) -> float:
        start = time.monotonic()
        for _ in range(5):
            got = await bob.get(f"/v1/runs/{theirs}")
            assert got.status_code == 200, got.text
            assert got.json()["status"] == "awaiting_approval"
        assert (await bob.get("/v1/runs")).status_code == 200
        return time.monotonic() - start

    async def scenario() -> None:
        # Another tenant's stream and ordinary requests, sent with the flood.
        async with httpx.AsyncClient(base_url=server.url, headers=auth("bob"),
                                     timeout=30) as bob:
            (opened, answers, http), opened_in, gets_s = await asyncio.gather(
                open_streams(server.url, f"/v1/runs/{mine}/events", "alice", FLOOD),
                their_stream(bob), their_requests(bob))
        try:
            statuses = [s for s, _ in answers]
            counts = {s: statuses.count(s) for s in set(statuses)}
            print(f"\n{FLOOD} concurrent streams of one key: {counts}; slowest 429 in "
                  f"{max(t for s, t in answers if s == 429):.2f} s; meanwhile another "
                  f"key's stream opened in {opened_in:.2f} s, its 6 GETs took {gets_s:.2f} s")
            # The cap is checked before Redis: every other answer is the key's own 429.
            assert counts == {200: MAX_STREAMS, 429: FLOOD - MAX_STREAMS}, counts
            assert max(t for s, t in answers if s == 429) < 20
            assert opened_in < 20 and gets_s < 20
            # The key's first streams stay open through the flood, and a second one.
            alive = await asyncio.gather(*[keeps_alive(r) for r in opened])
            assert all(alive), alive
            more, again, http2 = await open_streams(
                server.url, f"/v1/runs/{mine}/events", "alice", FLOOD)
            assert more == [] and {s for s, _ in again} == {429}
            await close(more, http2)
            assert all(await asyncio.gather(*[keeps_alive(r) for r in opened]))
        finally:
            await close(opened, http)

    asyncio.run(scenario())


def test_a_refused_stream_gives_its_slot_back(server: Server):
    """The slot is taken first: a stream refused after it (a run the key does not own, a
    cursor from the future) gives it back, or MAX_STREAMS refusals would lock the key out."""
    theirs, mine = waiting_run(server, "bob"), waiting_run(server, "carol")
    with httpx.Client(base_url=server.url, headers=auth("carol"), timeout=30) as carol:
        for _ in range(MAX_STREAMS + 1):
            assert carol.get(f"/v1/runs/{theirs}/events").status_code == 404
            future = carol.get(f"/v1/runs/{mine}/events", params={"after": "99999999999999-0"})
            assert future.status_code == 422, future.text
        with carol.stream("GET", f"/v1/runs/{mine}/events") as reply:
            assert reply.status_code == 200
            assert next(line for line in reply.iter_lines() if line.startswith(": keep-alive"))


def test_a_full_stream_pool_answers_503_and_gives_slots_back(server: Server):
    runs = {who: waiting_run(server, who) for who in KEYS}

    async def fill() -> tuple[list[httpx.Response], list[Any]]:
        held: list[httpx.Response] = []
        clients = []
        try:
            for who, count in (("alice", MAX_STREAMS), ("bob", MAX_STREAMS),
                               ("carol", POOL - 2 * MAX_STREAMS)):
                opened, answers, http = await open_streams(
                    server.url, f"/v1/runs/{runs[who]}/events", who, count)
                held += opened
                clients.append(http)
                assert [s for s, _ in answers] == [200] * count, answers
        except BaseException:
            # A failed attempt's streams are closed before the next: it would hold them.
            for reply in held:
                await reply.aclose()
            for http in clients:
                await http.aclose()
            raise
        return held, clients

    async def scenario() -> None:
        held, clients = await _until_free(fill)
        try:
            # Carol is under her own cap, but the server holds POOL streams: 503, at once.
            async with httpx.AsyncClient(base_url=server.url, headers=auth("carol"),
                                         timeout=30) as carol:
                start = time.monotonic()
                full = await carol.get(f"/v1/runs/{runs['carol']}/events")
                assert time.monotonic() - start < 10
                assert full.status_code == 503, full.text
                assert full.headers["Retry-After"]
                assert "CHORDAL_API_STREAM_POOL" in full.json()["error"]["message"]
                # Ordinary requests do not use the streams' pool.
                assert (await carol.get(f"/v1/runs/{runs['carol']}")).status_code == 200
                assert all(await asyncio.gather(*[keeps_alive(r) for r in held]))
                # One stream closed: its slot (and connection) comes back.
                await held.pop().aclose()
                deadline = time.monotonic() + 15
                while True:
                    async with carol.stream("GET", f"/v1/runs/{runs['carol']}/events"
                                            ) as reply:
                        if reply.status_code == 200:
                            assert await keeps_alive(reply)
                            break
                    assert time.monotonic() < deadline, "the closed stream's slot never came back"
                    await asyncio.sleep(0.2)
        finally:
            for reply in held:
                await reply.aclose()
            for http in clients:
                await http.aclose()

    asyncio.run(scenario())


async def _until_free(fill: Any) -> Any:
    """Fill the pool once the streams of the test before have been given back (their
    clients closed them; the server notices at its next keep-alive)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return await fill()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_a_quiet_stream_outlives_the_socket_timeout(tmp_path: Path):
    """Keep-alives every 0.2 s, and a Redis socket timeout of 0.1 s in the URL: a blocking
    read that used the client's socket timeout (redis-py 8's default is 5 s, under the
    15 s keep-alive) would end the stream at its first wait. 25 keep-alives in a row are
    25 waits each twice the socket timeout: at the default 15 s keep-alive and a 5 s socket
    timeout, that is over six minutes of a quiet stream, and nothing in it depends on time."""
    url = REDIS_URL + "?socket_timeout=0.1"
    env = base_env(url, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_API_KEYS=f"alice={KEYS['alice']}")
    srv = start_server(env, tmp_path / "serve.log", "--keepalive", "0.2")
    try:
        run_id = waiting_run(srv, "alice")
        comments = 0
        with httpx.Client(base_url=srv.url, headers=auth("alice"), timeout=10) as http, \
                http.stream("GET", f"/v1/runs/{run_id}/events") as reply:
            assert reply.status_code == 200
            for line in reply.iter_lines():
                if line.startswith(": keep-alive"):
                    comments += 1
                    if comments >= 25:
                        break
        assert comments >= 25, f"the stream ended after {comments} keep-alive(s)"
        assert "event stream of run" not in srv.log.read_text()
    finally:
        srv.stop()
