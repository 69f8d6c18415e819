"""Tools from MCP servers: configuration, discovery, and calls through the official SDK.

``CHORDAL_MCP_SERVERS`` (JSON) and ``CHORDAL_MCP_CONFIG`` (a JSON file) take the config
files MCP clients already have (:mod:`.config`: Claude Desktop's, Cline's and Roo's,
VS Code's; ``${VAR}`` expanded, paths from the file's folder)::

    {"files": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem",
                                           "/data"], "env": {"DEBUG": "1"}},
     "search": {"url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"}}}

A server with ``command`` is started over stdio, one with ``url`` is reached over
streamable HTTP (or SSE, ``"type": "sse"``). Optional Chordal keys per server: ``queue``,
``timeout_s`` (a call's time limit and its tools' default step timeout) and
``max_retries``.

Each tool of server ``name`` registers as ``name.tool`` with the server's input schema (and
output schema where it gives one), so the planner sees it, validation checks a step's args
against it, and ``chordal tools`` lists it (:mod:`.adapter`). Discovery happens when a
registry is built (client and worker alike), over a short-lived connection per server, and
is cached in the process (:mod:`.discovery`; a forked worker process inherits it). A server
that does not answer then is logged, not fatal: its steps fail with its error (transient:
retried by the step's retry policy) and each attempt asks it again, until it answers.

Calls (:mod:`.session`): each process keeps one event loop thread holding one session per
server; a session that breaks is dropped and the next call opens a new one. A stdio
server's stderr goes to the log through a pipe, whatever ``sys.stderr`` is. Errors
(:mod:`.results`): a broken connection, a timeout and a server's internal error are
transient; a tool's own error result (``isError``), bad arguments and unknown tools are
permanent.

The SDK (``mcp``, over a second) is imported only when a server is configured.
"""

from planner.tools.mcp.adapter import (
    TEXT_OUTPUT,
    McpCatalog,
    McpTool,
    UnavailableTool,
    make_tool,
    mcp_tools,
    schema_errors,
)
from planner.tools.mcp.config import McpServer, configured_servers, parse_servers
from planner.tools.mcp.discovery import DISCOVERY_TTL_S, ToolSpec, discover
from planner.tools.mcp.session import CONNECT_TIMEOUT_S

__all__ = ["CONNECT_TIMEOUT_S", "DISCOVERY_TTL_S", "TEXT_OUTPUT", "McpCatalog", "McpServer",
           "McpTool", "ToolSpec", "UnavailableTool", "configured_servers", "discover",
           "make_tool", "mcp_tools", "parse_servers", "schema_errors"]
