"""What the engine keeps between tasks in one process: settings, run store, tools, the
model, a publisher, and compiled plan versions."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from threading import Lock
from typing import Any

from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import Message, Publisher
from planner.engine.leases import LeaseKeeper
from planner.engine.metering import MeteredModel
from planner.llm import make_model
from planner.llm.model import Model
from planner.llm.roles import executor_request
from planner.settings import Settings
from planner.store.ratelimit import RateLimiter
from planner.store.runs import RunStore
from planner.tools.registry import ToolRegistry, load_tools

PLAN_CACHE_SIZE = 256


class Runtime:
    def __init__(self, settings: Settings, publisher: Publisher,
                 tools: ToolRegistry | None = None, store: RunStore | None = None,
                 model: Model | None = None) -> None:
        self.settings = settings
        self.publisher = publisher
        self.store = store or RunStore.from_url(settings.store.redis_url,
                                                settings.store.retention_s)
        self.tools: ToolRegistry = (tools if tools is not None
                                    else load_tools(settings))
        self.model: Model | None = model if model is not None else make_model(settings)
        self.limiter = (RateLimiter(self.store.r, settings.model.llm_rate_limit_per_min)
                        if settings.model.llm_rate_limit_per_min else None)
        self.leases = LeaseKeeper(self.store, settings.engine.step_lease_s)
        self._plans: OrderedDict[tuple[str, int], CompiledPlan] = OrderedDict()
        self._lock = Lock()

    def publish(self, messages: Sequence[Message]) -> None:
        if messages:
            self.publisher.publish(messages)

    def metered(self, run_id: str, step_id: str | None = None) -> MeteredModel | None:
        if self.model is None:
            return None
        return MeteredModel(self.model, self.store, self.settings, run_id, step_id,
                            self.limiter)

    def ask(self, run_id: str, step_id: str) -> Callable[[list[Any], str | None], str] | None:
        """The ``ctx.llm`` of a step: the executor role, metered to this run and step
        (built on first use, so steps that never ask pay nothing)."""
        if self.model is None:
            return None

        def ask(parts: list[Any], system: str | None) -> str:
            metered = self.metered(run_id, step_id)
            assert metered is not None
            request = executor_request(self.settings, parts, system,
                                       metered.options.roles)
            return metered.complete(request).text()

        return ask

    def compiled(self, run_id: str, version: int) -> CompiledPlan:
        """A run's plan version, compiled; cached because plan versions never change."""
        key = (run_id, version)
        with self._lock:
            hit = self._plans.get(key)
            if hit is not None:
                self._plans.move_to_end(key)
                return hit
        plan, options = self.store.plan_and_options(run_id, version)
        compiled = CompiledPlan.build(plan, self.tools, self.settings, options.checkpoint_all)
        with self._lock:
            self._plans[key] = compiled
            while len(self._plans) > PLAN_CACHE_SIZE:
                self._plans.popitem(last=False)
        return compiled
