"""What a call to an MCP server came to: its result as a step's output, or its error as
a transient or permanent tool error."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from planner.errors import PermanentError, TransientError
from planner.tools.mcp.config import McpServer


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


def output(server: McpServer, tool: str, result: Any, structured: bool) -> Any:
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


def leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


def describe(exc: BaseException, server: McpServer) -> str:
    """The error in one line, without the secrets of ``server``'s URL and headers (an
    HTTP client's error names the URL; this lands in logs and in a step's error)."""
    leaf = leaves(exc)[0]
    return server.scrub(f"{type(leaf).__name__}: {leaf}" if str(leaf)
                        else type(leaf).__name__)


def broken(exc: BaseException) -> bool:
    """The session cannot be used again (the server or the connection is gone)."""
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED

    for leaf in leaves(exc):
        if isinstance(leaf, MCPError):
            if leaf.code == CONNECTION_CLOSED:
                return True
        elif isinstance(leaf, Exception) and not isinstance(leaf, ValidationError):
            return True
    return False


def tool_error(server: McpServer, tool: str, exc: BaseException) -> Exception:
    """An SDK or transport error as a transient or permanent tool error."""
    import httpx2
    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED, INTERNAL_ERROR, REQUEST_TIMEOUT

    name = f"{server.name}.{tool}"
    leaf = leaves(exc)[0]
    if isinstance(leaf, PermanentError | TransientError):
        return leaf
    if isinstance(leaf, MCPError):
        if leaf.code in (CONNECTION_CLOSED, REQUEST_TIMEOUT, INTERNAL_ERROR):
            return TransientError(server.scrub(
                f"{name}: MCP server {server.name!r}: {leaf.message} (code {leaf.code})"))
        return PermanentError(server.scrub(
            f"{name}: MCP server {server.name!r} refused the call: {leaf.message} "
            f"(code {leaf.code})"))
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
    return TransientError(f"{name}: MCP server {server.name!r}: {describe(exc, server)}")
