"""Fencing by attempt number, in the store's scripts (no workers): an outcome reported by
an attempt that is not the current one is recorded as ``superseded`` and changes nothing;
attempts keep counting across retries of the run; a run that ended awaiting approval
cannot be retried."""

from __future__ import annotations

import pytest

from planner.errors import Conflict
from planner.store.records import ErrorRecord
from planner.store.runs import RunStore
from tests.store.conftest import plan, running

FLAKY = ErrorRecord(type="TransientError", message="flaky", transient=True, attempt=1)
LOST = ErrorRecord(type="WorkerLost", message="lost", transient=True, attempt=1)
ONE = [("a", [])]


def lapse(store: RunStore, run_id: str, step: str) -> None:
    """The step's lease lapses (its worker stopped renewing it)."""
    store.r.hset(f"chordal:run:{{{run_id}}}:leases", step, "1.0")


def taken_over(store: RunStore) -> str:
    """Attempt 1 of ``a`` ran, was taken for lost, and attempt 2 runs now."""
    run_id = running(store, plan(ONE))
    assert store.begin_step(run_id, "a", 1, "w1", 3).attempt == 1
    lapse(store, run_id, "a")
    assert store.reclaim(run_id, "a", 1, LOST, 0)
    assert store.begin_step(run_id, "a", 1, "w2", 3).attempt == 2
    return run_id


def superseded_events(store: RunStore, run_id: str) -> list[object]:
    return [e.data for e in store.events(run_id) if e.type == "step.superseded"]


@pytest.mark.parametrize("outcome", ["success", "skip", "failure", "retry"])
def test_a_late_outcome_of_a_superseded_attempt_changes_nothing(store: RunStore,
                                                                outcome: str) -> None:
    run_id = taken_over(store)
    before = store.step_state(run_id, "a")
    if outcome == "success":
        assert store.finish_step(run_id, "a", output="old", worker="w1",
                                 attempt=1).state == "superseded"
    elif outcome == "skip":
        assert store.finish_step(run_id, "a", output=None, worker="w1", attempt=1,
                                 skipped_error=FLAKY).state == "superseded"
    elif outcome == "failure":
        assert store.fail_step(run_id, "a", FLAKY, "w1", attempt=1) is False
    else:
        assert store.record_retry(run_id, "a", FLAKY, attempt=1) is False
    after = store.step_state(run_id, "a")
    assert (after.status, after.attempts, after.worker) == ("running", 2, "w2")
    assert after.error == before.error and store.outputs(run_id, ["a"]) == {}
    assert [(h.attempt, h.status) for h in after.history] == [(1, "superseded"),
                                                             (2, "running")]
    assert after.superseded(1) and not after.superseded(2)
    reported = {"success": "succeeded", "skip": "failed", "failure": "failed",
                "retry": "failed"}[outcome]
    assert after.history[0].outcome == reported
    assert superseded_events(store, run_id) == [
        {"attempt": 1, "current": 2, "outcome": reported}]
    # The current attempt's outcome is the step's.
    assert store.finish_step(run_id, "a", output="new", worker="w2", attempt=2).state == "ok"
    assert store.outputs(run_id, ["a"]) == {"a": "new"}
    assert [h.status for h in store.step_state(run_id, "a").history] == ["superseded",
                                                                        "succeeded"]
    # The same report twice is a duplicate, recorded once.
    assert store.finish_step(run_id, "a", output="old", worker="w1",
                             attempt=1).state == "duplicate"
    assert len(superseded_events(store, run_id)) == 1


def test_an_attempt_taken_for_lost_is_fenced_even_before_another_begins(
        store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    store.begin_step(run_id, "a", 1, "w1", 3)
    lapse(store, run_id, "a")
    assert store.reclaim(run_id, "a", 1, LOST, 0)
    assert store.finish_step(run_id, "a", output="late", worker="w1",
                             attempt=1).state == "superseded"
    state = store.step_state(run_id, "a")
    assert state.status == "pending" and state.history[0].status == "superseded"
    assert state.history[0].error is not None and state.history[0].error.type == "WorkerLost"


def test_the_engine_s_own_decisions_are_not_fenced(store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    store.begin_step(run_id, "a", 1, "w1", 3)
    revoked = ErrorRecord(type="Revoked", message="terminated")
    assert store.fail_step(run_id, "a", revoked, "w1")  # no attempt: a revoke
    state = store.step_state(run_id, "a")
    assert state.status == "failed"
    assert [(h.attempt, h.status) for h in state.history] == [(1, "revoked")]
    # The terminated attempt's result, if it still comes, is superseded.
    assert store.finish_step(run_id, "a", output="x", worker="w1",
                             attempt=1).state == "superseded"
    assert store.step_state(run_id, "a").status == "failed"


def test_an_outcome_drops_the_lease_so_a_retry_does_not_wait(store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    store.begin_step(run_id, "a", 1, "w1", 3)
    assert store.record_retry(run_id, "a", FLAKY, attempt=1)
    assert not store.r.hexists(f"chordal:run:{{{run_id}}}:leases", "a")
    assert store.begin_step(run_id, "a", 1, "w2", 3).state == "run"


def test_a_retried_step_waits_for_an_attempt_of_its_cancelled_run(store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    store.begin_step(run_id, "a", 1, "w1", 3)
    assert store.cancel(run_id)
    assert store.step_state(run_id, "a").history[0].status == "cancelled"
    store.retry_run(run_id, ["a"])
    busy = store.begin_step(run_id, "a", 1, "w2", 3)
    assert busy.state == "busy" and 0 < float(busy.detail) <= 30
    # The old attempt ends: its result is superseded, its lease goes, the retry runs.
    assert store.finish_step(run_id, "a", output="old", worker="w1",
                             attempt=1).state == "superseded"
    begin = store.begin_step(run_id, "a", 1, "w2", 3)
    assert (begin.state, begin.attempt, begin.tries) == ("run", 2, 1)
    assert store.finish_step(run_id, "a", output="new", worker="w2", attempt=2).state == "ok"
    assert [h.status for h in store.step_state(run_id, "a").history] == [
        "superseded", "succeeded"]


def test_attempts_keep_counting_and_max_attempts_counts_from_the_retry(
        store: RunStore) -> None:
    run_id = running(store, plan(ONE))
    for attempt in (1, 2):
        begin = store.begin_step(run_id, "a", 1, "w", 2)
        assert (begin.attempt, begin.tries) == (attempt, attempt)
        assert store.record_retry(run_id, "a", FLAKY, attempt=attempt)
    assert store.begin_step(run_id, "a", 1, "w", 2).state == "exhausted"
    store.fail_step(run_id, "a", FLAKY, "w")
    store.finish_run(run_id, "failed")
    store.retry_run(run_id, ["a"])
    state = store.step_state(run_id, "a")
    assert (state.status, state.attempts, state.base, state.tries) == ("pending", 2, 2, 0)
    begin = store.begin_step(run_id, "a", 1, "w", 2)
    assert (begin.state, begin.attempt, begin.tries) == ("run", 3, 1)


@pytest.mark.parametrize("how", ["reject", "cancel"])
def test_a_run_that_ended_awaiting_approval_cannot_be_retried(store: RunStore,
                                                              how: str) -> None:
    run_id = store.create_run("g", plan(ONE))
    assert store.set_status(run_id, "awaiting_approval", "asked", from_=("pending",))
    if how == "reject":
        store.finish_run(run_id, "cancelled",
                         error=ErrorRecord(type="Rejected", message="plan rejected"))
    else:
        store.cancel(run_id)
    with pytest.raises(Conflict, match="never ran and never may"):
        store.retry_run(run_id, ["a"])
    assert store.run_state(run_id).status == "cancelled"
    assert store.step_state(run_id, "a").status == "cancelled"
