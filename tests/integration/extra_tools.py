"""A tool module that the test workers do not load: a client that does (and so validates
plans that use it) disagrees with its workers."""

from __future__ import annotations

from planner.tools import tool


@tool
def whoami() -> str:
    """Say who this is."""
    return "a tool the workers lack"
