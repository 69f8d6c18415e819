"""What tools a server has: listed over a short-lived session, cached in the process.

A server that cannot be listed is an answer too (its error), cached for a short while
only: a worker that starts while a server is down still runs, and asks again."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from planner.tools.mcp.config import McpServer
from planner.tools.mcp.session import CONNECT_TIMEOUT_S, session

log = logging.getLogger("chordal.mcp")

#: How long one process reuses what a server said its tools are (a forked worker process
#: inherits it).
DISCOVERY_TTL_S = 60.0
#: How long one process reuses a server's failure to list its tools (the pool processes a
#: worker forks just after it started do not each wait for a server that is down).
DOWN_TTL_S = 10.0


@dataclass(frozen=True)
class ToolSpec:
    """What a server says about one tool (plain data: cached, and kept across a fork)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None


Listed = list[ToolSpec] | Exception

_discovered: dict[str, tuple[float, Listed]] = {}
#: Servers being listed now, by key: a second caller waits for that answer instead of
#: starting its own (a down server's listing may take CONNECT_TIMEOUT_S).
_listing: dict[str, concurrent.futures.Future[Listed]] = {}
_discovery_lock = threading.Lock()


def discover(servers: list[McpServer], down_ttl_s: float = DOWN_TTL_S
             ) -> dict[str, Listed]:
    """Each server's tools, or why it could not be listed; from this process's cache when
    fresh, else asked (all servers at once, one listing per server at a time)."""
    now = time.monotonic()
    out: dict[str, Listed] = {}
    stale: list[McpServer] = []
    waiting: dict[str, concurrent.futures.Future[Listed]] = {}
    with _discovery_lock:  # held for the cache only, never while a server is asked
        for s in servers:
            hit = _discovered.get(s.key())
            if hit is not None and now - hit[0] < (
                    down_ttl_s if isinstance(hit[1], Exception) else DISCOVERY_TTL_S):
                out[s.name] = hit[1]
            elif s.key() in _listing:
                waiting[s.name] = _listing[s.key()]
            else:
                _listing[s.key()] = concurrent.futures.Future()
                stale.append(s)
    if stale:
        listed: dict[str, Listed] = {}
        try:
            # In a thread of its own: the caller may be inside a running event loop (an
            # ASGI app building a client), where a second loop cannot start.
            with concurrent.futures.ThreadPoolExecutor(1, "chordal-mcp-discovery") as pool:
                listed = pool.submit(asyncio.run, _list_all(stale)).result()
        finally:
            with _discovery_lock:
                for s in stale:
                    result = listed.get(s.name)
                    if result is None:  # interrupted: those waiting learn it, none cached
                        result = RuntimeError("listing its tools was interrupted")
                    else:
                        _discovered[s.key()] = (time.monotonic(), result)
                    _listing.pop(s.key()).set_result(result)
        out.update((s.name, listed[s.name]) for s in stale)
    for name, future in waiting.items():
        # Bounded by the other caller's own listing (CONNECT_TIMEOUT_S per server).
        out[name] = future.result()
    return out


async def _list_all(servers: list[McpServer]) -> dict[str, Listed]:
    async def one(s: McpServer) -> Listed:
        try:
            return await asyncio.wait_for(_list_tools(s), CONNECT_TIMEOUT_S)
        except TimeoutError:
            return TimeoutError(f"no answer in {CONNECT_TIMEOUT_S:g} s")
        except Exception as exc:
            return exc

    results = await asyncio.gather(*(one(s) for s in servers))
    return {s.name: r for s, r in zip(servers, results, strict=True)}


async def _list_tools(server: McpServer) -> list[ToolSpec]:
    from jsonschema import Draft202012Validator, SchemaError
    from jsonschema.validators import validator_for

    specs: list[ToolSpec] = []
    async with session(server) as client:
        cursor: str | None = None
        for _ in range(100):  # a server whose pages never end cannot hang discovery
            page = await client.list_tools(cursor=cursor)
            for t in page.tools:
                schema = dict(t.input_schema)
                try:
                    validator_for(schema, default=Draft202012Validator).check_schema(schema)
                except SchemaError as exc:
                    log.warning("%s: tool %r skipped: its input schema is not valid JSON "
                                "Schema: %s", server.where(), t.name, exc.message)
                    continue
                specs.append(ToolSpec(
                    t.name, " ".join((t.description or t.title or "").split()), schema,
                    dict(t.output_schema) if t.output_schema is not None else None))
            cursor = page.next_cursor
            if cursor is None:
                break
    return specs
