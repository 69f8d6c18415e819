"""A validated plan version joined with the tools it calls: the dependency table and each
step's queue, attempts and timeout, as the engine's decisions need them. Pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

from planner.language.graph import dependents_of
from planner.language.plan import Plan, Step
from planner.settings import Settings
from planner.tools.agent import AGENT_TOOL
from planner.tools.tool import DEFAULT_TIMEOUT_S, Tool
from planner.wire import DEFAULT_QUEUE

#: Seconds after a step's hard stop before a prefork child that never got control back (a
#: tool stuck in C code ignores every signal) ends itself (workers/deadline.py).
KILL_AFTER_S = 5.0


@dataclass(frozen=True)
class CompiledPlan:
    plan: Plan
    tools: Mapping[str, Tool]
    # A hard limit kills the attempt (and its pool process) this long after the soft one.
    hard_limit_grace_s: float = 30.0
    # The run asked for a review after every step (``checkpoint_all``).
    checkpoint_all: bool = False
    #: Steps one task may run inline after its own (CHORDAL_INLINE_MAX); 0: inline steps
    #: are off, and a step's message carries its own time limits.
    inline_max: int = 0
    #: Longest a step's message may stay unacknowledged (Redis's visibility timeout or
    #: RabbitMQ's consumer timeout, less the longest retry delay); None: no bound.
    hold_cap_s: float | None = None

    @classmethod
    def build(cls, plan: Plan, tools: Mapping[str, Tool], settings: Settings,
              checkpoint_all: bool = False) -> CompiledPlan:
        """``plan`` compiled with what the settings say of time limits and inline steps."""
        # Redis delivers an unacknowledged message again after its visibility timeout;
        # RabbitMQ closes the channel past its consumer_timeout (the worker then restarts
        # and every message it held comes back): a chain must end before either.
        on_redis = settings.broker.startswith(("redis", "rediss"))
        held = settings.worker.visibility_timeout_s if on_redis else settings.worker.ack_timeout_s
        return cls(plan, tools, settings.worker.hard_limit_grace_s, checkpoint_all,
                   settings.engine.inline_max if settings.engine.inline_steps else 0,
                   held - settings.engine.retry_backoff_max_s)

    @cached_property
    def deps(self) -> dict[str, set[str]]:
        return self.plan.dependencies()

    @cached_property
    def dependents(self) -> dict[str, list[str]]:
        return dependents_of(self.deps)

    @cached_property
    def roots(self) -> list[str]:
        return [s.id for s in self.plan.steps if not self.deps[s.id]]

    @cached_property
    def sinks(self) -> list[str]:
        return [s.id for s in self.plan.steps if not self.dependents[s.id]]

    @cached_property
    def _steps(self) -> dict[str, Step]:
        return {s.id: s for s in self.plan.steps}

    def step(self, step_id: str) -> Step:
        return self._steps[step_id]

    def tool_of(self, step_id: str) -> Tool | None:
        """The step's tool, or None when this process did not load it (a worker started
        with other CHORDAL_TOOL_MODULES than the client's): the step then fails for good
        with a message that says so, instead of the worker failing."""
        return self.tools.get(self._steps[step_id].tool)

    def queue_of(self, step_id: str) -> str:
        tool = self.tool_of(step_id)
        return tool.queue if tool is not None else DEFAULT_QUEUE

    def max_attempts(self, step_id: str) -> int:
        step, tool = self._steps[step_id], self.tool_of(step_id)
        if tool is None:
            return 1
        return (step.max_retries if step.max_retries is not None else tool.max_retries) + 1

    def timeout_s(self, step_id: str) -> float:
        step, tool = self._steps[step_id], self.tool_of(step_id)
        if step.timeout_s is not None:
            return step.timeout_s
        return tool.timeout_s if tool is not None else DEFAULT_TIMEOUT_S

    def hold_s(self, step_id: str) -> float:
        """The longest an attempt of the step holds a prefork pool's process: its timeout
        (the soft stop), the grace to its hard stop, and the child's own end after it."""
        return self.timeout_s(step_id) + self.hard_limit_grace_s + KILL_AFTER_S

    def time_limits(self, step_id: str) -> tuple[float | None, float]:
        """The (soft, hard) Celery time limits a step's message carries.

        Inline steps off: the step's own, counted by the pool from its task's start.
        On: a task may run a chain of steps, and Celery's limits count from the task's
        start and cannot be reset per step, so every step's own soft and hard stops are
        armed by the worker around the step (workers/deadline.py) and the message carries
        no soft limit (its signal would land in whichever step of the chain runs then) and
        a hard one that outlasts the longest chain the task may run: its own step and
        ``inline_max`` more, each at most its hold (a step is inlined only when what is
        left covers its own hold: planner/engine/inline.py). Only the pool's kill of a
        process stuck past all of that is left to it. It stays below ``hold_cap_s``, so
        the broker never delivers the message again while its chain runs."""
        timeout = self.timeout_s(step_id)
        if not self.inline_max:
            return timeout, timeout + self.hard_limit_grace_s
        hold = self.hold_s(step_id)
        chain = (1 + self.inline_max) * hold
        if self.hold_cap_s is not None:
            chain = max(hold, min(chain, self.hold_cap_s))
        return None, chain

    def is_checkpoint(self, step_id: str) -> bool:
        return self.checkpoint_all or self._steps[step_id].checkpoint

    def is_agent(self, step_id: str) -> bool:
        """Whether the step is an agent's (the ``agent`` built-in: model turns and tool
        calls, each a task of its own)."""
        return self._steps[step_id].tool == AGENT_TOOL

    def agent_tools(self, step_id: str) -> list[str]:
        """The tools an agent step may call (its ``args.tools``, written in the plan)."""
        if not self.is_agent(step_id):
            return []
        listed = self._steps[step_id].args.get("tools")
        return [t for t in listed if isinstance(t, str)] if isinstance(listed, list) else []

    def queues(self) -> set[str]:
        """Every queue the plan's tasks go to: its steps', and the tools' its agent steps
        may call."""
        listed = {t for s in self.plan.steps for t in self.agent_tools(s.id)}
        return ({self.queue_of(s.id) for s in self.plan.steps} | {DEFAULT_QUEUE}
                | {self.tools[t].queue for t in listed if t in self.tools})
