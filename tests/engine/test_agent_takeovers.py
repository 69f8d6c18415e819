"""Who takes an agent step, or one of its turns, over, and when: a second message of the
step waits while its calls run; a turn task that finds its turn held waits for the holder's
lease and then takes the turn over, instead of dropping itself (review of issue #19)."""

from __future__ import annotations

from planner.engine import human
from planner.engine.outcomes import Retry
from planner.engine.steps import Dropped
from planner.llm.scripted import ScriptedModel
from planner.vocabulary import RunStatus, StepStatus, TurnKind
from planner.wire import AGENT_CALL_TASK, AGENT_TURN_TASK
from tests.engine.agent_driver import (
    COUNTS,
    Flaky,
    deliver,
    drain,
    drain_until,
    pick,
    says,
    started,
    tools,
    turn,
    turns,
    use,
)
from tests.engine.conftest import MakeRuntime, sent

__all__ = ["tools"]  # the fixture: the testing tools and ``count``


def test_the_steps_own_message_again_while_its_call_runs_takes_nothing_over(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(ScriptedModel([says(0, use("count", key="x")), says(1, "picked")]))
    run = started(rt, pick())
    (step,) = sent(rt)
    sent(rt).clear()
    assert deliver(rt, step) is None
    (call,) = sent(rt)
    sent(rt).clear()
    # The call runs on a worker, longer than the hop: the step lease lapses by design.
    begun = rt.store.begin_call(run, "pick", 0, 0, 0, "w1", 5, 30.0, call.task_id)
    assert begun.state == "run"
    rt.store.take_leases(run, ["pick"], 0)
    # The broker hands the step's message back (a visibility timeout, a redelivery).
    assert isinstance(deliver(rt, step, "w2"), Retry)
    state = rt.store.step_state(run, "pick")
    assert (state.attempts, [str(a.status) for a in state.history]) == (1, ["running"])
    assert sent(rt) == []  # its call is not published again
    # The call's worker dies: its message comes back and takes the call over.
    rt.store.take_leases(run, ["~pick|0|0|0"], 0)
    assert deliver(rt, call, "w3") is None
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert rt.store.step_state(run, "pick").attempts == 1 and COUNTS == {"x": 1}


def test_a_turn_handed_on_under_a_lease_not_yet_lapsed_waits_for_it(make_rt: MakeRuntime
                                                                     ) -> None:
    rt = make_rt(Flaky(1, [says(0, use("count", key="x")), says(1, "done")]))
    run = started(rt, pick())
    (step,) = sent(rt)
    sent(rt).clear()
    assert deliver(rt, step) is None  # turn 0's model call failed: handed on
    (handed,) = sent(rt)
    sent(rt).clear()
    assert handed.task == AGENT_TURN_TASK and handed.countdown
    # Its consumer's clock runs ahead: the step lease has not lapsed yet.
    waits = turn(rt, handed)
    assert isinstance(waits, Retry) and waits.countdown >= 1.0
    assert turns(rt, run) == [TurnKind.THINKING]
    rt.store.take_leases(run, ["pick"], 0)  # its retry comes back after the lease
    assert turn(rt, handed) is None
    drain(rt)
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert COUNTS == {"x": 1}


def test_a_turn_a_resumed_run_sends_again_takes_over_from_a_retry_the_pause_dropped(
        make_rt: MakeRuntime) -> None:
    model = Flaky(0, [says(0, use("count", key="x")), says(1, "done")])
    rt = make_rt(model)
    run = started(rt, pick())
    drain_until(rt, AGENT_TURN_TASK)
    (t1,) = [m for m in sent(rt) if m.task == AGENT_TURN_TASK]
    sent(rt).clear()
    model.fails = 1
    # Its model call fails: a Celery retry, the step lease held through its countdown.
    assert isinstance(turn(rt, t1), Retry)
    assert human.pause(rt, run, "by hand")
    assert isinstance(turn(rt, t1), Dropped)  # the retry finds the run paused
    human.resume(rt, run)
    (again,) = [m for m in sent(rt) if m.task == AGENT_TURN_TASK]
    assert again.task_id != t1.task_id and again.args[3:] == (0, 1)
    sent(rt).clear()
    # The lease the dropped retry held has not lapsed: wait for it, then take over.
    assert isinstance(turn(rt, again), Retry)
    rt.store.take_leases(run, ["pick"], 0)
    assert turn(rt, again) is None
    assert rt.store.step_state(run, "pick").status == StepStatus.SUCCEEDED
    assert rt.store.run_state(run).status == RunStatus.RUNNING
    assert [m for m in sent(rt) if m.task in (AGENT_TURN_TASK, AGENT_CALL_TASK)] == []


def test_a_turn_message_that_comes_back_after_the_next_turn_began_sends_nothing(
        make_rt: MakeRuntime) -> None:
    from planner.engine.agent_moves import turn_message

    rt = make_rt(ScriptedModel([says(0, use("count", key="x")), says(1, "done")]))
    run = started(rt, pick())
    drain_until(rt, AGENT_TURN_TASK)
    (t1,) = [m for m in sent(rt) if m.task == AGENT_TURN_TASK]
    sent(rt).clear()
    assert rt.store.begin_turn(run, "pick", 0, 1, "w1", 30.0, t1.task_id).state == "run"
    # A message of turn 0 (a hand-off that waited for a busy lease) comes back late.
    stale = turn_message(rt.compiled(run, 1), run, 1, "pick", 0, 0, redrive=True)
    assert isinstance(turn(rt, stale), Dropped)
    assert sent(rt) == []  # turn 1 is under way: nothing is sent for it again
