"""Tools from MCP servers: configuration, discovery, and calls through the official SDK.

``CHORDAL_MCP_SERVERS`` (JSON) and ``CHORDAL_MCP_CONFIG`` (a JSON file) take the
``mcpServers`` block MCP clients already use::

    {"files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem",
                                           "/data"], "env": {"DEBUG": "1"}},
     "search": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "..."}}}

(or a whole file ``{"mcpServers": {...}}``). A server with ``command`` is started over
stdio, one with ``url`` is reached over streamable HTTP. Optional Chordal keys per server:
``queue``, ``timeout_s`` (a call's time limit and its tools' default step timeout) and
``max_retries``.

Each tool of server ``name`` registers as ``name.tool`` with the server's input schema (and
output schema where it gives one), so the planner sees it, validation checks a step's args
against it, and ``chordal tools`` lists it. Discovery happens when a registry is built
(client and worker alike), over a short-lived connection per server, and is cached in the
process for :data:`DISCOVERY_TTL_S` (a forked worker process inherits it).

Calls: the SDK is async and a tool is called synchronously (in a Celery pool process), so
each process keeps one event loop thread (:class:`_Hub`, made on first call, after a fork)
holding one session per server; a session that breaks (the server died, the HTTP server
went away) is dropped and the next call opens a new one. Errors: a broken connection, a
timeout and a server's internal error are transient (the step is retried); a tool's own
error result (``isError``), bad arguments and unknown tools are permanent.

The SDK (``mcp``, over a second) is imported only when a server is configured.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import json
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from planner.errors import ConfigError, PermanentError, TransientError
from planner.settings import Settings
from planner.tools.tool import DEFAULT_TIMEOUT_S, Tool, ToolContext
from planner.wire import DEFAULT_QUEUE

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger("chordal.mcp")

#: How long one process reuses what a server said its tools are.
DISCOVERY_TTL_S = 60.0
#: Longest a server may take to start (or answer) and list its tools.
CONNECT_TIMEOUT_S = 30.0
#: A server's name is the part before the dot of its tools' names: no dots in it.
SERVER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: What a tool's output is when its server declares no output schema: its text content.
TEXT_OUTPUT: dict[str, Any] = {"type": "string",
                               "description": "the text content of the tool's result"}


class _ServerConfig(BaseModel):
    """One entry of ``mcpServers``, as MCP clients write it, plus Chordal's few keys."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["stdio", "http", "streamable-http", "streamableHttp"] | None = None
    command: str | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    queue: str = Field(DEFAULT_QUEUE, min_length=1)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, le=86_400)
    max_retries: int = Field(3, ge=0, le=100)


@dataclass(frozen=True)
class McpServer:
    """A configured MCP server: started over stdio (``command``) or reached by ``url``."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    queue: str = DEFAULT_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = 3
    source: str = "CHORDAL_MCP_SERVERS"

    def key(self) -> str:
        """Everything that decides what the server is, for the discovery cache."""
        return json.dumps([self.name, self.command, self.args, dict(self.env), self.cwd,
                           self.url, dict(self.headers)], sort_keys=True)

    def where(self) -> str:
        how = f"stdio: {self.command}" if self.command else f"url: {self.url}"
        return f"{self.source}: server {self.name!r} ({how})"


def parse_servers(data: Any, source: str) -> dict[str, McpServer]:
    """The servers of an ``mcpServers`` mapping (or a document holding one); a
    :class:`ConfigError` naming ``source``, the server and the field otherwise."""
    if isinstance(data, Mapping) and set(data) == {"mcpServers"}:
        data = data["mcpServers"]
    if not isinstance(data, Mapping):
        raise ConfigError(f'{source}: must be a JSON object {{"name": {{"command": ...}} or '
                          f'{{"url": ...}}}}, not {type(data).__name__}')
    servers: dict[str, McpServer] = {}
    for name, raw in data.items():
        where = f"{source}: server {name!r}"
        if not isinstance(name, str) or not SERVER_NAME.match(name):
            raise ConfigError(f"{where}: a server's name is 1-64 letters, digits, _ or - (its "
                              "tools are named name.tool)")
        try:
            cfg = _ServerConfig.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "server"
            raise ConfigError(f"{where}: {loc}: {err['msg']}") from None
        if (cfg.command is None) == (cfg.url is None):
            raise ConfigError(f'{where}: give either "command" (a stdio server) or "url" (a '
                              "streamable-HTTP server)")
        if cfg.url is not None:
            if not cfg.url.startswith(("http://", "https://")):
                raise ConfigError(f"{where}: url: must be an http:// or https:// URL")
            if cfg.type == "stdio" or cfg.args or cfg.env or cfg.cwd:
                raise ConfigError(f"{where}: args, env and cwd are for stdio servers "
                                  '("command"), not for a "url"')
        elif cfg.type not in (None, "stdio") or cfg.headers:
            raise ConfigError(f'{where}: headers are for HTTP servers ("url"), not for a '
                              '"command"')
        servers[name] = McpServer(name, cfg.command, tuple(cfg.args), dict(cfg.env), cfg.cwd,
                                  cfg.url, dict(cfg.headers), cfg.queue, cfg.timeout_s,
                                  cfg.max_retries, source)
    return servers


def configured_servers(settings: Settings) -> dict[str, McpServer]:
    """The servers of ``CHORDAL_MCP_SERVERS`` and of the file ``CHORDAL_MCP_CONFIG``."""
    servers = parse_servers(settings.mcp_servers, "CHORDAL_MCP_SERVERS")
    if settings.mcp_config:
        source = f"CHORDAL_MCP_CONFIG ({settings.mcp_config})"
        try:
            text = Path(settings.mcp_config).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{source}: cannot read: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not JSON: {exc.msg} (line {exc.lineno})") from None
        for name, server in parse_servers(data, source).items():
            if name in servers:
                raise ConfigError(f"{source}: server {name!r} is also in "
                                  "CHORDAL_MCP_SERVERS; name it once")
            servers[name] = server
    return servers


# -- the tools --------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """What a server says about one tool (plain data: cached, and kept across a fork)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None


class _AnyArgs(BaseModel):
    # Tool requires an input model; an MCP tool's arguments are checked against its JSON
    # Schema instead (McpTool.check_args), so this one is never used to validate.
    model_config = ConfigDict(extra="allow")


@dataclass(frozen=True)
class McpTool(Tool):
    """A tool of an MCP server: its schemas are the server's, a call goes to the server."""

    server: McpServer | None = None
    remote_name: str = ""
    schema: dict[str, Any] = field(default_factory=dict, repr=False)
    structured: bool = False

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.schema

    def check_args(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        return schema_errors(self.schema, args)

    def invoke(self, args: Mapping[str, Any], ctx: ToolContext) -> Any:
        errors = self.check_args(args)
        if errors:
            shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}"
                              for e in errors)
            raise PermanentError(f"{self.name}: bad arguments: {shown}")
        return self.fn(**dict(args))


def schema_errors(schema: Mapping[str, Any], args: Any) -> list[dict[str, Any]]:
    """Problems of ``args`` against a JSON Schema, shaped as pydantic's errors (``loc``,
    ``type``, ``msg``) so that validation reports them like a Python tool's."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    cls = validator_for(schema, default=Draft202012Validator)
    out: list[dict[str, Any]] = []
    for err in cls(schema).iter_errors(args):
        loc = tuple(err.absolute_path)
        if err.validator == "required" and isinstance(err.instance, Mapping):
            required = err.validator_value if isinstance(err.validator_value, list) else []
            out.extend({"loc": (*loc, name), "type": "missing", "msg": "Field required"}
                       for name in required if name not in err.instance)
        elif err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            sub = err.schema if isinstance(err.schema, Mapping) else {}
            known = set(sub.get("properties", {}))
            patterns = list(sub.get("patternProperties", {}))
            out.extend({"loc": (*loc, name), "type": "extra_forbidden",
                        "msg": "Extra inputs are not permitted"}
                       for name in err.instance if name not in known
                       and not any(re.search(p, name) for p in patterns))
        else:
            out.append({"loc": loc, "type": str(err.validator), "msg": err.message})
    return out


def make_tool(server: McpServer, spec: ToolSpec) -> McpTool:
    name = f"{server.name}.{spec.name}"

    def call(**args: Any) -> Any:
        return _hub().call(server, spec.name, args, spec.output_schema is not None)

    call.__qualname__ = call.__name__ = name
    return McpTool(
        name=name, fn=call, description=spec.description, input_model=_AnyArgs,
        output_schema=spec.output_schema if spec.output_schema is not None else TEXT_OUTPUT,
        queue=server.queue, max_retries=server.max_retries, timeout_s=server.timeout_s,
        server=server, remote_name=spec.name, schema=spec.input_schema,
        structured=spec.output_schema is not None)


def mcp_tools(settings: Settings) -> list[McpTool]:
    """The tools of every configured MCP server (none configured: none, and no SDK)."""
    servers = configured_servers(settings)
    if not servers:
        return []
    found = discover(list(servers.values()))
    return [make_tool(servers[name], spec) for name in sorted(found) for spec in found[name]]


# -- discovery --------------------------------------------------------------------------

_discovered: dict[str, tuple[float, list[ToolSpec]]] = {}
_discovery_lock = threading.Lock()


def discover(servers: list[McpServer]) -> dict[str, list[ToolSpec]]:
    """Each server's tools; from this process's cache when fresh, else asked (all servers
    at once). A server that cannot be reached or listed is a :class:`ConfigError`."""
    now = time.monotonic()
    out: dict[str, list[ToolSpec]] = {}
    with _discovery_lock:
        stale = []
        for s in servers:
            hit = _discovered.get(s.key())
            if hit is not None and now - hit[0] < DISCOVERY_TTL_S:
                out[s.name] = hit[1]
            else:
                stale.append(s)
        if stale:
            # In a thread of its own: the caller may be inside a running event loop (an
            # ASGI app building a client), where a second loop cannot start.
            with concurrent.futures.ThreadPoolExecutor(1, "chordal-mcp-discovery") as pool:
                listed = pool.submit(asyncio.run, _list_all(stale)).result()
            for s in stale:
                result = listed[s.name]
                if isinstance(result, BaseException):
                    raise ConfigError(f"{s.where()}: cannot list its tools: "
                                      f"{_describe(result)}")
                _discovered[s.key()] = (time.monotonic(), result)
                out[s.name] = result
    return out


async def _list_all(servers: list[McpServer]) -> dict[str, list[ToolSpec] | BaseException]:
    async def one(s: McpServer) -> list[ToolSpec] | BaseException:
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
    async with _client(server) as client:
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


def _client(server: McpServer) -> Client:
    """An SDK client for the server (to use as ``async with``)."""
    from mcp import Client, StdioServerParameters

    if server.command is not None:
        # The SDK passes a stdio server only a few safe variables (PATH, HOME...) plus
        # ``env``: Chordal's own settings and secrets stay out of third-party processes.
        return Client(StdioServerParameters(command=server.command, args=list(server.args),
                                            env=dict(server.env) or None, cwd=server.cwd))
    assert server.url is not None
    if not server.headers:
        return Client(server.url)
    return Client(_http_with_headers(server.url, dict(server.headers)))


def _http_with_headers(url: str, headers: dict[str, str]
                       ) -> AbstractAsyncContextManager[Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    @asynccontextmanager
    async def transport() -> AsyncIterator[Any]:
        timeout = httpx2.Timeout(30.0, read=300.0)
        async with (httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
                    streamable_http_client(url, http_client=http) as streams):
            yield streams

    return transport()


# -- calls ------------------------------------------------------------------------------


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
            async with _client(self.server) as client:
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:  # a failed start, or the connection broke
            if not ready.done():
                ready.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            log.info("%s: connection ended: %s", self.server.where(), _describe(exc))
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


class _Hub:
    """This process's MCP sessions, on an event loop thread of their own."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.connections: dict[str, _Connection] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, name="chordal-mcp",
                                       daemon=True)
        self.thread.start()

    def call(self, server: McpServer, tool: str, args: dict[str, Any],
             structured: bool) -> Any:
        future = asyncio.run_coroutine_threadsafe(self._call(server, tool, args),
                                                  self.loop)
        try:
            result = future.result()
        except BaseException as exc:
            # A soft time limit lands here, in the calling thread: stop the call too.
            future.cancel()
            if isinstance(exc, Exception):
                raise _tool_error(server, tool, exc) from None
            raise
        return _output(server, tool, result, structured)

    async def _call(self, server: McpServer, tool: str, args: dict[str, Any]) -> Any:
        conn = self.connections.get(server.name)
        if conn is None or conn.dead:
            conn = self.connections[server.name] = _Connection(server)
        client = await conn.client()
        try:
            return await client.call_tool(tool, args, read_timeout_seconds=server.timeout_s)
        except BaseException as exc:
            if _broken(exc):
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


_hub_instance: _Hub | None = None
_hub_lock = threading.Lock()


def _hub() -> _Hub:
    global _hub_instance
    with _hub_lock:
        if _hub_instance is None or _hub_instance.pid != os.getpid():
            _hub_instance = _Hub()
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


# -- results and errors -----------------------------------------------------------------


def _text(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        if isinstance(text, str):
            parts.append(text)
            continue
        resource_text = getattr(getattr(block, "resource", None), "text", None)
        if isinstance(resource_text, str):
            parts.append(resource_text)
        else:
            kind = getattr(block, "mime_type", None) or getattr(block, "type", "content")
            parts.append(f"[{kind} omitted]")
    return "\n".join(parts)


def _output(server: McpServer, tool: str, result: Any, structured: bool) -> Any:
    name = f"{server.name}.{tool}"
    if getattr(result, "is_error", False):
        # The tool ran and said it failed (bad input, a refusal, a failed lookup): the
        # same arguments would fail again, and the replanner reads why.
        raise PermanentError(f"{name}: {_text(result)[:2_000] or 'the tool reported an error'}")
    if structured:
        content = getattr(result, "structured_content", None)
        if content is None:
            raise PermanentError(f"{name}: its server declares an output schema but sent no "
                                 "structured content")
        return content
    return _text(result)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _describe(exc: BaseException) -> str:
    leaf = _leaves(exc)[0]
    return f"{type(leaf).__name__}: {leaf}" if str(leaf) else type(leaf).__name__


def _broken(exc: BaseException) -> bool:
    """The session cannot be used again (the server or the connection is gone)."""
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED

    for leaf in _leaves(exc):
        if isinstance(leaf, MCPError):
            if leaf.code == CONNECTION_CLOSED:
                return True
        elif isinstance(leaf, Exception) and not isinstance(leaf, ValidationError):
            return True
    return False


def _tool_error(server: McpServer, tool: str, exc: Exception) -> Exception:
    """An SDK or transport error as a transient or permanent tool error."""
    import httpx2
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT

    name = f"{server.name}.{tool}"
    leaf = _leaves(exc)[0]
    if isinstance(leaf, MCPError):
        if leaf.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT, INTERNAL_ERROR):
            return TransientError(f"{name}: MCP server {server.name!r}: {leaf.message} "
                                  f"(code {leaf.code})")
        return PermanentError(f"{name}: MCP server {server.name!r} refused the call: "
                              f"{leaf.message} (code {leaf.code})")
    if isinstance(leaf, httpx2.HTTPStatusError) and 400 <= leaf.response.status_code < 500 \
            and leaf.response.status_code not in (408, 429):
        return PermanentError(f"{name}: MCP server {server.name!r} answered "
                              f"{leaf.response.status_code}")
    if isinstance(leaf, FileNotFoundError | PermissionError):
        return PermanentError(f"{name}: cannot start MCP server {server.name!r}: {leaf}")
    if isinstance(leaf, ValidationError):
        return PermanentError(f"{name}: MCP server {server.name!r} sent a malformed "
                              f"result: {leaf.error_count()} error(s)")
    # The server died, could not be reached, or did not answer in time: try again (the
    # next call opens a new session).
    return TransientError(f"{name}: MCP server {server.name!r}: {_describe(exc)}")


__all__ = ["McpServer", "McpTool", "ToolSpec", "configured_servers", "discover",
           "make_tool", "mcp_tools", "parse_servers", "schema_errors"]

