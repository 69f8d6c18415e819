"""Chordal's exceptions: one tree, rooted at :class:`ChordalError`.

    ChordalError
    ├── ConfigError          a setting or environment variable is wrong (names the variable)
    ├── PlanError            a plan cannot be read or is invalid
    │   ├── PlanLoadError    missing file, not JSON, not an object
    │   └── PlanInvalid      one or more :class:`Problem` s, every one of them listed
    ├── RefError             a ``{"$ref": ...}`` is malformed or cannot be resolved
    ├── ToolError            raised by (or on behalf of) a tool
    │   ├── TransientError   worth retrying (timeouts, throttling, connection drops)
    │   └── PermanentError   retrying cannot help (bad input, hostile expression)
    ├── RunNotFound          no run with that id in the run store
    └── NoWorkerError        no worker consumes a queue that a run needs

A CLI user sees any ``ChordalError`` as one line on stderr and exit status 2 (user
error) -- never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class ChordalError(Exception):
    """Root of every error Chordal raises on purpose."""


class ConfigError(ChordalError):
    """A setting is wrong; the message names the variable to set."""


class PlanError(ChordalError):
    """A plan cannot be used."""


class PlanLoadError(PlanError):
    """A plan file is missing, is not JSON, or is not a JSON object."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a plan: where (step id and field) and what."""

    step: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"step {self.step!r}" if self.step is not None else "plan"
        return f"{where}, {self.field}: {self.message}"


class PlanInvalid(PlanError):
    """A plan failed validation; ``problems`` holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid plan: {len(problems)} problem(s)\n{lines}")


class RefError(ChordalError):
    """A ``$ref`` is malformed, or names a path its target's output does not have."""


class ToolError(ChordalError):
    """An error raised by a tool, or by Chordal on a tool's behalf."""


class TransientError(ToolError):
    """The call may succeed if retried (timeout, throttling, dropped connection)."""


class PermanentError(ToolError):
    """Retrying cannot help: the input is wrong or hostile."""


class RunNotFound(ChordalError):
    """No run with this id exists (or it expired past its retention)."""


class NoWorkerError(ChordalError):
    """No running worker consumes a queue that a run needs."""
