"""The demo's local services for tests: its weather server on a free port, with a fresh
token, and the recorded model of ``./scripts/demo`` pointed at that port. The travel
agency (an MCP server over stdio) needs nothing started: workers spawn it from
``examples/travel/mcp.json``."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_SCRIPT = ROOT / "examples" / "scripted" / "weekend-getaway.json"
WEATHER = ROOT / "examples" / "travel" / "weather.py"
#: The address the recorded plan calls.
RECORDED = "http://127.0.0.1:8765/"


@dataclass
class Travel:
    port: int
    token: str
    #: Variables a worker (or ``chordal dev``) needs to reach both services.
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path: Path, script: dict[str, Any] | None = None) -> Path:
        """Write the demo's recorded model (or ``script``), calling this weather server."""
        text = json.dumps(script) if script is not None else DEMO_SCRIPT.read_text("utf-8")
        path.write_text(text.replace(RECORDED, f"{self.url}/"), "utf-8")
        return path


def demo_env(token: str, port: int = 8765) -> dict[str, str]:
    """What ``./scripts/demo`` exports for the workers (the weather server on ``port``),
    ``python`` first on the PATH (the MCP config starts the agency with ``python``)."""
    return {
        "CHORDAL_MCP_CONFIG": "examples/travel/mcp.json",
        "CHORDAL_HTTP_ALLOW": f"127.0.0.1:{port}",
        "CHORDAL_HTTP_SECRETS": json.dumps(
            {"weather": {"value": token, "hosts": [f"127.0.0.1:{port}"]}}),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@contextmanager
def travel_services(port: int) -> Iterator[Travel]:
    """The weather server on ``port`` until the block ends."""
    token = secrets.token_urlsafe(24)
    process = subprocess.Popen(
        [sys.executable, str(WEATHER), "--port", str(port)], cwd=ROOT,
        env={**os.environ, "WEATHER_API_TOKEN": token}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stderr is not None
        if process.stdout.readline().split() != ["ready", str(port)]:
            raise RuntimeError(f"the weather server did not start: {process.stderr.read()}")
        yield Travel(port, token, demo_env(token, port))
    finally:
        process.terminate()
        process.wait(timeout=10)
