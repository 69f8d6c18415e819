"""The reconciler's decisions and repairs, on a real Redis with a recording publisher.

Times that decide (a lease's expiry, a step's due time) are written into the run store as
a dead worker would have left them; "quiet for the grace" is waited out (1 s).
"""

from __future__ import annotations

import time

import pytest

from planner.engine import reconcile, start, steps
from planner.engine.agent_liveness import Look
from planner.engine.dispatch import MemoryPublisher
from planner.engine.leases import LeaseKeeper
from planner.engine.reconcile import MAX_NUDGES, Policy, Reconciler, diagnose
from planner.engine.runtime import Runtime
from planner.store.keys import ACTIVE_RUNS, RunKeys
from planner.store.records import ErrorRecord
from planner.wire import FINALIZE_TASK, PLAN_TASK, STEP_TASK, SYNTHESIZE_TASK
from tests.engine.conftest import (
    MakeRuntime,
    echo,
    failing,
    no_nonce,
    record,
    replan_expected,
    sent,
    started,
)

FAST = {"CHORDAL_DISPATCH_GRACE_S": "1", "CHORDAL_STEP_LEASE_S": "3"}


@pytest.fixture
def rt(make_rt: MakeRuntime) -> Runtime:
    return make_rt(**FAST)


def lapse(rt: Runtime, run: str, name: str) -> None:
    """The lease's holder stopped renewing it long ago."""
    rt.store.r.hset(RunKeys(run).leases, name, "1")


def overdue(rt: Runtime, run: str, step: str) -> None:
    """The step was due to start long ago."""
    rt.store.r.hset(RunKeys(run).steps, f"{step}.due", "1")


def repairs(rt: Runtime) -> list[tuple[str, str | None]]:
    return [(r.kind, r.step) for _, r in Reconciler(rt, lock_s=10, settle_s=0).reconcile()]


def repaired_events(rt: Runtime, run: str) -> list[dict[str, str]]:
    return [e.data for e in rt.store.events(run) if e.type == "run.repaired"]


def test_a_step_whose_lease_lapsed_is_retried_and_the_lost_attempt_counts(rt: Runtime) -> None:
    run = started(rt, echo("a"), echo("b", {"$ref": "a"}))
    assert rt.store.begin_step(run, "a", 1, "w1", 4, lease_s=3).state == "run"
    assert repairs(rt) == []  # its lease is live: nothing to do
    lapse(rt, run, "a")
    assert repairs(rt) == [("lease_expired", "a")]
    state = rt.store.step_state(run, "a")
    assert (state.status, state.attempts, state.dispatched) == ("pending", 1, True)
    assert state.error is not None and (state.error.type, state.error.attempt) == (
        "WorkerLost", 1)
    assert "w1 stopped renewing its lease" in state.error.message
    [message] = sent(rt)
    assert (message.task, message.args) == (STEP_TASK, (run, "a", 1))
    assert message.countdown is not None and message.countdown > 0
    [event] = repaired_events(rt, run)
    assert (event["kind"], event["step"]) == ("lease_expired", "a")
    assert rt.store.repairs()["lease_expired"] == 1
    # Resent with a countdown: due later, so the next pass leaves it alone.
    assert repairs(rt) == []
    # The resent message runs the second attempt.
    assert steps.run_step(rt, run, "a", 1, "w2") is None
    assert rt.store.step_state(run, "a").attempts == 2


def test_a_lapsed_lease_with_no_attempts_left_applies_the_policy(rt: Runtime) -> None:
    run = started(rt, echo("a", max_retries=0, on_failure="fail"), echo("b", {"$ref": "a"}))
    rt.store.begin_step(run, "a", 1, "w1", 1)
    lapse(rt, run, "a")
    assert repairs(rt) == [("lease_expired", "a")]
    report = rt.store.report(run)
    assert report.status == "failed"
    assert report.error is not None and report.error.cause is not None
    assert report.error.cause.type == "WorkerLost"
    assert rt.store.r.zscore(ACTIVE_RUNS, run) is None
    assert repairs(rt) == []


def test_a_second_message_for_a_step_under_a_live_lease_is_refused(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    assert rt.store.begin_step(run, "a", 1, "w1", 4, lease_s=3).state == "run"
    busy = rt.store.begin_step(run, "a", 1, "w2", 4, lease_s=3)
    assert busy.state == "busy" and 0 < float(busy.detail) <= 3  # seconds left
    # The duplicate comes back when the lease would lapse, and counts no attempt now.
    retry = steps.run_step(rt, run, "a", 1, "w2")
    assert retry is not None and 1 < retry.countdown <= 4
    assert rt.store.step_state(run, "a").attempts == 1
    lapse(rt, run, "a")  # its worker died: a redelivery takes it over
    assert rt.store.begin_step(run, "a", 1, "w2", 4).attempt == 2


def test_the_worker_renews_its_leases_while_the_tool_runs(make_rt: MakeRuntime) -> None:
    rt = make_rt(CHORDAL_STEP_LEASE_S="1")
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w1", 4, lease_s=1)
    keeper = LeaseKeeper(rt.store, 1.0)
    with keeper.keep(run, "a"):
        time.sleep(2.0)  # two lease lengths
        assert rt.store.snapshot(run).leases["a"] > rt.store.now()  # type: ignore[union-attr]
    assert keeper.held() == []
    time.sleep(1.1)
    assert repairs(rt) == [("lease_expired", "a")]


def test_a_run_level_lease_is_taken_and_dropped(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    with rt.leases.keep(run, "@replanner:t1", take=True):
        with rt.leases.keep(run, "@replanner:t2", take=True):
            pass  # a duplicate that gives up at once drops its own lease only
        snap = rt.store.snapshot(run)
        assert snap is not None and snap.leases["@replanner:t1"] > snap.now
        assert "@replanner:t2" not in snap.leases
    snap = rt.store.snapshot(run)
    assert snap is not None and "@replanner:t1" not in snap.leases


def test_a_ready_step_never_published_is_published(rt: Runtime) -> None:
    run = record(rt, echo("a"), echo("b"), echo("c", {"$ref": "a"}))
    rt.store.start_run(run)  # the starter died before publishing the roots
    assert repairs(rt) == []  # within the grace
    time.sleep(1.1)
    assert sorted(repairs(rt)) == [("never_dispatched", "a"), ("never_dispatched", "b")]
    assert sorted(m.args[1] for m in sent(rt)) == ["a", "b"]
    assert rt.store.step_state(run, "a").dispatched
    assert repairs(rt) == []  # published now: due again


def test_a_lost_message_is_sent_again_only_when_its_queue_is_empty(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    overdue(rt, run, "a")
    assert isinstance(rt.publisher, MemoryPublisher)
    rt.publisher.depths["chordal"] = 5  # it may wait behind others
    time.sleep(1.1)
    assert repairs(rt) == []
    rt.publisher.depths["chordal"] = None  # the broker cannot say
    assert repairs(rt) == []
    rt.publisher.depths["chordal"] = 0
    assert repairs(rt) == [("message_lost", "a")]
    [message] = sent(rt)
    assert message.args == (run, "a", 1) and message.countdown is None
    assert "queue 'chordal' is empty" in repaired_events(rt, run)[0]["why"]


def test_a_stalled_run_is_nudged_then_failed_when_nothing_changes(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w", 4)
    rt.store.finish_step(run, "a", output=1, worker="w")  # the join was never published
    for nudge in range(1, MAX_NUDGES + 1):
        time.sleep(1.1)
        assert repairs(rt) == [("stalled_run", None)]
        assert [m.task for m in sent(rt)] == [FINALIZE_TASK] * nudge
        assert "its join and answer" in repaired_events(rt, run)[-1]["why"]
    time.sleep(1.1)
    assert repairs(rt) == [("unrecoverable", None)]
    report = rt.store.report(run)
    assert report.status == "failed" and report.partial
    assert report.error is not None and report.error.type == "Stalled"
    assert report.answer == {"partial": {"a": 1}}


def test_progress_between_nudges_starts_the_count_again(rt: Runtime) -> None:
    run = started(rt, echo("a"), echo("b", {"$ref": "a"}))
    rt.store.begin_step(run, "a", 1, "w", 4)
    time.sleep(1.1)
    lapse(rt, run, "a")
    assert repairs(rt) == [("lease_expired", "a")]
    snap = rt.store.snapshot(run)
    assert snap is not None and snap.nudges == 0
    rt.store.r.hset(RunKeys(run).run, mapping={"nudges": MAX_NUDGES, "nudged_at": "1-1"})
    snap = rt.store.snapshot(run)
    assert snap is not None
    # Events happened after the last nudge: a stall is nudged again, not given up.
    later = snap.model_copy(update={"now": snap.now + 100, "leases": {}, "steps": {}})
    assert [r.kind for r in diagnose(later, Policy(1.0, 3.0), lambda _s: "chordal",
                                     lambda _q: 0)] == ["stalled_run"]


def test_a_replanner_that_died_leaves_a_claim_that_is_released(make_rt: MakeRuntime) -> None:
    rt = make_rt(**FAST)
    run = started(rt, failing("bad", on_failure="replan"), echo("x"))
    rt.store.begin_step(run, "x", 1, "w", 4)
    rt.store.finish_step(run, "x", output=1, worker="w")
    steps.run_step(rt, run, "bad", 1, "w")
    assert rt.store.unhandled(run) == ["bad"]
    assert rt.store.claim(run, "replan:1", "dead-task")  # its worker died
    sent(rt).clear()
    time.sleep(1.1)
    assert repairs(rt) == [("stalled_run", None)]
    assert no_nonce(sent(rt)) == [replan_expected(run, "bad", 1)]
    assert "a replan for failed step(s) bad" in repaired_events(rt, run)[-1]["why"]
    assert rt.store.claim(run, "replan:1", "new-task")  # free for the next replanner


def test_a_run_level_task_at_work_keeps_the_reconciler_away(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w", 4)
    rt.store.finish_step(run, "a", output=1, worker="w")
    with rt.leases.keep(run, "@synthesizer:t1", take=True):
        time.sleep(1.1)
        assert repairs(rt) == []


def test_a_goal_whose_planning_message_was_lost_is_planned(rt: Runtime) -> None:
    rt.store.create_run("a goal")
    time.sleep(1.1)
    assert repairs(rt) == [("stalled_run", None)]
    assert [m.task for m in sent(rt)] == [PLAN_TASK]


def test_runs_that_ended_or_expired_leave_the_watch_list(rt: Runtime) -> None:
    ended = started(rt, echo("a"))
    rt.store.r.zadd(ACTIVE_RUNS, {ended: 1})
    rt.store.r.hset(RunKeys(ended).run, "status", "succeeded")  # ended, still listed
    rt.store.r.zadd(ACTIVE_RUNS, {"gone": 1})  # its record expired
    rt.store.r.zadd(ACTIVE_RUNS, {"soon": rt.store.now()})  # being created right now
    assert repairs(rt) == []
    assert rt.store.r.zrange(ACTIVE_RUNS, 0, -1) == ["soon"]


def test_waiting_and_paused_runs_are_a_person_s_to_move(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w", 4)
    rt.store.set_status(run, "paused", "budget", from_=("running",))
    lapse(rt, run, "a")
    time.sleep(1.1)
    assert repairs(rt) == []


def test_one_reconciler_is_active_at_a_time(rt: Runtime) -> None:
    first, second = Reconciler(rt, lock_s=10), Reconciler(rt, lock_s=10)
    assert first._hold() and not second._hold()
    assert first._hold()  # it keeps it
    first.release()
    assert second._hold() and not first._hold()
    second.release()


def test_the_module_docstring_names_every_repair_kind() -> None:
    for kind in ("lease_expired", "message_lost", "never_dispatched", "stalled_run",
                 "unrecoverable"):
        assert f"``{kind}``" in (reconcile.__doc__ or "")


def test_start_is_idempotent_after_a_never_dispatched_repair(rt: Runtime) -> None:
    run = record(rt, echo("a"))
    rt.store.start_run(run)
    time.sleep(1.1)
    assert repairs(rt) == [("never_dispatched", "a")]
    start.start_run(rt, run)  # the starter comes back: nothing is published twice
    assert [m.args[1] for m in sent(rt)] == ["a"]


def test_after_a_gap_leases_are_not_judged_until_their_holders_could_renew(
        rt: Runtime) -> None:
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w1", 4)
    lapse(rt, run, "a")  # lapsed while Redis (or the reconciler) was away
    fresh = Reconciler(rt, lock_s=10, settle_s=1.0)
    assert fresh.reconcile() == []  # it just took over: renewers get a beat first
    time.sleep(1.1)
    assert [(r.kind, r.step) for _, r in fresh.reconcile()] == [("lease_expired", "a")]


def test_a_step_begun_without_a_lease_lapses_a_lease_after_it_began(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "old-worker", 4)
    rt.store.r.hdel(RunKeys(run).leases, "a")  # a worker from before leases
    assert repairs(rt) == []  # began just now: as if it held a lease
    rt.store.r.hset(RunKeys(run).steps, "a.attempt_started_at", "1.000000")
    assert repairs(rt) == [("lease_expired", "a")]


def test_a_failing_run_whose_partial_answer_went_missing_is_nudged(rt: Runtime) -> None:
    run = started(rt, echo("a"), echo("b"))
    rt.store.begin_step(run, "a", 1, "w", 4)  # its worker dies with the run's ending
    rt.store.set_ending(run, ErrorRecord(type="StepFailed", message="b failed"))
    lapse(rt, run, "a")
    time.sleep(1.1)
    assert repairs(rt) == [("stalled_run", None)]
    assert "its partial answer" in repaired_events(rt, run)[-1]["why"]
    [message] = sent(rt)
    assert message.task == SYNTHESIZE_TASK and message.args == (run, 1, True)


def test_a_quiet_run_is_nudged_even_behind_a_backlog_but_never_given_up(
        rt: Runtime) -> None:
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w", 4)
    rt.store.finish_step(run, "a", output=1, worker="w")
    assert isinstance(rt.publisher, MemoryPublisher)
    rt.publisher.depths["llm"] = 40  # other runs' model calls wait
    for _ in range(MAX_NUDGES + 1):
        time.sleep(1.1)
        assert repairs(rt) == [("stalled_run", None)]
    assert rt.store.run_state(run).status == "running"


def test_a_message_a_worker_holds_is_waiting_though_its_queue_is_empty(rt: Runtime) -> None:
    """Reserved by a worker that has not begun it yet (prefetched behind a long step, or a
    pool still starting): the broker holds it, so it is waiting, never lost; only a broker
    that cannot say leaves the empty queue to decide."""
    run = started(rt, echo("a"), echo("b"))
    rt.store.begin_step(run, "b", 1, "w", 4)  # the run has begun: no submit rules
    overdue(rt, run, "a")
    time.sleep(1.1)
    snap = rt.store.snapshot(run)
    assert snap is not None

    def decide(held: bool | None) -> list[str]:
        return [r.kind for r in diagnose(snap, Policy(1.0, 3.0), lambda _s: "chordal",
                                         lambda _q: 0, look_in=lambda _s, _q: Look(held))]

    assert decide(True) == []
    assert decide(None) == ["message_lost"]
