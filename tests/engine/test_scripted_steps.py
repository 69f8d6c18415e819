"""A metered model call carries its step (``ModelRequest.step``), so a scripted response
written for a step answers that step only, as a recorded run's cassette needs."""

from __future__ import annotations

from planner.engine import steps
from planner.llm.scripted import ScriptedModel
from tests.engine.conftest import MakeRuntime, says, started, think


def test_a_scripted_response_for_a_step_answers_only_that_step(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says("executor", "for b", step="b"),
                                says("executor", "for a", step="a")]))
    run = started(rt, think("a", "same words"), think("b", "same words"))
    assert steps.run_step(rt, run, "a", 1, "w") is None
    assert steps.run_step(rt, run, "b", 1, "w") is None
    assert rt.store.outputs(run, ["a", "b"]) == {"a": "for a", "b": "for b"}
