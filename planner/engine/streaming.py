"""A plan that starts while it is written (``CHORDAL_STREAM_PLANS``), as LLMCompiler's
task-fetching unit does: the planner's answer is streamed, its ``steps`` read one by one
as they close (planner/llm/plan_stream.py), and each step is started as soon as it and
every step it reads are written and valid (tool known, args valid, the steps before it
valid with it).

How, with the engine's own parts: while the answer streams, the run is marked
``streaming`` (no join ends it, no replanner acts) and each time the set of early steps
grows it is installed as the next plan version (reason ``streamed``), whose ready steps
are published at once. When the stream ends, the whole plan is validated as a plan that
was not streamed is (repairs included); the early steps it contradicts (left out,
changed, or reading a changed step) are cancelled (``step.cancelled``, and the final
version's record lists them), the final plan is installed over the last early version
(every early step it keeps keeps its state and result), and the mark is lifted. A run
that ends meanwhile (an early step failed with ``on_failure="fail"``) stops the early
installs; a redelivered planning task plans again over what the first one started.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from planner.engine.outcomes import dispatch
from planner.engine.replan import wake_replanner
from planner.engine.runtime import Runtime
from planner.errors import PlanInvalid
from planner.language.plan import Plan, Step
from planner.language.validation import Limits, validate
from planner.llm.model import ModelRequest, ModelResponse
from planner.llm.plan_stream import StepStream
from planner.store.records import StepState
from planner.store.streaming import EarlyFate
from planner.vocabulary import StepStatus

log = logging.getLogger("chordal.engine")

#: A step version's reason when it holds the early steps of a plan still streaming in.
STREAMED = "streamed"


class EarlySteps:
    """One streamed planning answer of one run: reads it, starts its early steps, and
    installs the final plan when the answer is whole."""

    def __init__(self, rt: Runtime, run_id: str, goal: str, version: int) -> None:
        self.rt, self.run_id, self.goal = rt, run_id, goal
        self.version = version            # the run's plan version now
        self.limits = Limits.from_settings(rt.settings)
        self.parser = StepStream()
        self.written: dict[str, dict[str, Any]] = {}   # in the order they were written
        self.early: dict[str, Step] = {}               # valid, with all they read
        self.refused: set[str] = set()                 # never early: left to the end
        self.stopped = False                           # no more early installs
        self.marked = False                            # the run's streaming mark is set
        # A redelivered planning task: the steps the first answer installed. One that is
        # written again differently is not early (its state is the old one's): the final
        # install resets it.
        self.before = self._definitions(version) if version else {}

    def call(self, model_stream: Callable[[ModelRequest, Callable[[str], None]],
                                          ModelResponse]
             ) -> Callable[[ModelRequest], ModelResponse]:
        """The planner's first call, streamed through this reader."""
        return lambda request: model_stream(request, self.feed)

    def feed(self, text: str) -> None:
        for raw in self.parser.feed(text):
            self._take(raw)

    def _take(self, raw: dict[str, Any]) -> None:
        sid = raw.get("id")
        if not isinstance(sid, str) or sid in self.written:
            self.stopped = True  # a duplicate or missing id: the whole plan decides
            return
        self.written[sid] = raw
        grew = self._grow()
        try:
            self.rt.store.note_written(self.run_id, sid, sid in self.early)
        except Exception:  # an event is evidence, not a step: never fail planning for it
            log.warning("run %s: could not note step %s written", self.run_id, sid)
        if grew and not self.stopped:
            self._install_early()

    def _grow(self) -> bool:
        """Make early every written step that is valid with the early steps it reads."""
        grew, changed = False, True
        while changed:
            changed = False
            for sid, raw in self.written.items():
                if sid in self.early or sid in self.refused:
                    continue
                verdict = self._verdict(raw)
                if verdict is None:
                    continue  # it reads a step not written yet
                if verdict:
                    self.early[sid] = Step.model_validate(raw)
                    grew = changed = True
                else:
                    self.refused.add(sid)
                    changed = True
        return grew

    def _verdict(self, raw: dict[str, Any]) -> bool | None:
        """True: may start early; False: never early; None: not yet (it reads a step not
        written, or not yet valid)."""
        try:
            step = Step.model_validate(raw)
        except ValueError:
            return False
        # A checkpoint's review is a replanner's decision over the whole plan: not before
        # the plan is whole.
        if step.checkpoint:
            return False
        if step.id in self.before and self.before[step.id] != step:
            return False
        for dep in step.dependencies():
            if dep in self.refused:
                return False
            if dep not in self.early:
                return None
        try:
            validate({"goal": self.goal, "steps": [s.model_dump() for s in self.early.values()]
                      + [raw]}, self.rt.tools, self.limits)
        except PlanInvalid:
            return False
        return True

    def _install_early(self) -> None:
        rt, run_id = self.rt, self.run_id
        plan = Plan(goal=self.goal, steps=list(self.early.values()))
        if not self.marked:
            rt.store.set_streaming(run_id, True)  # before any step can finish
            self.marked = True
        install = rt.store.install_plan(run_id, self.version + 1, plan, reason=STREAMED)
        if install.state != "ok":
            self.stopped = True  # the run ended, or was moved on by someone else
            return
        self.version += 1
        rt.store.start_run(run_id)  # pending -> running, once
        run = rt.store.run_state(run_id)
        if run.active and install.ready:
            dispatch(rt, rt.compiled(run_id, self.version), run_id, self.version,
                     install.ready, False)

    def install_final(self, plan: Plan) -> bool:
        """Install the validated whole plan over the early versions; False if the run is
        over (or another install won)."""
        rt, run_id = self.rt, self.run_id
        run = rt.store.run_state(run_id)
        if run.ended:
            rt.store.set_streaming(run_id, False)
            return False  # an early step ended it (on_failure="fail"), or a person did
        fates = contradicted(plan, self._definitions(run.version), rt.store.step_states(run_id))
        cancelled = rt.store.cancel_early(run_id, fates)
        if cancelled:
            log.info("run %s: early steps contradicted by the final plan, cancelled: %s",
                     run_id, cancelled)
        install = rt.store.install_plan(run_id, run.version + 1, plan, cancelled=cancelled)
        rt.store.set_streaming(run_id, False)
        if install.state != "ok":
            return False
        self.version = run.version + 1
        return True

    def _definitions(self, current: int) -> dict[str, Step]:
        """Each step of the early versions as the latest one that holds it reads."""
        found: dict[str, Step] = {}
        for v in range(current, 0, -1):
            for s in self.rt.store.plan(self.run_id, v).steps:
                found.setdefault(s.id, s)
        return found


def contradicted(plan: Plan, early: dict[str, Step], states: dict[str, StepState]
                 ) -> dict[str, EarlyFate]:
    """The early steps (published or started) the final ``plan`` contradicts: left out
    (``drop``), changed, or reading a step that is (``reset``: run again as it now reads).
    Pure."""
    final = {s.id: s for s in plan.steps}
    started = {sid for sid, st in states.items() if sid in early and _started(st)}
    fates: dict[str, EarlyFate] = {}
    for sid in started:
        if sid not in final:
            fates[sid] = "drop"
        elif final[sid] != early[sid]:
            fates[sid] = "reset"
    deps = plan.dependencies()
    changed = True
    while changed:  # a step that read a reset step's old output is reset too
        changed = False
        for sid in started:
            if sid not in fates and any(d in fates for d in deps.get(sid, ())):
                fates[sid] = "reset"
                changed = True
    return fates


def _started(state: StepState) -> bool:
    return state.status != StepStatus.REPLACED and (
        state.attempts > 0 or state.dispatched or state.status != StepStatus.PENDING)


def finish_streamed(rt: Runtime, run_id: str) -> None:
    """After the final install: publish every step ready and not yet published (the
    join, when nothing remains), and wake a replanner for failures noted while the plan
    streamed. Idempotent."""
    rt.store.start_run(run_id)
    run = rt.store.run_state(run_id)
    if not run.active:
        return
    compiled = rt.compiled(run_id, run.version)
    dispatch(rt, compiled, run_id, run.version, rt.store.ready_unstarted(run_id),
             run.remaining == 0)
    wake_replanner(rt, run_id)
