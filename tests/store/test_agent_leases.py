"""Who may take an agent step, or one of its calls, from whom (review of issue #19): a call
lease is its conversation's, a second message of the step waits while the step's calls
run or wait, and a revoke ends a call only if it concerns the task the call runs under."""

from __future__ import annotations

from planner.store.keys import RunKeys, call_lease
from planner.store.records import ErrorRecord
from tests.store.agent_steps import (
    CALLS,
    CONTENT,
    FLAKY,
    lapse,
    lease,
    settle,
    started,
    tools_turn,
)

REVOKED = ErrorRecord(type="Revoked", message="terminated")


def test_a_call_a_retry_left_behind_drops_only_its_own_lease(store):
    run_id = started(store)
    tools_turn(store, run_id)
    for i in (0, 1):  # both calls of conversation 0 run
        assert store.begin_call(run_id, "pick", 0, 0, i, "old", 3, task_id=f"O{i}").state == "run"
    store.cancel(run_id)
    store.retry_run(run_id, ["pick"])
    lapse(store, run_id, "pick")  # the cancelled attempt's own lease
    begun = store.begin_step(run_id, "pick", 1, "w", 3, task_id="S2")
    assert (begun.state, begun.attempt) == ("run", 2)
    conv = int(store.r.hget(RunKeys(run_id).steps, "pick.base"))
    assert conv == 1
    # Conversation 1: turn 0 asks for the same calls; its call 0 runs, call 1 is due.
    assert store.begin_turn(run_id, "pick", conv, 0, "w", task_id="S2", attempt=2).state == "run"
    store.record_turn(run_id, "pick", conv, 0, "S2", kind="tools", content=CONTENT,
                      calls=CALLS, handoff_s=60)
    assert store.begin_call(run_id, "pick", conv, 0, 0, "new", 3, task_id="N0").state == "run"
    due = store.step_state(run_id, "pick").calls_due
    assert set(due) == {"0.1"}
    # The old conversation's calls end: recorded there, and nothing of the new one moves.
    old = store.finish_call(run_id, "pick", 0, 0, 0, attempt=1, outcome="succeeded", output=1)
    assert old.state == "ok"
    retried = store.finish_call(run_id, "pick", 0, 0, 1, attempt=1, outcome="retry",
                                error=FLAKY, delay_s=100, queue="elsewhere")
    assert retried.state == "retry"
    assert lease(store, run_id, call_lease("pick", conv, 0, 0)) > store.now()
    assert store.renew_leases(run_id, [call_lease("pick", conv, 0, 0)], 30) == 1
    assert store.step_state(run_id, "pick").calls_due == due
    # So the new call is busy for a second message of it: the tool never runs twice at once.
    assert store.begin_call(run_id, "pick", conv, 0, 0, "w3", 3, task_id="N0x").state == "busy"


def test_a_second_step_message_waits_while_the_agents_calls_run_or_wait(store):
    run_id = started(store)
    tools_turn(store, run_id)
    lapse(store, run_id, "pick")  # the hop to the calls outlived its lease: both are due
    due = store.begin_step(run_id, "pick", 1, "w2", 3, task_id="S")
    assert due.state == "busy" and float(due.detail) > 0
    assert store.begin_call(run_id, "pick", 0, 0, 0, "w0", 3, task_id="C0").state == "run"
    settle(store, run_id, 1)
    lapse(store, run_id, "pick")
    running = store.begin_step(run_id, "pick", 1, "w2", 3, task_id="S")
    assert running.state == "busy" and float(running.detail) > 0
    state = store.step_state(run_id, "pick")
    assert (state.attempts, [a.status for a in state.history]) == (1, ["running"])
    # A call lease of another conversation, or a lapsed one, holds nothing: the step's
    # worker died with its call, and the message takes the step over (it resumes).
    store.take_leases(run_id, [call_lease("pick", 5, 0, 0)], 60)
    lapse(store, run_id, call_lease("pick", 0, 0, 0))
    taken = store.begin_step(run_id, "pick", 1, "w2", 3, task_id="S")
    assert (taken.state, taken.attempt) == ("run", 2)


def test_a_reclaimed_agent_step_is_not_kept_waiting_by_its_due_calls(store):
    run_id = started(store)
    tools_turn(store, run_id)
    lapse(store, run_id, "pick")
    # The reconciler found the calls' messages lost: the step goes back to pending.
    assert store.reclaim(run_id, "pick", 1, ErrorRecord(type="WorkerLost", message="x"), 0)
    begun = store.begin_step(run_id, "pick", 1, "w2", 3, task_id="S2")
    assert (begun.state, begun.attempt) == ("run", 2)


def test_a_revoke_ends_a_call_only_for_the_task_it_runs_under(store):
    run_id = started(store)
    tools_turn(store, run_id)
    assert store.begin_call(run_id, "pick", 0, 0, 0, "w", 3, task_id="REAL").state == "run"
    stale = store.finish_call(run_id, "pick", 0, 0, 0, outcome="failed", error=REVOKED,
                              task_id="DUPLICATE")
    assert stale.state == "superseded"
    call = store.conversation(run_id, "pick").turns[0].calls[0]
    assert (call.status, call.error) == ("running", None)
    assert lease(store, run_id, call_lease("pick", 0, 0, 0)) > store.now()
    real = store.finish_call(run_id, "pick", 0, 0, 0, outcome="failed", error=REVOKED,
                             task_id="REAL")
    assert (real.state, real.left) == ("ok", 1)
    # A call that never began runs under no task: a revoke of its message ends it.
    never = store.finish_call(run_id, "pick", 0, 0, 1, outcome="failed", error=REVOKED,
                              task_id="ANY")
    assert never.state == "last"
