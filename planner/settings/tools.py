"""The areas of the tools a plan may call: Python modules, the built-in http_request, and
the tools of MCP servers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from planner.settings.area import Area
from planner.settings.values import CommaList, HostList, HttpSecret, JsonText


class ToolsSettings(Area):
    """Python tools: the modules whose tools to load."""

    tool_modules: CommaList = Field(
        default_factory=list, description="Comma-separated modules whose tools to load.")



class HttpSettings(Area):
    """The built-in http_request tool: where it may go, the secrets it may send."""

    http_allow: HostList = Field(
        default_factory=list,
        description="Hosts http_request may call (comma-separated; `*.example.com` patterns, "
                    "`*` for any public host; `host:port` or `[v6]:port` for one port, a "
                    "host alone is every port); none by default. A host that resolves to a "
                    "private, loopback or link-local address only when named exactly (name "
                    "the port for a private host); on the workers.")
    http_secrets: Annotated[dict[str, HttpSecret], JsonText] = Field(
        default_factory=dict, repr=False,
        description='Secrets http_request may put in headers (JSON): {"name": {"value": '
                    '"...", "hosts": ["api.example.com"]}}: what secret_headers may name as '
                    "${name}; a plan names them, never holds them; on the workers.")
    http_timeout_s: float = Field(30.0, gt=0, le=3_600, description="Most seconds an "
                                                                    "http_request call may "
                                                                    "take, redirects "
                                                                    "included.")
    http_max_bytes: int = Field(1_048_576, ge=1_024, description="Most bytes of a response "
                                                                 "body http_request reads.")


class McpSettings(Area):
    """MCP servers whose tools to load (docs/mcp.md)."""

    mcp_servers: Annotated[dict[str, Any], JsonText] = Field(
        default_factory=dict, repr=False,
        description='MCP servers whose tools to load (JSON, the mcpServers shape): {"name": '
                    '{"command": ..., "args": [...], "env": {...}}} or {"name": {"url": '
                    '"http://..."}}; on clients and workers alike.')
    mcp_config: str | None = Field(None, description="A JSON file of MCP servers: an MCP "
                                                     "client's own (Claude Desktop, Cline, "
                                                     "VS Code...; docs/mcp.md); its relative "
                                                     "paths are from its folder; `chordal "
                                                     "--mcp-config FILE` sets it.")

