"""Tools: the typed functions that steps call."""

from planner.errors import PermanentError, ToolError, TransientError
from workers.tools.registry import (
    DEFAULT_QUEUE,
    Tool,
    ToolContext,
    ToolRegistry,
    load_registry,
    tool,
)

__all__ = [
    "DEFAULT_QUEUE",
    "PermanentError",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolRegistry",
    "TransientError",
    "load_registry",
    "tool",
]
