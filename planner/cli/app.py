"""The ``chordal`` command line: the Typer app, its consoles, and how errors end a command.

A :class:`~planner.errors.UserError` is one line on stderr and its ``exit_code`` (2);
a connection lost mid-command (Redis, the broker, or the server of ``CHORDAL_API_URL``) is
one line and exit 1. Never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from planner.errors import ChordalError
from planner.settings import Settings
from planner.tools.registry import ToolRegistry, load_tools

app = typer.Typer(
    name="chordal",
    help="Plan-and-execute LLM agents that run on Celery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_ENDED = 0, 1, 2, 3


def raised_by(exc: BaseException, module: str, name: str) -> bool:
    """Whether ``exc`` is ``module.name``, asked without importing ``module``: an error
    cannot be a library's unless the library was loaded, and the CLI starts faster for not
    loading redis, httpx or kombu just to be able to ask."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(exc, getattr(loaded, name))


def lost_connection(exc: BaseException) -> bool:
    """Redis or the broker went away."""
    return (raised_by(exc, "redis.exceptions", "RedisError")
            or raised_by(exc, "kombu.exceptions", "OperationalError"))


def user_errors(fn: F) -> F:
    """Turn a :class:`ChordalError` into one readable line (or the list of plan problems)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ChordalError as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            if raised_by(exc, "httpx", "HTTPError"):
                # The server (CHORDAL_API_URL) went away mid-answer.
                err.print(f"[red]error:[/] lost the connection to the Chordal server: "
                          f"{type(exc).__name__}", markup=True, highlight=False,
                          soft_wrap=True)
                raise typer.Exit(EXIT_FAILED) from None
            if not lost_connection(exc):
                raise
            # Redis or the broker went away mid-command: one line, not a traceback.
            err.print(f"[red]error:[/] lost the connection to Redis or the broker: {exc}",
                      markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED) from None

    return wrapper  # type: ignore[return-value]


def settings() -> Settings:
    return Settings.from_env()


def registry(s: Settings) -> ToolRegistry:
    return load_tools(s)


@app.callback()
def options(
    mcp_config: Annotated[Path | None, typer.Option(
        "--mcp-config", metavar="FILE",
        help="A JSON file of MCP servers whose tools to load (the mcpServers shape); "
             "the same as CHORDAL_MCP_CONFIG.")] = None,
) -> None:
    if mcp_config is not None:
        # Through the environment: every command's settings read it, and the processes a
        # command starts (chordal dev's worker) inherit it.
        os.environ["CHORDAL_MCP_CONFIG"] = str(mcp_config.resolve())


def main() -> None:
    try:
        app()
    except ChordalError as exc:  # raised outside a command (e.g. while parsing options)
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
