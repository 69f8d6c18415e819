"""The replanner flow (planner.engine.replan), without Celery: a real Redis run store, the
in-memory publisher and a scripted model. Each test drives the engine as workers would (a
step delivery, a replan message, the synthesizer's call) and checks messages and store."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from planner.engine import join, outcomes, replan, steps
from planner.engine.dispatch import Message
from planner.llm.model import ModelRequest, ModelResponse
from planner.llm.scripted import ScriptedModel
from planner.store.records import ErrorRecord, PlanVersion, RunOptions
from planner.wire import DEFAULT_QUEUE, FINALIZE_TASK, LLM_QUEUE, SYNTHESIZE_TASK
from tests.engine.conftest import (
    MakeRuntime,
    echo,
    expected_step,
    failing,
    no_nonce,
    replan_expected,
    says,
    sent,
    started,
    step_ids,
    submit,
)


class Watched(ScriptedModel):
    """A scripted model that counts its calls by role, keeps what the replanner was shown,
    and runs ``during`` (once) while the replanner thinks."""

    def __init__(self, responses: list[dict[str, Any]]) -> None:
        super().__init__(responses)
        self.calls: Counter[str] = Counter()
        self.requests: list[ModelRequest] = []
        self.shown: list[dict[str, Any]] = []
        self.during: Callable[[], object] | None = None

    def complete(self, request: ModelRequest) -> ModelResponse:
        self.calls[request.role] += 1
        self.requests.append(request)
        if request.role == "replanner" and request.turn() == 0:
            text = request.messages[0]["content"]
            self.shown.append(json.loads(text.split("JSON:\n")[1].rsplit("\nSubmit", 1)[0]))
        if request.role == "replanner" and self.during is not None:
            during, self.during = self.during, None
            during()
        return super().complete(request)


replan_message = replan_expected


def partial_message(run: str, version: int) -> Message:
    return Message(SYNTHESIZE_TASK, (run, version, True), LLM_QUEUE, f"{run}.{version}.partial",
                   shadow=f"{SYNTHESIZE_TASK} partial")


def statuses(rt, run: str) -> dict[str, str]:
    return {sid: st.status for sid, st in sorted(rt.store.step_states(run).items())}


ROUTE = (echo("x", "X"), echo("slow", "S"), failing("bad", depends_on=["x"]),
         echo("after", {"$ref": "bad"}), echo("other", depends_on=["x"]),
         {"id": "flaky", "tool": "fail", "args": {"times": 1, "value": "F"}})
AROUND = (echo("fix", {"$ref": "x"}), echo("final", [{"$ref": "fix"}, {"$ref": "slow"}]))


def test_a_failed_replan_step_is_flagged_and_wakes_one_replanner(make_rt: MakeRuntime) -> None:
    model = Watched([])
    rt = make_rt(model)
    run = started(rt, echo("x"), failing("bad", depends_on=["x"]), echo("c", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    sent(rt).clear()
    assert isinstance(steps.run_step(rt, run, "bad", 1, "w"), outcomes.Failed)
    assert no_nonce(sent(rt)) == [replan_message(run, "bad", 1)]
    assert rt.store.unhandled(run) == ["bad"]
    state = rt.store.step_state(run, "bad")
    assert (state.status, state.attempts) == ("failed", 1)  # permanent: never retried
    assert (rt.store.run_state(run).status, rt.store.run_state(run).version) == ("running", 1)
    # A replanner already at work on version 1 takes this failure up: the message waits.
    assert rt.store.claim(run, "replan:1", "someone")
    assert replan.replan(rt, run, "bad", 1) is None
    assert (model.calls, rt.store.unhandled(run), len(sent(rt))) == (Counter(), ["bad"], 1)


def test_a_replan_keeps_earned_and_running_work_and_publishes_the_new_ready_steps(
        make_rt: MakeRuntime) -> None:
    model = Watched([submit(*AROUND), says("synthesizer", "the answer")])
    rt = make_rt(model)
    run = started(rt, *ROUTE)
    steps.run_step(rt, run, "x", 1, "w")
    assert rt.store.begin_step(run, "slow", 1, "w", 4, lease_s=0).state == "run"  # still running
    assert steps.run_step(rt, run, "flaky", 1, "w") is not None  # waits for its retry
    steps.run_step(rt, run, "bad", 1, "w")
    assert no_nonce(sent(rt))[-1] == replan_message(run, "bad", 1)
    sent(rt).clear()

    assert replan.replan(rt, run, "bad", 1) is None
    assert sent(rt) == [expected_step(run, "fix", 2)]
    assert model.calls == Counter(replanner=1)
    [shown] = model.shown
    assert [s["id"] for s in shown["completed_steps"]] == ["x"]
    assert [s["id"] for s in shown["running_steps"]] == ["slow", "flaky"]
    assert [s["id"] for s in shown["failed_steps"]] == ["bad"]
    assert (shown["cannot_run"], shown["not_started"]) == (["after"], ["after", "other"])
    state = rt.store.run_state(run)
    assert (state.status, state.version, state.remaining) == ("running", 2, 4)
    assert rt.store.versions(run)[-1] == PlanVersion(
        version=2, reason="replan", failed=["bad"], added=["fix", "final"],
        kept=["x", "slow", "flaky"], dropped=["after", "bad", "other"])
    assert statuses(rt, run) == {
        "after": "replaced", "bad": "failed", "final": "pending", "fix": "pending",
        "flaky": "pending", "other": "replaced", "slow": "running", "x": "succeeded"}
    assert rt.store.unhandled(run) == []

    # The same failure's message again, for the same version: nothing more happens.
    assert replan.replan(rt, run, "bad", 1) is None
    assert (len(sent(rt)), model.calls["replanner"], len(rt.store.versions(run))) == (1, 1, 2)
    assert rt.store.r.hgetall(f"chordal:run:{{{run}}}:claims") == {"replan:1": "bad"}

    # other's version-1 message arrives: replaced, so its tool never runs.
    assert isinstance(steps.run_step(rt, run, "other", 1, "w"), steps.Dropped)
    assert rt.store.step_state(run, "other").attempts == 0
    # flaky's retry (a version-1 message) runs in version 2.
    assert steps.run_step(rt, run, "flaky", 1, "w") is None
    assert rt.store.outputs(run, ["flaky"]) == {"flaky": "F"}
    # slow's version-1 message comes again (its worker was lost): it runs as version 2
    # holds it, and its finish counts down there (final still waits for fix).
    assert steps.run_step(rt, run, "slow", 1, "w") is None
    assert rt.store.step_state(run, "slow").attempts == 2
    assert (len(sent(rt)), rt.store.run_state(run).remaining) == (1, 2)
    steps.run_step(rt, run, "fix", 2, "w")
    assert sent(rt)[1:] == [expected_step(run, "final", 2)]
    steps.run_step(rt, run, "final", 2, "w")
    assert sent(rt)[2:] == [Message(FINALIZE_TASK, (run, 2), DEFAULT_QUEUE, f"{run}.2.finalize")]
    join.finalize(rt, run, 2)
    assert sent(rt)[3].args == (run, 2, False)
    assert join.synthesize(rt, run, 2, 0) is None
    state = rt.store.run_state(run)
    assert (state.status, state.answer, state.partial) == ("succeeded", "the answer", False)
    assert rt.store.outputs(run, ["final"]) == {"final": ["X", "S"]}
    assert rt.store.report(run).replans == 1


def test_a_failure_noted_while_the_replanner_thinks_goes_to_the_next_replan(
        make_rt: MakeRuntime) -> None:
    model = Watched([submit(echo("again", "A"), match="detour"),
                     submit(echo("detour", {"$ref": "x"}))])
    rt = make_rt(model)
    run = started(rt, echo("x"), failing("bad1", depends_on=["x"]), echo("wait"),
                  failing("bad2", depends_on=["wait"]))
    steps.run_step(rt, run, "x", 1, "w")
    steps.run_step(rt, run, "wait", 1, "w")
    assert rt.store.begin_step(run, "bad2", 1, "w", 4, lease_s=0).state == "run"
    steps.run_step(rt, run, "bad1", 1, "w")
    sent(rt).clear()
    # bad2 fails for good after the replanner read the run (it saw bad2 running).
    model.during = lambda: steps.run_step(rt, run, "bad2", 1, "w2")

    assert replan.replan(rt, run, "bad1", 1) is None
    assert model.during is None and rt.store.step_state(run, "bad2").status == "failed"
    assert no_nonce(sent(rt)) == [replan_message(run, "bad2", 1), expected_step(run, "detour", 2),
                        replan_message(run, "bad2", 2)]
    v2 = rt.store.versions(run)[-1]
    assert (v2.version, v2.failed, v2.kept, v2.dropped) == (
        2, ["bad1"], ["x", "wait", "bad2"], ["bad1"])
    assert rt.store.unhandled(run) == ["bad2"]

    steps.run_step(rt, run, "detour", 2, "w")
    sent(rt).clear()
    assert replan.replan(rt, run, "bad2", 1) is None  # the first message to arrive acts
    assert sent(rt) == [expected_step(run, "again", 3)]
    assert rt.store.versions(run)[-1] == PlanVersion(
        version=3, reason="replan", failed=["bad2"], added=["again"],
        kept=["x", "wait", "detour"], dropped=["bad2"])
    assert rt.store.unhandled(run) == []
    assert replan.replan(rt, run, "bad1", 2) is None  # the other: nothing left to do
    assert (len(sent(rt)), model.calls["replanner"]) == (1, 2)
    assert rt.store.report(run).replans == 2


def test_past_max_replans_the_synthesizer_writes_a_partial_answer(
        make_rt: MakeRuntime) -> None:
    model = Watched([says("synthesizer", "x only", match="The run failed")])
    rt = make_rt(model)
    run = started(rt, echo("x", "X-earned"), failing("bad", depends_on=["x"]),
                  echo("c", depends_on=["x"]), options=RunOptions(max_replans=0))
    steps.run_step(rt, run, "x", 1, "w")
    steps.run_step(rt, run, "bad", 1, "w")
    sent(rt).clear()

    assert replan.replan(rt, run, "bad", 1) is None
    assert sent(rt) == [partial_message(run, 1)]
    assert model.calls == Counter()
    state = rt.store.run_state(run)
    ending = state.ending
    assert state.status == "running" and ending is not None
    assert (ending.type, ending.step, ending.policy, ending.completed) == (
        "ReplanLimit", "bad", "replan", ["x"])
    assert "max_replans=0" in ending.message
    # While the partial answer is written, no new step starts, and no second one is asked.
    assert isinstance(steps.run_step(rt, run, "c", 1, "w"), steps.Dropped)
    assert rt.store.step_state(run, "c").attempts == 0
    outcomes.end_failed(rt, run, ErrorRecord(type="Other", message="later"))
    join.finalize(rt, run, 1)
    assert join.synthesize(rt, run, 1, 0) is None  # not the partial call: does nothing
    assert len(sent(rt)) == 1 and rt.store.run_state(run).status == "running"

    assert join.synthesize(rt, run, 1, 0, partial=True) is None
    state = rt.store.run_state(run)
    assert (state.status, state.partial, state.answer) == ("failed", True, "x only")
    assert (state.error, state.ending) == (ending, None)
    assert model.calls == Counter(synthesizer=1)
    assert "X-earned" in model.requests[0].text()  # written from what the run earned
    assert statuses(rt, run)["c"] == "cancelled"


@pytest.mark.parametrize(("options", "error"), [(None, "StepFailed"),
                                                (RunOptions(max_replans=0), "ReplanLimit")])
def test_without_a_model_the_run_ends_at_once_with_what_it_earned(
        make_rt: MakeRuntime, options: RunOptions | None, error: str) -> None:
    rt = make_rt(None)
    run = started(rt, echo("x", "X"), echo("y", {"v": 2}), failing("bad", depends_on=["x"]),
                  echo("c", depends_on=["bad"]), options=options)
    for sid in ("x", "y", "bad"):
        steps.run_step(rt, run, sid, 1, "w")
    sent(rt).clear()
    assert replan.replan(rt, run, "bad", 1) is None
    state = rt.store.run_state(run)
    assert (state.status, state.partial, state.ending) == ("failed", True, None)
    assert state.answer == {"partial": {"x": "X", "y": {"v": 2}}}
    assert state.error is not None and (state.error.type, state.error.step) == (error, "bad")
    assert sent(rt) == []
    assert statuses(rt, run)["c"] == "cancelled"


@pytest.mark.parametrize("answer", [
    [{"id": "x2", "tool": "teleport", "args": {}}],  # no such tool
    [echo("bad")],  # the failed step's id
    [echo("x")],  # a completed step's id: kept as it is, not listed again
])
def test_a_replanner_answer_still_invalid_after_the_repairs_ends_the_run(
        make_rt: MakeRuntime, answer: list[dict[str, Any]]) -> None:
    model = Watched([submit(*answer), says("synthesizer", "what we have")])
    rt = make_rt(model, CHORDAL_PLAN_REPAIRS="0")
    run = started(rt, echo("x", "X"), failing("bad", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    steps.run_step(rt, run, "bad", 1, "w")
    sent(rt).clear()

    assert replan.replan(rt, run, "bad", 1) is None
    assert model.calls == Counter(replanner=1)  # no repairs
    assert sent(rt) == [partial_message(run, 1)]
    ending = rt.store.run_state(run).ending
    assert ending is not None
    assert (ending.type, ending.step, ending.attempts) == ("PlanInvalid", "bad", 1)
    assert ending.problems and ending.message.startswith("step 'bad' failed")
    assert len(rt.store.versions(run)) == 1
    join.synthesize(rt, run, 1, 0, partial=True)
    state = rt.store.run_state(run)
    assert (state.status, state.partial, state.answer) == ("failed", True, "what we have")
    assert state.error is not None and state.error.type == "PlanInvalid"


def test_an_invalid_replanner_answer_goes_back_for_repair(make_rt: MakeRuntime) -> None:
    model = Watched([{**submit(echo("bad")), "turn": 0}, {**submit(echo("fixed")), "turn": 1}])
    rt = make_rt(model, CHORDAL_PLAN_REPAIRS="1")
    run = started(rt, echo("x"), failing("bad", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    steps.run_step(rt, run, "bad", 1, "w")
    sent(rt).clear()
    assert replan.replan(rt, run, "bad", 1) is None
    assert model.calls == Counter(replanner=2)
    assert step_ids(rt) == [("fixed", 2)]
    assert rt.store.run_state(run).version == 2 and rt.store.run_state(run).ending is None


def test_a_checkpoint_review_is_shown_the_failures_so_far(make_rt: MakeRuntime) -> None:
    """What failed is part of what the reviewer judges: a failure whose replan waits behind
    the review, and one the run went on without (skip), with its error."""
    from planner.engine import review

    model = ScriptedModel([{"role": "replanner", "content": [
        {"type": "tool_use", "id": "t1", "name": "continue_plan", "input": {}}]}])
    asked: list[ModelRequest] = []
    complete = model.complete
    model.complete = lambda request: (asked.append(request), complete(request))[1]  # type: ignore[method-assign]
    rt = make_rt(model)
    run = started(rt, echo("c", checkpoint=True), echo("d", {"$ref": "c"}),
                  failing("bad"), echo("needs_bad", {"$ref": "bad"}),
                  failing("optional", on_failure="skip"))
    steps.run_step(rt, run, "bad", 1, "w")       # failed for good: its replan is queued
    steps.run_step(rt, run, "optional", 1, "w")  # failed, skipped
    steps.run_step(rt, run, "c", 1, "w")         # held: its review is asked for
    assert review.review(rt, run, "c", 1) is None
    [request] = asked
    text = request.messages[0]["content"]
    shown, _ = json.JSONDecoder().raw_decode(text.split("JSON:\n", 1)[1])
    assert [f["id"] for f in shown["failed_steps"]] == ["bad"]
    assert shown["failed_steps"][0]["error"]["type"] == "PermanentError"
    assert shown["cannot_run"] == ["needs_bad"]
    assert "bad" not in shown["not_started"]
    [skipped] = [s for s in shown["completed_steps"] if s["id"] == "optional"]
    assert skipped["status"] == "skipped" and "fails as asked" in skipped["error"]["message"]
    assert "error" not in next(s for s in shown["completed_steps"] if s["id"] == "c")


def test_a_checkpoint_revision_records_the_failures_it_routed_around(
        make_rt: MakeRuntime) -> None:
    from planner.engine import review

    rt = make_rt(ScriptedModel([submit(echo("d", {"$ref": "c"}), echo("fix", {"$ref": "x"}))]))
    run = started(rt, echo("x"), echo("c", checkpoint=True), echo("d", {"$ref": "c"}),
                  failing("bad", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    steps.run_step(rt, run, "bad", 1, "w")  # its replan waits behind the review
    steps.run_step(rt, run, "c", 1, "w")
    assert rt.store.unhandled(run) == ["bad"]
    assert review.review(rt, run, "c", 1) is None
    assert rt.store.run_state(run).version == 2
    assert rt.store.versions(run)[-1].failed == ["bad"]
    assert rt.store.unhandled(run) == []  # no second replan of what v2 already handled
