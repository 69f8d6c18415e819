"""What a worker process keeps between tasks: settings, run store, tools, compiled plans."""

from __future__ import annotations

from collections import OrderedDict
from functools import cache
from threading import Lock

from planner.compiler import CompiledPlan
from planner.settings import Settings
from planner.store import RunStore
from workers.tools.registry import ToolRegistry, load_registry

PLAN_CACHE_SIZE = 256


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = RunStore.from_url(settings.redis_url, settings.retention_s)
        self.tools: ToolRegistry = load_registry(settings.tool_modules)
        self._plans: OrderedDict[tuple[str, int], CompiledPlan] = OrderedDict()
        self._lock = Lock()

    def compiled(self, run_id: str, version: int) -> CompiledPlan:
        """A run's plan version, compiled; cached because plan versions never change."""
        key = (run_id, version)
        with self._lock:
            hit = self._plans.get(key)
            if hit is not None:
                self._plans.move_to_end(key)
                return hit
        compiled = CompiledPlan(self.store.plan(run_id, version), self.tools)
        with self._lock:
            self._plans[key] = compiled
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return compiled


@cache
def runtime() -> Runtime:
    return Runtime(Settings.from_env())
