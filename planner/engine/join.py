"""The join: when every step of a plan version is final, the run gets its answer. With a
model, the synthesizer writes it (on the ``llm`` queue); without one, the answer is the
sink steps' outputs by step id."""

from __future__ import annotations

import logging

from planner.engine.dispatch import synthesize_message
from planner.engine.outcomes import Retry, model_retry
from planner.engine.runtime import Runtime
from planner.errors import ChordalError
from planner.llm.roles import synthesize_request
from planner.store.records import ErrorRecord

log = logging.getLogger("chordal.engine")


def finalize(rt: Runtime, run_id: str, version: int) -> None:
    compiled = rt.compiled(run_id, version)
    states = rt.store.step_states(run_id)
    unfinished = [s for s in compiled.deps
                  if s not in states or states[s].status not in ("succeeded", "skipped")]
    if unfinished:
        log.warning("run %s: join reached with unfinished steps %s", run_id, unfinished)
        return
    if rt.model is not None:
        rt.publish([synthesize_message(run_id, version)])
        return
    outputs = rt.store.outputs(run_id, compiled.sinks)
    rt.store.finish_run(run_id, "succeeded",
                        answer={s: outputs.get(s) for s in compiled.sinks})


def synthesize(rt: Runtime, run_id: str, version: int, retries: int) -> Retry | None:
    """goal + step outputs -> the answer, by the synthesizer model. ``retries``: how many
    times this task was retried already (model calls are retried when transient)."""
    if rt.store.run_state(run_id).status != "running":
        return None
    compiled = rt.compiled(run_id, version)
    outputs = rt.store.outputs(run_id, [s.id for s in compiled.plan.steps])
    metered = rt.metered(run_id)
    if metered is None:  # this worker has no model: answer as a model-less join does
        rt.store.finish_run(run_id, "succeeded",
                            answer={s: outputs.get(s) for s in compiled.sinks})
        return None
    request = synthesize_request(rt.settings, compiled.plan.goal, outputs,
                                 {s.id: s.description for s in compiled.plan.steps},
                                 metered.options.roles)
    try:
        # The answer is the last call of a run: if it crosses the budget, it is kept.
        answer = metered.complete(request, stop_when_over=False).text()
    except ChordalError as exc:
        retry = model_retry(rt.settings, exc, retries)
        if retry is None:
            rt.store.finish_run(run_id, "failed", answer={"outputs": outputs}, error=ErrorRecord(
                type=type(exc).__name__, message=f"synthesizer: {exc}"))
        return retry
    rt.store.finish_run(run_id, "succeeded", answer=answer)
    return None
