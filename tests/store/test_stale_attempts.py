"""A step's lease belongs to the attempt that runs: an outcome of any other attempt, or an
engine decision about a step no attempt of which is current, never drops it (else a new
message would run the tool beside the attempt still running)."""

from __future__ import annotations

from planner.store.records import ErrorRecord
from planner.store.runs import RunStore
from tests.store.conftest import plan, running
from tests.store.test_fencing import FLAKY, LOST, ONE, lapse

REVOKE = ErrorRecord(type="Revoked", message="revoked", transient=False)


def test_late_report_of_lost_attempt_keeps_the_running_attempts_lease(store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    assert store.begin_step(run_id, "a", 1, "w1", 5).attempt == 1
    lapse(store, run_id, "a")
    assert store.reclaim(run_id, "a", 1, LOST, 0)
    assert store.begin_step(run_id, "a", 1, "w2", 5).attempt == 2   # attempt 2 runs
    store.cancel(run_id)                                              # step -> cancelled
    # attempt 1 (a paused worker) wakes and reports: superseded
    assert store.finish_step(run_id, "a", output="old", worker="w1",
                             attempt=1).state == "superseded"
    store.retry_run(run_id, ["a"])
    # attempt 2 still runs: a new message must wait for it
    b = store.begin_step(run_id, "a", 1, "w3", 5)
    assert b.state == "busy", b


def test_an_engine_decision_on_a_pending_step_keeps_a_running_attempts_lease(
        store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    assert store.begin_step(run_id, "a", 1, "w1", 5).attempt == 1
    store.cancel(run_id)
    store.retry_run(run_id, ["a"])          # attempt 1 of the cancelled run still runs
    assert store.fail_step(run_id, "a", REVOKE, "w9")     # e.g. its new message revoked
    store.cancel(run_id)
    store.retry_run(run_id, ["a"])
    assert store.begin_step(run_id, "a", 1, "w3", 5).state == "busy"


def test_a_cancelled_runs_attempt_that_fails_is_recorded_failed_and_drops_its_lease(
        store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    assert store.begin_step(run_id, "a", 1, "w1", 5).attempt == 1
    store.cancel(run_id)
    assert store.record_retry(run_id, "a", FLAKY, attempt=1) is False  # nothing follows
    a = store.step_state(run_id, "a")
    assert a.status == "cancelled"
    assert [(h.attempt, h.status) for h in a.history] == [(1, "failed")]
    store.retry_run(run_id, ["a"])
    assert store.begin_step(run_id, "a", 1, "w2", 5).state == "run"


def test_the_live_task_id_is_the_last_published_or_begun(store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    store.mark_dispatched(run_id, ["a"], task_ids={"a": "T1"})
    assert store.step_state(run_id, "a").task == "T1"
    store.note_task(run_id, "a", "T2")
    assert store.step_state(run_id, "a").task == "T2"
    store.begin_step(run_id, "a", 1, "w1", 5, task_id="T3")
    assert store.step_state(run_id, "a").task == "T3"
