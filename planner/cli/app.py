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

import httpx
import redis
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


def lost_connection(exc: BaseException) -> bool:
    """Redis or the broker went away. Kombu's error is matched only if kombu was loaded:
    an error cannot be kombu's otherwise, and the CLI does not load it to ask."""
    kombu_errors = sys.modules.get("kombu.exceptions")
    return isinstance(exc, redis.RedisError) or (
        kombu_errors is not None and isinstance(exc, kombu_errors.OperationalError))


def user_errors(fn: F) -> F:
    """Turn a :class:`ChordalError` into one readable line (or the list of plan problems)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ChordalError as exc:
            err.print(f"[red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except httpx.HTTPError as exc:
            # The server (CHORDAL_API_URL) went away mid-answer.
            err.print(f"[red]error:[/] lost the connection to the Chordal server: "
                      f"{type(exc).__name__}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_FAILED) from None
        except Exception as exc:
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
