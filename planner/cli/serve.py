"""``chordal serve``: the HTTP API (docs/api.md) under uvicorn.

It refuses to start without API keys (CHORDAL_API_KEYS or CHORDAL_API_KEYS_FILE) unless
given ``--no-auth``, which it accepts only on a loopback address, where nobody else can
reach it, and announces on stderr on every start, so an open server is never an accident.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from planner.cli.app import app, err, settings, user_errors
from planner.errors import ConfigError

#: planner.service.state.KEEPALIVE_S, repeated so that loading the CLI does not load
#: FastAPI (the service is imported when `serve` runs).
KEEPALIVE_S = 15.0

#: Seconds uvicorn waits for open requests at shutdown: event streams stay open until
#: their run ends, and a stopping server must not wait for that (clients reconnect).
GRACEFUL_S = 5


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@app.command()
@user_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65_535, help="Port.")] = 8000,
    no_auth: Annotated[bool, typer.Option(
        "--no-auth", help="No API keys: every request is let in (loopback addresses "
                          "only).")] = False,
    keepalive: Annotated[float, typer.Option(
        min=0.1, help="Seconds between keep-alive comments on a quiet event "
                      "stream.")] = KEEPALIVE_S,
) -> None:
    """Serve the HTTP API: runs over HTTP, live events, the run page."""
    import uvicorn  # only this command needs the server

    from planner.service.app import create_app
    from planner.service.auth import load_keys

    s = settings()
    keys = load_keys(s)
    if no_auth:
        if keys:
            raise ConfigError("--no-auth: API keys are configured (CHORDAL_API_KEYS or "
                              "CHORDAL_API_KEYS_FILE); drop one or the other")
        if not is_loopback(host):
            raise ConfigError(f"--no-auth: accepted only on a loopback address "
                              f"(127.0.0.1, ::1, localhost), not {host!r}; set "
                              "CHORDAL_API_KEYS to serve on other addresses")
        err.print(f"warning: --no-auth: http://{host}:{port} lets in every request without "
                  "a key (every run is visible to anyone on this machine)",
                  highlight=False, markup=False)
    elif not keys:
        raise ConfigError("no API keys: set CHORDAL_API_KEYS (name=secret,...) or "
                          "CHORDAL_API_KEYS_FILE; for a local try-out, --no-auth on "
                          "127.0.0.1")
    uvicorn.run(create_app(s, auth=not no_auth, keepalive_s=keepalive), host=host,
                port=port, log_level="info", server_header=False,
                timeout_graceful_shutdown=GRACEFUL_S)
