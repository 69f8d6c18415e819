"""The join: when every step of a plan version is final, the run gets its answer. With a
model, the synthesizer writes it (on the ``llm`` queue); without one, the answer is the
sink steps' outputs by step id."""

from __future__ import annotations

import logging

from planner.engine.dispatch import synthesize_message
from planner.engine.outcomes import Retry, model_retry, synthesizes
from planner.engine.runtime import Runtime
from planner.errors import ChordalError
from planner.llm.roles import synthesize_request
from planner.store.records import EARNED_STEP, ErrorRecord
from planner.vocabulary import RunStatus

log = logging.getLogger("chordal.engine")


def finalize(rt: Runtime, run_id: str, version: int) -> None:
    compiled = rt.compiled(run_id, version)
    # One round trip: the join often runs in the last step's task (outcomes.join_here).
    run, steps, outputs = rt.store.join_view(run_id, compiled.deps, compiled.sinks)
    if not run.active or run.version != version:
        return  # over, paused, ending, or replanned since: the current version joins
    if run.streaming:
        return  # its plan is still being written: the final install publishes the join
    unfinished = [s for s in compiled.deps if steps.statuses.get(s) not in EARNED_STEP]
    if unfinished:
        log.warning("run %s: join reached with unfinished steps %s", run_id, unfinished)
        return
    if synthesizes(rt, run_id):
        rt.publish([synthesize_message(run_id, version)])
        return
    rt.store.finish_run(run_id, RunStatus.SUCCEEDED,
                        answer={s: outputs.get(s) for s in compiled.sinks},
                        known=(compiled.deps, steps.spans))


def synthesize(rt: Runtime, run_id: str, version: int, retries: int,
               partial: bool = False) -> Retry | None:
    """goal + step outputs -> the answer, by the synthesizer model. ``retries``: how many
    times this task was retried already (model calls are retried when transient).
    ``partial``: the run is ending failed; the answer is written from what it earned."""
    run = rt.store.run_state(run_id)
    if run.status != RunStatus.RUNNING or (run.ending is None) == partial:
        return None
    compiled = rt.compiled(run_id, run.version)
    step_ids = ([s for s in rt.store.completed(run_id)] if partial
                else [s.id for s in compiled.plan.steps])
    outputs = rt.store.outputs(run_id, step_ids)
    descriptions = {s.id: s.description for v in range(1, run.version + 1)
                    for s in rt.compiled(run_id, v).plan.steps}
    metered = rt.metered(run_id)
    if metered is None:  # this worker has no model: answer as a model-less join does
        _finish(rt, run_id, run.ending, {"partial": outputs} if partial else
                {s: outputs.get(s) for s in compiled.sinks})
        return None
    request = synthesize_request(rt.settings, compiled.plan.goal, outputs, descriptions,
                                 metered.options.roles,
                                 failure=run.ending.message if run.ending else None)
    try:
        # The answer is the last call of a run: if it crosses the budget, it is kept.
        answer = metered.complete(request, stop_when_over=False).text()
    except ChordalError as exc:
        retry = model_retry(rt.settings, exc, retries)
        if retry is None:
            rt.store.finish_run(run_id, RunStatus.FAILED, answer={"outputs": outputs},
                                error=run.ending or ErrorRecord(
                                    type=type(exc).__name__, message=f"synthesizer: {exc}"),
                                partial=partial)
        return retry
    _finish(rt, run_id, run.ending, answer)
    return None


def _finish(rt: Runtime, run_id: str, ending: ErrorRecord | None, answer: object) -> None:
    if ending is None:
        rt.store.finish_run(run_id, RunStatus.SUCCEEDED, answer=answer)
    else:
        rt.store.finish_run(run_id, RunStatus.FAILED, answer=answer, error=ending, partial=True)
