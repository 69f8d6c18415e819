"""The baselines that bench/run.py measures Chordal against: raw Celery no-ops, and the
naive level-by-level canvas. Not production code: workers run it only as
``celery -A bench.levels worker`` (the production app plus the two tasks below).

``chord(level 1, barrier) | chord(level 2, barrier) | ... | join``: correct, but every step
of a level waits for the slowest step of the level before it, so the N shape (a->c, a->d,
b->d) makes c wait for b, which it does not depend on.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task, chain, chord, group
from celery.canvas import Signature

from planner.client import Client
from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import finalize_message
from planner.language.graph import shape
from planner.language.refs import referenced_steps, resolve
from planner.tools.tool import ToolContext
from planner.wire import DEFAULT_QUEUE, task_id
from workers.app import app
from workers.tasks import runtime

LEVEL_STEP_TASK = "bench.level_step"
BARRIER_TASK = "bench.barrier"
NOOP_TASK = "bench.noop"


@app.task(name=LEVEL_STEP_TASK, bind=True)
def level_step(self: Task, run_id: str, step_id: str, version: int) -> None:
    """A step of the baseline: run the tool and record it, unlock nothing (the chord
    does). No retries or policies: the benchmark's steps do not fail."""
    rt = runtime()
    compiled = rt.compiled(run_id, version)
    worker = self.request.hostname or "unknown"
    begin = rt.store.begin_step(run_id, step_id, version, worker,
                                compiled.max_attempts(step_id))
    if begin.state != "run":
        return
    step = compiled.step(step_id)
    args = resolve(step.args, rt.store.outputs(run_id, referenced_steps(step.args)))
    tool = compiled.tool_of(step_id)
    assert tool is not None, f"the bench worker lacks tool {step.tool!r}"
    output = tool.invoke(args, ToolContext(run_id, step_id, begin.attempt))
    # The run store counts down the dependents too; the chord, not those counters, decides
    # what runs next here.
    rt.store.finish_step(run_id, step_id, output=output, worker=worker)


@app.task(name=BARRIER_TASK)
def barrier(*_results: Any) -> None:
    """The body of each level's chord: waits for the level, does nothing."""


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Does nothing: the raw-Celery baseline of bench/run.py."""


def levels_canvas(publisher: Celery, compiled: CompiledPlan, run_id: str,
                  version: int = 1) -> Signature:
    """The canvas, built on ``publisher`` (the client's app: its broker, not this
    module's)."""
    parts: list[Signature] = []
    for level in shape(compiled.deps).levels:
        header = group([publisher.signature(
            LEVEL_STEP_TASK, args=(run_id, s, version), immutable=True,
            queue=compiled.queue_of(s), task_id=task_id(run_id, version, s))
            for s in level])
        # Chords need stored results: the header tasks keep theirs.
        parts.append(chord(header, publisher.signature(BARRIER_TASK, immutable=True,
                                                       queue=DEFAULT_QUEUE)))
    join = finalize_message(run_id, version)
    parts.append(publisher.signature(join.task, args=join.args, immutable=True,
                                     queue=join.queue, task_id=join.task_id))
    return chain(*parts)


def submit_levels(client: Client, plan: dict[str, Any]) -> str:
    """Record a run as Client.submit does, but publish the level-by-level canvas."""
    compiled = client.compile(plan)
    run_id = client.store.create_run(compiled.plan.goal, compiled.plan, compiled.deps)
    client.store.start_run(run_id)
    levels_canvas(client.app, compiled, run_id).apply_async()
    return run_id
