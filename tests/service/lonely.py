"""A tool on a queue no test worker consumes: a server that loads it is not ready."""

from __future__ import annotations

from planner.tools import tool


@tool(queue="lonely")
def lonely() -> str:
    """Wait for a worker that never comes."""
    return "never"
