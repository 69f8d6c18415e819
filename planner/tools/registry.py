"""The tool registry: tools by name, loaded from modules.

Tools are plugins, found by module name as Celery finds task modules: the built-ins
(``workers.tools.builtin``, where the workers keep their implementations) and the modules
named in ``CHORDAL_TOOL_MODULES``. Validation needs only the registry, never a worker.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping

from planner.errors import ConfigError
from planner.tools.tool import Tool

BUILTIN_MODULES = ("workers.tools.builtin",)


class ToolRegistry(Mapping[str, Tool]):
    """Tools by name, collected from modules (every :class:`Tool` at a module's top level)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.add(t)

    def add(self, t: Tool) -> None:
        known = self._tools.get(t.name)
        if known is not None and known.fn is not t.fn:
            raise ConfigError(f"two tools are named {t.name!r}: {known.fn.__module__} and "
                              f"{t.fn.__module__}; give one of them tool(name=...)")
        self._tools[t.name] = t

    def add_module(self, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigError(f"CHORDAL_TOOL_MODULES: cannot import {module_name!r}: {exc}"
                              ) from None
        found = [v for v in vars(module).values() if isinstance(v, Tool)]
        if not found:
            raise ConfigError(f"CHORDAL_TOOL_MODULES: module {module_name!r} defines no tools")
        for t in found:
            self.add(t)

    @property
    def queues(self) -> set[str]:
        return {t.queue for t in self._tools.values()}

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tools))

    def __len__(self) -> int:
        return len(self._tools)


def load_registry(modules: Iterable[str] = ()) -> ToolRegistry:
    """The built-in tools plus those of ``modules`` (``CHORDAL_TOOL_MODULES``)."""
    registry = ToolRegistry()
    for module_name in (*BUILTIN_MODULES, *modules):
        registry.add_module(module_name)
    return registry
