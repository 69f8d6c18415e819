"""Plan -> Celery canvas.

Two compilations, one step task:

* ``dataflow`` (what runs): the start canvas is a ``group`` of the root steps as immutable
  signatures. When a step finishes, one Lua script marks it done and counts down its
  dependents' remaining-dependency counters in Redis; the worker then publishes, as a group,
  exactly the dependents that reached zero. No step waits for a step it does not depend on,
  whatever the DAG's shape, and every message is a few hundred bytes, however large the plan.
  When the run's remaining-steps counter reaches zero the join (``chordal.finalize``) is
  published. See docs/engine.md for why this beats nesting chains, groups and chords.
* ``levels`` (a baseline for bench/): the classic level-by-level canvas, a chain of explicit
  chords, one per level. It is correct but makes every step of a level wait for the slowest
  step of the level before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

from celery import Celery, chain, chord, group
from celery.canvas import Signature

from planner.graph import dependents_of, shape
from planner.plan import Plan, Step
from workers.tools.registry import DEFAULT_QUEUE, Tool

STEP_TASK = "chordal.step"
FINALIZE_TASK = "chordal.finalize"
BARRIER_TASK = "chordal.barrier"
Mode = Literal["dataflow", "levels"]
STEP_ERROR_TASK = "chordal.step_error"


@dataclass(frozen=True)
class CompiledPlan:
    plan: Plan
    tools: Mapping[str, Tool]
    # A hard limit kills the attempt (and its pool process) this long after the soft one.
    hard_limit_grace_s: float = 30.0

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

    def tool_of(self, step_id: str) -> Tool:
        return self.tools[self._steps[step_id].tool]

    def max_attempts(self, step_id: str) -> int:
        step = self._steps[step_id]
        retries = step.max_retries if step.max_retries is not None else \
            self.tool_of(step_id).max_retries
        return retries + 1

    def timeout_s(self, step_id: str) -> float:
        step = self._steps[step_id]
        return step.timeout_s if step.timeout_s is not None else self.tool_of(step_id).timeout_s

    def queues(self) -> set[str]:
        return {self.tool_of(s.id).queue for s in self.plan.steps} | {DEFAULT_QUEUE}

    def step_signature(self, app: Celery, run_id: str, version: int, step_id: str,
                       mode: Mode = "dataflow") -> Signature:
        timeout = self.timeout_s(step_id)
        options: dict[str, Any] = {}
        if mode == "dataflow":
            # A task that fails outside the tool (killed at the hard limit, a worker error)
            # reports here, so its step is retried or its policy applied, never left running.
            options["link_error"] = app.signature(
                STEP_ERROR_TASK, args=(run_id, step_id, version), queue=DEFAULT_QUEUE)
        return app.signature(
            STEP_TASK, args=(run_id, step_id, version, mode), immutable=True,
            queue=self.tool_of(step_id).queue,
            # One id per (run, plan version, step): the idempotency key shows in Flower.
            task_id=f"{run_id}.{version}.{step_id}",
            soft_time_limit=timeout, time_limit=timeout + self.hard_limit_grace_s,
            # Results live in the run store; the chords of the levels baseline need Celery's.
            ignore_result=mode == "dataflow",
            **options,
        )

    def finalize_signature(self, app: Celery, run_id: str, version: int) -> Signature:
        return app.signature(FINALIZE_TASK, args=(run_id, version), immutable=True,
                             queue=DEFAULT_QUEUE, task_id=f"{run_id}.{version}.finalize")

    def ready_canvas(self, app: Celery, run_id: str, version: int,
                     step_ids: Sequence[str]) -> Signature:
        """The steps that just became ready, as one publishable canvas."""
        sigs = [self.step_signature(app, run_id, version, s) for s in step_ids]
        return sigs[0] if len(sigs) == 1 else group(sigs)

    def start_canvas(self, app: Celery, run_id: str, version: int,
                     mode: Mode = "dataflow") -> Signature:
        if mode == "dataflow":
            return self.ready_canvas(app, run_id, version, self.roots)
        return self.levels_canvas(app, run_id, version)

    def levels_canvas(self, app: Celery, run_id: str, version: int) -> Signature:
        """Naive baseline: ``chord(level 1, barrier) | chord(level 2, barrier) | ... | join``."""
        parts: list[Signature] = []
        for level in shape(self.deps).levels:
            header = group([self.step_signature(app, run_id, version, s, "levels")
                            for s in level])
            parts.append(chord(header, app.signature(BARRIER_TASK, immutable=True,
                                                     queue=DEFAULT_QUEUE)))
        parts.append(self.finalize_signature(app, run_id, version))
        return chain(*parts)
