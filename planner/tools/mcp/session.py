"""Sessions with MCP servers over the official SDK: how one is opened (stdio, streamable
HTTP, SSE), where a stdio server's stderr goes, and each process's event loop thread that
holds one session per server and reopens one that broke.

A stdio server's stderr is a pipe drained into this process's log (logger
``chordal.mcp.server``), never ``sys.stderr``: Celery replaces that with a logging proxy,
which has no file descriptor for a child process to write to (the SDK's default would
then fail every start with ``'LoggingProxy' object has no attribute 'fileno'``).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import concurrent.futures
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from planner.errors import TransientError
from planner.tools.mcp.config import McpServer
from planner.tools.mcp.results import broken, describe, output, tool_error

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger("chordal.mcp")
server_log = logging.getLogger("chordal.mcp.server")

#: Longest a server may take to start (or answer) and list its tools.
CONNECT_TIMEOUT_S = 30.0
#: The last lines each stdio server wrote to its stderr, for an error that says why.
_last_stderr: dict[str, collections.deque[str]] = {}


class _Stderr:
    """A stdio server's stderr: a pipe (a real file descriptor, whatever ``sys.stderr`` is
    in this process) whose lines a thread logs as the server's."""

    def __init__(self, name: str) -> None:
        read, write = os.pipe()
        self.name = name
        self.file = os.fdopen(write, "w", encoding="utf-8", errors="replace")
        self.tail = _last_stderr.setdefault(name, collections.deque(maxlen=5))
        self.tail.clear()
        self._thread = threading.Thread(target=self._drain, args=(read,), daemon=True,
                                        name=f"chordal-mcp-stderr-{name}")
        self._thread.start()

    def _drain(self, fd: int) -> None:
        # Ends when every copy of the write end is closed: ours, and the server's (and
        # those of any process it started) when they exit.
        with os.fdopen(fd, "rb") as pipe:
            for raw in pipe:
                line = raw.decode("utf-8", "replace").rstrip()[:2_000]
                if line:
                    self.tail.append(line)
                    server_log.info("MCP server %r: %s", self.name, line)

    def close(self) -> None:
        self.file.close()


def last_stderr(name: str, wait_s: float = 0.5) -> str:
    """The last lines server ``name`` wrote to its stderr ("" if none)."""
    for t in threading.enumerate():
        if t.name == f"chordal-mcp-stderr-{name}":
            t.join(wait_s)
    return " | ".join(_last_stderr.get(name, ()))


@asynccontextmanager
async def session(server: McpServer) -> AsyncIterator[Client]:
    """An SDK client connected to the server (the SDK stops a stdio server on exit)."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    if server.command is not None:
        # The SDK passes a stdio server only a few safe variables (PATH, HOME...) plus
        # ``env``: Chordal's own settings and secrets stay out of third-party processes.
        params = StdioServerParameters(command=server.command, args=list(server.args),
                                       env=dict(server.env) or None, cwd=server.cwd)
        stderr = _Stderr(server.name)
        try:
            async with Client(stdio_client(params, errlog=stderr.file)) as client:
                yield client
        finally:
            stderr.close()
        return
    assert server.url is not None
    async with _http(server) as client:
        yield client


class _Scrubbed(logging.Filter):
    """Masks the secrets of the servers' URLs and headers in the HTTP client's and the
    SDK's own log lines (httpx logs each request's full URL at INFO)."""

    def __init__(self) -> None:
        super().__init__()
        self.servers: dict[str, McpServer] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = text
        for server in list(self.servers.values()):
            clean = server.scrub(clean)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_scrubbed = _Scrubbed()
# A filter on a logger sees only its own records, not its children's: named one by one.
for _name in ("httpx2", "mcp.client.streamable_http", "mcp.client.sse"):
    logging.getLogger(_name).addFilter(_scrubbed)


@asynccontextmanager
async def _http(server: McpServer) -> AsyncIterator[Client]:
    from mcp import Client

    assert server.url is not None
    _scrubbed.servers[server.key()] = server
    headers = dict(server.headers)
    if server.sse:
        from mcp.client.sse import sse_client

        async with Client(sse_client(server.url, headers=headers or None)) as client:
            yield client
        return
    if not headers:
        async with Client(server.url) as client:
            yield client
        return
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
                Client(streamable_http_client(server.url, http_client=http)) as client):
        yield client


class _Connection:
    """One session with one server, owned by a task of the hub's loop (the SDK's contexts
    must be entered and left in one task); calls from other tasks share it."""

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.dead = False
        self._ready: asyncio.Future[Client] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def client(self) -> Client:
        if self._ready is None:
            self._ready = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._own(self._ready))
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), CONNECT_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with session(self.server) as client:
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:  # a failed start, or the connection broke
            if not ready.done():
                ready.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            log.info("%s: connection ended: %s", self.server.where(),
                     describe(exc, self.server))
        finally:
            self.dead = True
            if not ready.done():
                ready.cancel()

    def close(self) -> None:
        """Leave the session (the SDK stops a stdio server); the next call opens anew."""
        self.dead = True
        self._stop.set()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=10)


class Hub:
    """This process's MCP sessions, on an event loop thread of their own (the SDK is async
    and a tool is called synchronously, in a Celery pool process or thread)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.connections: dict[str, _Connection] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, name="chordal-mcp",
                                       daemon=True)
        self.thread.start()

    def call(self, server: McpServer, tool: str, args: dict[str, Any],
             structured: bool, timeout_s: float | None = None) -> Any:
        """Call ``tool`` and wait for its answer at most ``timeout_s`` (the server's when
        None); opening a session for it, if needed, has its own CONNECT_TIMEOUT_S."""
        limit = server.timeout_s if timeout_s is None else timeout_s
        future = asyncio.run_coroutine_threadsafe(self._call(server, tool, args, limit),
                                                  self.loop)
        try:
            # The loop enforces the limits; this one only backs them (a loop held up).
            result = future.result(CONNECT_TIMEOUT_S + limit + 5.0)
        except BaseException as exc:
            # A soft time limit lands here, in the calling thread: stop the call too.
            future.cancel()
            if isinstance(exc, TimeoutError | concurrent.futures.TimeoutError):
                raise TransientError(f"{server.name}.{tool}: MCP server {server.name!r} did "
                                     f"not answer in {limit:g} s") from None
            if isinstance(exc, Exception):
                raise tool_error(server, tool, exc) from None
            raise
        return output(server, tool, result, structured)

    async def _call(self, server: McpServer, tool: str, args: dict[str, Any],
                    timeout_s: float) -> Any:
        conn = self.connections.get(server.name)
        if conn is None or conn.dead:
            conn = self.connections[server.name] = _Connection(server)
        client = await conn.client()
        try:
            # The SDK's own read timeout ends the call (cleanly: its session stays
            # usable); the outer one only backs it.
            async with asyncio.timeout(timeout_s + 2.0):
                return await client.call_tool(tool, args, read_timeout_seconds=timeout_s)
        except BaseException as exc:
            if broken(exc):
                conn.close()
            raise

    def close(self) -> None:
        async def close_all() -> None:
            for conn in self.connections.values():
                conn.close()
            await asyncio.gather(*(c.wait_closed() for c in self.connections.values()))

        if self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(15)
            except Exception as exc:  # leaving anyway: the servers see their stdin close
                log.debug("closing MCP sessions: %s", exc)
            self.loop.call_soon_threadsafe(self.loop.stop)


_hub_instance: Hub | None = None
_hub_lock = threading.Lock()


def hub() -> Hub:
    global _hub_instance
    with _hub_lock:
        if _hub_instance is None or _hub_instance.pid != os.getpid():
            _hub_instance = Hub()
        return _hub_instance


def _forget_hub() -> None:
    # A forked child has the parent's hub object but not its thread: it makes its own
    # sessions (one per server per process), and never touches the parent's.
    global _hub_instance, _hub_lock
    _hub_instance = None
    _hub_lock = threading.Lock()


@atexit.register
def _close_hub() -> None:
    hub = _hub_instance
    if hub is not None and hub.pid == os.getpid():
        hub.close()


os.register_at_fork(after_in_child=_forget_hub)
