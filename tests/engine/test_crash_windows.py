"""A worker may die between any two writes, and its task is delivered again (acks_late).
Each window a review of this engine found is replayed here: the redelivery (or the next
install) must finish the job, so no run is left waiting with nothing queued."""

from __future__ import annotations

from planner.engine import replan, review, steps
from planner.engine.outcomes import go_on
from planner.language.validation import validate
from planner.llm.scripted import ScriptedModel
from planner.store.keys import RunKeys
from planner.wire import REPLAN_TASK, REVIEW_TASK, STEP_TASK
from tests.engine.conftest import MakeRuntime, echo, failing, sent, started, submit


def tasks(rt) -> list[tuple[str, str]]:
    return [(m.task, m.args[1]) for m in sent(rt) if len(m.args) > 1]


def test_a_replan_task_redelivered_takes_its_own_claim_again(make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([submit(echo("fix", "F"))]))
    run = started(rt, echo("x"), failing("bad", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    steps.run_step(rt, run, "bad", 1, "w")
    # The first delivery claimed the replan and died during the model call.
    assert rt.store.claim(run, "replan:1", "task-1", reentrant=True)
    assert replan.replan(rt, run, "bad", 1, holder="task-2") is None  # another task: no
    assert rt.store.run_state(run).version == 1
    assert replan.replan(rt, run, "bad", 1, holder="task-1") is None  # its redelivery: yes
    assert rt.store.run_state(run).version == 2
    assert ("chordal.step", "fix") in tasks(rt)


def test_a_replanner_that_died_after_its_install_publishes_on_redelivery(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("x"), failing("bad", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    steps.run_step(rt, run, "bad", 1, "w")
    plan2 = validate({"goal": "test", "steps": [echo("x"), echo("fix", {"$ref": "x"})]},
                     rt.tools).plan
    # The install happened; the worker died before publishing what it made ready.
    assert rt.store.install_plan(run, 2, plan2, reason="replan", failed=["bad"]).ready == (
        "fix",)
    sent(rt).clear()
    assert replan.replan(rt, run, "bad", 1, holder="task-1") is None
    assert tasks(rt) == [(STEP_TASK, "fix")]


def test_a_checkpoint_that_died_before_asking_for_its_review(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("c", checkpoint=True), echo("d", {"$ref": "c"}))
    assert rt.store.begin_step(run, "c", 1, "w", 4).state == "run"
    # The finish was recorded (held), the review message never sent.
    assert rt.store.finish_step(run, "c", output=1, worker="w", hold=True).state == "held"
    steps.run_step(rt, run, "c", 1, "w")  # the redelivered step message
    assert tasks(rt) == [(REVIEW_TASK, "c")]


def test_a_review_that_died_after_the_release_publishes_on_redelivery(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()  # no model: a review goes on as planned
    run = started(rt, echo("c", checkpoint=True), echo("d", {"$ref": "c"}))
    steps.run_step(rt, run, "c", 1, "w")
    assert rt.store.release_step(run, "c", 1).ready == ("d",)  # then the worker died
    sent(rt).clear()
    assert review.review(rt, run, "c", 1, holder="review-task") is None
    assert tasks(rt) == [(STEP_TASK, "d")]


def test_a_revision_installed_under_a_replanner_hands_its_failures_on(
        make_rt: MakeRuntime) -> None:
    """A checkpoint's revision installs version 2 while a failure of version 1 waits; the
    replanner's own install is then stale: the failure must still get a replan."""
    rt = make_rt()
    run = started(rt, echo("c", checkpoint=True), echo("d", {"$ref": "c"}), failing("x"),
                  echo("after_x", {"$ref": "x"}))
    steps.run_step(rt, run, "c", 1, "w")
    assert rt.store.begin_step(run, "x", 1, "w", 4, lease_s=0).state == "run"
    revised = validate({"goal": "test", "steps": [
        echo("c", checkpoint=True), failing("x"), echo("after_x", {"$ref": "x"}),
        echo("d2", {"$ref": "c"})]}, rt.tools).plan
    # x fails and is noted; the review's revision (which keeps x, running when it looked)
    # lands first.
    steps.run_step(rt, run, "x", 1, "w")
    assert rt.store.unhandled(run) == ["x"]
    assert rt.store.install_plan(run, 2, revised, reason="checkpoint").state == "ok"
    sent(rt).clear()
    rt.store.claim(run, "replan:1", "task-1", reentrant=True)  # the replanner at work...
    stale = rt.store.install_plan(run, 2, revised, reason="replan", failed=["x"])
    assert stale.state == "stale"
    from planner.engine.replan import wake_replanner
    wake_replanner(rt, run)  # ...what it does after a stale install
    assert tasks(rt) == [(REPLAN_TASK, "x")]
    assert [m.args[2] for m in sent(rt)] == [2]


def test_a_new_step_may_not_reuse_the_id_of_a_step_the_version_left_out(
        make_rt: MakeRuntime) -> None:
    from planner.engine.replan import situation

    rt = make_rt()
    run = started(rt, echo("x"), echo("s", "OLD"), failing("bad", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    plan2 = validate({"goal": "test", "steps": [echo("x"), echo("y")]}, rt.tools).plan
    assert rt.store.begin_step(run, "s", 1, "w", 4).state == "run"  # started, then left out
    rt.store.install_plan(run, 2, plan2, reason="replan", failed=["bad"])
    rt.store.finish_step(run, "s", output="OLD", worker="w")  # detached
    compiled = rt.compiled(run, 2)
    _, _, forbidden = situation(rt, run, compiled, rt.store.step_states(run), [], [])
    assert {"s", "bad"} <= set(forbidden) and "y" not in forbidden


def test_ending_a_run_abandons_the_steps_of_every_version(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("x"), echo("s"), failing("bad", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w")
    assert rt.store.begin_step(run, "s", 1, "w", 4).state == "run"
    plan2 = validate({"goal": "test", "steps": [echo("x"), echo("y")]}, rt.tools).plan
    rt.store.install_plan(run, 2, plan2, reason="replan", failed=["bad"])
    assert rt.store.cancel(run)
    report = rt.store.report(run)
    assert report.steps["s"].status == "cancelled"  # left out while running: not "running"
    assert report.steps["y"].status == "cancelled"
    assert not [f for f in rt.store.r.hkeys(RunKeys(run).steps)
                if rt.store.r.hget(RunKeys(run).steps, f) == "running"]


def test_resume_without_anything_dropped_publishes_nothing_twice(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a"), echo("b", {"$ref": "a"}))
    sent(rt).clear()
    go_on(rt, run)  # a running run whose roots are out: nothing to send again
    assert sent(rt) == []


def test_a_plan_run_whose_creator_died_before_its_plan_ends_saying_so(
        make_rt: MakeRuntime) -> None:
    """create_run records the run, then its plan: a creator that dies between leaves a run
    at version 0. The reconciler's nudge sends it to the planner task, which must not plan
    its goal (nobody asked for that) but end it, saying what happened."""
    from planner.engine.start import plan_run
    from planner.store.records import RunOptions

    rt = make_rt(ScriptedModel([submit(echo("surprise"))]))
    run = rt.store.create_run("g", options=RunOptions(from_plan=True))
    assert plan_run(rt, run, 0) is None
    report = rt.store.report(run)
    assert report.status == "failed" and report.error is not None
    assert report.error.type == "PlanLost" and "submit the plan again" in report.error.message
    assert rt.store.run_state(run).version == 0 and not tasks(rt)
    # A run created with its plan carries the mark; a goal's run does not.
    with_plan = started(rt, echo("x"))
    assert rt.store.options(with_plan).from_plan
    goal = rt.store.create_run("a goal")
    assert not rt.store.options(goal).from_plan
