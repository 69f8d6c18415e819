"""The tool contract: what a tool is (:func:`tool`, :class:`Tool`, :class:`ToolContext`) and
how tools are found (:class:`ToolRegistry`). Implementations live with the workers."""

from planner.tools.registry import BUILTIN_MODULES, ToolRegistry, load_registry
from planner.tools.tool import Tool, ToolContext, tool

__all__ = ["BUILTIN_MODULES", "Tool", "ToolContext", "ToolRegistry", "load_registry", "tool"]
