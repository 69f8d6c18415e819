"""A task the step no longer runs under (a superseded attempt's, a message replaced by a
re-drive) is not current: its revoke or its errback is noted on its own attempt and
leaves the step alone; a delivery that recorded nothing ends REVOKED in Flower; a revoke
the run store could not take at once is not lost."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from planner.engine import steps
from planner.engine.dispatch import MemoryPublisher
from planner.engine.runtime import Runtime
from planner.errors import PermanentError
from planner.store.records import ErrorRecord
from planner.store.runs import RunStore
from planner.tools import ToolRegistry, load_registry, tool
from planner.tools.aio import AttemptTimeout
from planner.wire import STEP_REVOKED_TASK, STEP_TASK
from tests.engine.conftest import MakeRuntime, echo, sent, started

LOST = ErrorRecord(type="WorkerLost", message="lost", transient=True, attempt=1)
_hook: list[Callable[[], None]] = []


@tool
def overtaken(fails: bool) -> str:
    """Run the test's hook (another attempt takes the step over), then end."""
    for hook in _hook:
        hook()
    if fails:
        raise PermanentError("late failure")
    return "late"


def _lapse(rt: object, run_id: str, step: str) -> None:
    rt.store.r.hset(f"chordal:run:{{{run_id}}}:leases", step, "1.0")  # type: ignore[attr-defined]


def test_terminate_of_a_lost_attempts_task_while_its_redrive_waits(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="fail"))
    assert rt.store.begin_step(run, "a", 1, "w1", 5, task_id="A").attempt == 1
    _lapse(rt, run, "a")
    assert rt.store.reclaim(run, "a", 1, LOST, 0)
    # The re-drive is not published yet (the reconciler's next pass), or is queued.
    steps.step_revoked(rt, run, "a", "w1", True, "A")   # an operator kills the stuck old one
    a = rt.store.step_state(run, "a")
    assert a.status == "pending", (a.status, a.error)
    assert [(h.attempt, h.status) for h in a.history] == [(1, "revoked")]
    steps.resend(rt, rt.compiled(run, 1), run, 1, "a", 0)
    steps.step_revoked(rt, run, "a", "w1", True, "A")   # the same signal again
    assert rt.store.step_state(run, "a").status == "pending"
    assert rt.store.run_state(run).status == "running"


def test_a_discarded_stale_message_is_left_alone_and_the_live_one_ends_the_step(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="fail"))
    first = f"{run}.1.a"
    assert rt.store.step_state(run, "a").task == first
    steps.resend(rt, rt.compiled(run, 1), run, 1, "a", 0)
    live = sent(rt)[-1].task_id
    assert live != first and rt.store.step_state(run, "a").task == live
    steps.step_revoked(rt, run, "a", "w1", False, first)
    assert rt.store.step_state(run, "a").status == "pending"
    steps.step_revoked(rt, run, "a", "w1", False, live)
    assert rt.store.step_state(run, "a").status == "failed"
    assert rt.store.run_state(run).status == "failed"


def test_errback_of_a_superseded_task_leaves_the_current_attempt(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="fail"))
    assert rt.store.begin_step(run, "a", 1, "w1", 5, task_id="A").attempt == 1
    _lapse(rt, run, "a")
    assert rt.store.reclaim(run, "a", 1, LOST, 0)
    assert rt.store.begin_step(run, "a", 1, "w2", 5, task_id="B").attempt == 2
    before = len(sent(rt))
    steps.step_failed_outside(rt, "A", run, "a", 1)   # A killed at the hard limit
    a = rt.store.step_state(run, "a")
    assert (a.status, a.attempts) == ("running", 2), [(h.attempt, h.status) for h in a.history]
    assert [(h.attempt, h.status) for h in a.history] == [(1, "superseded"), (2, "running")]
    assert len(sent(rt)) == before
    # B's own errback still has its claim: it retries the step.
    steps.step_failed_outside(rt, "B", run, "a", 1)
    a = rt.store.step_state(run, "a")
    assert a.status == "pending" and [m.task for m in sent(rt)[before:]] == [STEP_TASK]


@pytest.mark.parametrize("fails", [False, True])
def test_a_superseded_attempt_ends_revoked_not_successful(make_rt: MakeRuntime,
                                                          fails: bool) -> None:
    rt = make_rt()
    rt.tools = load_registry(["planner.tools.testing"])
    rt.tools.add(overtaken)
    run = started(rt, {"id": "a", "tool": "overtaken", "args": {"fails": fails},
                       "on_failure": "fail"})

    def take_over() -> None:  # its lease lapses and another attempt takes the step over
        _lapse(rt, run, "a")
        assert rt.store.reclaim(run, "a", 1, LOST, 0)
        assert rt.store.begin_step(run, "a", 1, "w2", 5, task_id="B").attempt == 2

    _hook.append(take_over)
    try:
        decision = steps.run_step(rt, run, "a", 1, "w1", task_id="A")
    finally:
        _hook.clear()
    assert isinstance(decision, steps.Dropped), decision
    a = rt.store.step_state(run, "a")
    assert (a.status, [h.status for h in a.history]) == ("running", ["superseded", "running"])


def test_a_cancelled_runs_attempt_that_times_out_is_failed_and_revoked_in_flower(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    rt.tools = load_registry(["planner.tools.testing"])
    rt.tools.add(overtaken)
    run = started(rt, {"id": "a", "tool": "overtaken", "args": {"fails": False},
                       "on_failure": "fail"})
    _hook.append(lambda: rt.store.cancel(run))
    _hook.append(lambda: (_ for _ in ()).throw(AttemptTimeout()))
    try:
        decision = steps.run_step(rt, run, "a", 1, "w1", task_id="A")
    finally:
        _hook.clear()
    assert isinstance(decision, steps.Dropped), decision
    a = rt.store.step_state(run, "a")
    assert (a.status, [h.status for h in a.history]) == ("cancelled", ["failed"])
    assert rt.store.r.hget(f"chordal:run:{{{run}}}:leases", "a") is None


def test_a_revoke_the_store_cannot_take_is_handed_to_a_task_and_still_ends_the_step(
        make_rt: MakeRuntime, tools: ToolRegistry) -> None:
    rt = make_rt()
    run = started(rt, echo("a", on_failure="fail"))
    assert rt.store.begin_step(run, "a", 1, "w1", 5, task_id="A").attempt == 1
    # The worker that hears the revoke cannot reach the run store (nothing listens there).
    away = Runtime(rt.settings, MemoryPublisher(), tools=tools,
                   store=RunStore.from_url("redis://127.0.0.1:9/0"))
    steps.record_revoke(away, run, "a", "w1", True, "A")
    [message] = sent(away)
    assert (message.task, message.task_id, message.args[:5]) == (
        STEP_REVOKED_TASK, "A.revoked", (run, "a", "w1", True, "A"))
    assert rt.store.step_state(run, "a").status == "running"   # nothing recorded yet
    # Meanwhile the reconciler takes the terminated attempt for lost and re-drives it...
    time.sleep(0.01)
    _lapse(rt, run, "a")
    assert rt.store.reclaim(run, "a", 1, LOST, 0)
    steps.resend(rt, rt.compiled(run, 1), run, 1, "a", 0)
    # ...and the bookkeeping task still ends the step a person stopped.
    steps.step_revoked(rt, *message.args)
    a = rt.store.step_state(run, "a")
    assert a.status == "failed" and a.error is not None and a.error.type == "Revoked"
    assert rt.store.run_state(run).status == "failed"
    assert isinstance(steps.run_step(rt, run, "a", 1, "w2", task_id=sent(rt)[-1].task_id),
                      steps.Dropped)
