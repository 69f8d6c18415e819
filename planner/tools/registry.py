"""The tool registry: tools by name, loaded from modules.

Tools are plugins, found by module name as Celery finds task modules: the built-ins
(``planner.tools.builtin``: calculate, llm, http_request) and the modules
named in ``CHORDAL_TOOL_MODULES``. Validation needs only the registry, never a worker.

Those modules are imported with the working directory on the import path, as ``celery -A``
does for a worker: ``CHORDAL_TOOL_MODULES=mytools`` finds ``./mytools.py`` in the CLI, in a
client and in a worker alike, with no ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from planner.errors import ConfigError
from planner.settings import Settings
from planner.tools.mcp import McpCatalog
from planner.tools.tool import Tool

BUILTIN_MODULES = ("planner.tools.builtin",)

log = logging.getLogger("chordal.tools")
#: Tools already warned about in this process (registries are built more than once).
_WARNED: set[str] = set()


def working_directory_on_path() -> None:
    """Put the working directory first on ``sys.path`` unless it is there, exactly as
    ``celery -A`` does: otherwise a tool module beside the user's plan imports in
    ``chordal dev``'s worker (Celery added the directory) but not in ``chordal tools``."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def warn_undocumented(t: Tool) -> None:
    """The description is all the planner model knows of what a tool does: one without
    a docstring is a tool the model will guess about, or never pick."""
    if t.description.strip() or t.name in _WARNED:
        return
    _WARNED.add(t.name)
    log.warning("tool %r (%s.%s) has no docstring: the planner model sees an empty "
                "description; say in its first line what it does", t.name, t.fn.__module__,
                getattr(t.fn, "__qualname__", t.name))


class ToolSource(Protocol):
    """Tools found by name when asked, not listed: those of an MCP server that did not
    answer when the registry was built."""

    @property
    def queues(self) -> set[str]: ...

    def find(self, name: str) -> Tool | None: ...


class ToolRegistry(Mapping[str, Tool]):
    """Tools by name, collected from modules (every :class:`Tool` at a module's top level)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._sources: list[ToolSource] = []
        for t in tools:
            self.add(t)

    def add_source(self, source: ToolSource) -> None:
        self._sources.append(source)

    def add(self, t: Tool) -> None:
        known = self._tools.get(t.name)
        if known is not None and known.fn is not t.fn:
            raise ConfigError(f"two tools are named {t.name!r}: {known.fn.__module__} and "
                              f"{t.fn.__module__}; give one of them tool(name=...)")
        warn_undocumented(t)
        self._tools[t.name] = t

    def add_module(self, module_name: str) -> None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            where = ""
            if isinstance(exc, ModuleNotFoundError) and exc.name == module_name.split(".")[0]:
                where = (f" (looked in the working directory {os.getcwd()} and on the import "
                         "path; run from the directory that holds it, or add its directory "
                         "to PYTHONPATH)")
            raise ConfigError(f"CHORDAL_TOOL_MODULES: cannot import {module_name!r}: {exc}"
                              f"{where}") from None
        found = [v for v in vars(module).values() if isinstance(v, Tool)]
        if not found:
            raise ConfigError(f"CHORDAL_TOOL_MODULES: module {module_name!r} defines no tools")
        for t in found:
            self.add(t)

    @property
    def queues(self) -> set[str]:
        return {t.queue for t in self._tools.values()}.union(
            *(s.queues for s in self._sources))

    def __getitem__(self, name: str) -> Tool:
        found = self._tools.get(name)
        for source in self._sources if found is None else ():
            found = source.find(name)
            if found is not None:
                break
        if found is None:
            raise KeyError(name)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tools))

    def __len__(self) -> int:
        return len(self._tools)


def load_tools(settings: Settings) -> ToolRegistry:
    """The tools a process uses: the built-ins, those of ``CHORDAL_TOOL_MODULES``, and
    those of the MCP servers of ``CHORDAL_MCP_SERVERS`` / ``CHORDAL_MCP_CONFIG`` (named
    ``server.tool``; see :mod:`planner.tools.mcp`). A server that does not answer is
    no error here: its steps fail, with its error, until it does."""
    registry = load_registry(settings.tools.tool_modules)
    catalog = McpCatalog.load(settings)
    for t in catalog.tools:
        registry.add(t)
    catalog.on_found = registry.add
    registry.add_source(catalog)
    return registry


def load_registry(modules: Iterable[str] = ()) -> ToolRegistry:
    """The built-in tools plus those of ``modules`` (``CHORDAL_TOOL_MODULES``)."""
    registry = ToolRegistry()
    if modules:
        working_directory_on_path()
    for module_name in (*BUILTIN_MODULES, *modules):
        registry.add_module(module_name)
    return registry
