"""An MCP server for the tests, on the official SDK's MCPServer (FastMCP in mcp 1.x).

    python tests/mcp/server.py stdio NAME        over stdin/stdout
    python tests/mcp/server.py http NAME PORT    streamable HTTP at http://127.0.0.1:PORT/mcp

``crash_once(marker)`` kills the server process the first time a marker file is named
(the file remembers it across the restart); ``pid()`` tells which process answered.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

name = sys.argv[2] if len(sys.argv) > 2 else "demo"
mcp = MCPServer(name, log_level="WARNING")


class Forecast(BaseModel):
    city: str
    high_c: int
    sunny: bool


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@mcp.tool()
def forecast(city: str, days: int = 1) -> Forecast:
    """Tomorrow's weather in a city."""
    return Forecast(city=city, high_c=20 + days, sunny=city != "London")


@mcp.tool(structured_output=False)
def shout(text: str) -> str:
    """Upper-case a text (unstructured: text content only)."""
    return text.upper()


@mcp.tool()
def refuse(reason: str) -> str:
    """Always fails, saying why."""
    raise ToolError(f"refused: {reason}")


@mcp.tool()
def nap(seconds: float, value: str) -> dict[str, float | str]:
    """Sleep, then say when it started and ended."""
    start = time.time()
    time.sleep(seconds)
    return {"value": value, "start": start, "end": time.time()}


@mcp.tool()
def crash_once(marker: str) -> str:
    """Kill this server the first time ``marker`` is named; answer after that."""
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(3)
    return f"recovered in {os.getpid()}"


@mcp.tool()
def pid() -> int:
    """This server's process id."""
    return os.getpid()


@mcp.custom_route("/health", methods=["GET"])
async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "server": name})


if __name__ == "__main__":
    if os.environ.get("MCP_TEST_STDERR"):
        print(os.environ["MCP_TEST_STDERR"], file=sys.stderr, flush=True)
    if sys.argv[1] == "http":
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        mcp.run()
