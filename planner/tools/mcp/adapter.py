"""MCP tools as Chordal tools: each tool of server ``name`` is ``name.tool``, with the
server's schemas; a server that could not be listed has stand-ins, found by name, whose
steps fail with the server's error (transient: retried) until it answers."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict

from planner.errors import PermanentError
from planner.settings import Settings
from planner.tools.mcp.config import McpServer, configured_servers
from planner.tools.mcp.discovery import ToolSpec, discover
from planner.tools.mcp.results import describe, tool_error
from planner.tools.mcp.session import hub, last_stderr
from planner.tools.tool import Tool, ToolContext

log = logging.getLogger("chordal.mcp")

#: What a tool's output is when its server declares no output schema: its text content.
TEXT_OUTPUT: dict[str, Any] = {"type": "string",
                               "description": "the text content of the tool's result"}
#: A down server is asked again at most this often by one process (a step's attempt asks).
RETRY_DOWN_S = 1.0


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

    @property
    def lax_args(self) -> bool:
        return False  # jsonschema checks JSON types as they are

    def check_args(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        return schema_errors(self.schema, args)

    def invoke(self, args: Mapping[str, Any], ctx: ToolContext) -> Any:
        errors = self.check_args(args)
        if errors:
            shown = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'args'}: {e['msg']}"
                              for e in errors)
            raise PermanentError(f"{self.name}: bad arguments: {shown}")
        if self.server is None:
            return self.fn(**dict(args))
        # The step's timeout_s bounds the call as it bounds any tool's attempt.
        limit = self.server.timeout_s if ctx.timeout_s is None else min(
            ctx.timeout_s, self.server.timeout_s)
        return hub().call(self.server, self.remote_name, dict(args), self.structured, limit)


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
        return hub().call(server, spec.name, args, spec.output_schema is not None)

    call.__qualname__ = call.__name__ = name
    return McpTool(
        name=name, fn=call, description=spec.description, input_model=_AnyArgs,
        output_schema=spec.output_schema if spec.output_schema is not None else TEXT_OUTPUT,
        queue=server.queue, max_retries=server.max_retries, timeout_s=server.timeout_s,
        server=server, remote_name=spec.name, schema=spec.input_schema,
        structured=spec.output_schema is not None)


@dataclass(frozen=True)
class UnavailableTool(McpTool):
    """A tool of a server that could not be listed: its steps keep the server's queue,
    time limit and retries, and each attempt asks the server again."""

    catalog: McpCatalog | None = field(default=None, repr=False, compare=False)

    def check_args(self, args: Mapping[str, Any]) -> list[dict[str, Any]]:
        assert self.catalog is not None and self.server is not None
        # Asked again here too: a process that only validates (API, CLI) never invokes.
        self.catalog.ask_again(self.server)
        why = self.catalog.down.get(self.server.name)
        if why is None:
            real = self.catalog.listed(self.name)
            if real is not None:
                return real.check_args(args)
            return [{"loc": (), "type": "mcp_no_tool",
                     "msg": f"MCP server {self.server.name!r} has no tool "
                            f"{self.remote_name!r}"}]
        return [{"loc": (), "type": "mcp_unavailable",
                 "msg": f"MCP server {self.server.name!r} did not list its tools, so "
                        f"{self.name!r} cannot be checked: {describe(why, self.server)}"}]

    def invoke(self, args: Mapping[str, Any], ctx: ToolContext) -> Any:
        assert self.catalog is not None and self.server is not None
        real = self.catalog.answered(self.server, self.remote_name)
        return real.invoke(args, ctx)


class McpCatalog:
    """The configured servers' tools, for one registry: those listed, and a stand-in
    (:class:`UnavailableTool`) for any ``server.tool`` of a server that did not answer."""

    def __init__(self, servers: Mapping[str, McpServer]) -> None:
        self.servers = dict(servers)
        self.tools: list[McpTool] = []
        self.down: dict[str, Exception] = {}
        #: Called with each tool of a server that answered late (the registry adds it).
        self.on_found: Callable[[Tool], None] | None = None
        self._lock = threading.Lock()
        self._asked: dict[str, float] = {}
        self._asking: set[str] = set()

    @classmethod
    def load(cls, settings: Settings) -> McpCatalog:
        """The tools of every configured server (none configured: none, and no SDK)."""
        catalog = cls(configured_servers(settings))
        if catalog.servers:
            catalog._take(discover(list(catalog.servers.values())))
        return catalog

    def _take(self, listed: Mapping[str, list[ToolSpec] | Exception]) -> None:
        for name in sorted(listed):
            server, result = self.servers[name], listed[name]
            if isinstance(result, Exception):
                if name not in self.down:
                    stderr = last_stderr(name)
                    log.warning("%s: cannot list its tools: %s%s; its steps fail with this "
                                "error (transient ones are retried) until it answers",
                                server.where(), describe(result, server),
                                f" (its stderr: {stderr})" if stderr else "")
                self.down[name] = result
                continue
            self.down.pop(name, None)
            # Filtered here, not when listed: the cache holds what the server has.
            found = [make_tool(server, spec) for spec in result
                     if spec.name not in server.hidden_tools]
            self.tools.extend(found)
            for t in found if self.on_found is not None else ():
                assert self.on_found is not None
                self.on_found(t)

    @property
    def queues(self) -> set[str]:
        """The queues of the servers that did not answer (their tools' steps go there)."""
        return {self.servers[name].queue for name in self.down}

    def find(self, name: str) -> Tool | None:
        """A stand-in for ``name`` if it is a tool of a server that did not answer (asked
        again first, as :meth:`ask_again` allows: once it answers, its tool)."""
        server_name, dot, remote = name.partition(".")
        if not dot or server_name not in self.down:
            return None
        server = self.servers[server_name]
        self.ask_again(server)
        if server_name not in self.down:
            return self.listed(name)
        return UnavailableTool(
            name=name, fn=_unavailable, description=f"a tool of MCP server {server_name!r}, "
            "which did not answer", input_model=_AnyArgs, output_schema={},
            queue=server.queue, max_retries=server.max_retries, timeout_s=server.timeout_s,
            server=server, remote_name=remote, catalog=self)

    def listed(self, name: str) -> McpTool | None:
        return next((t for t in self.tools if t.name == name), None)

    def ask_again(self, server: McpServer) -> None:
        """List a down server's tools again: at most every ``RETRY_DOWN_S``, and by one
        thread at a time, without the lock held. Listing a down server may take
        CONNECT_TIMEOUT_S: the other threads go on at once with what is known (a step's
        attempt fails transiently and is retried) rather than queue up behind it."""
        with self._lock:
            if server.name not in self.down or server.name in self._asking or \
                    time.monotonic() - self._asked.get(server.name, 0.0) < RETRY_DOWN_S:
                return
            self._asking.add(server.name)
        listed: Mapping[str, Any] = {}
        try:
            listed = discover([server], down_ttl_s=0.0)
        finally:
            with self._lock:
                if listed:
                    self._take(listed)
                # Stamped after the answer: the rate counts from when it came.
                self._asked[server.name] = time.monotonic()
                self._asking.discard(server.name)

    def answered(self, server: McpServer, remote: str) -> McpTool:
        """The tool, once its server lists it (asked again if it did not answer lately);
        the server's error (transient: the step is retried) while it does not."""
        self.ask_again(server)
        why = self.down.get(server.name)
        if why is not None:
            raise tool_error(server, remote, why)
        real = self.listed(f"{server.name}.{remote}")
        if real is not None:
            return real
        raise PermanentError(f"{server.name}.{remote}: MCP server {server.name!r} has no "
                             f"tool {remote!r}")


def _unavailable(**_: Any) -> Any:
    raise AssertionError("UnavailableTool.invoke calls the server's tool instead")


def mcp_tools(settings: Settings) -> list[McpTool]:
    """The tools of every configured MCP server that answered."""
    return McpCatalog.load(settings).tools
