"""An agent step's turns and tool calls in the run store (begin_turn, record_turn,
begin_call, finish_call), one branch at a time, against a real Redis (no workers): fencing
by task and attempt, duplicates, the fan-in counter, calls_due, call leases, stopping at a
turn boundary. (What readers see of them: test_agent_views.py.)"""

from __future__ import annotations

import json

import pytest

from planner.store.agents import TURN_TRIES
from planner.store.keys import RunKeys, call_lease
from planner.store.records import ErrorRecord
from planner.vocabulary import RunStatus
from tests.store.agent_steps import (
    BAD_ARGS,
    BOOM,
    CALLS,
    CONTENT,
    FLAKY,
    events,
    lapse,
    lease,
    settle,
    started,
    thinking,
    tools_turn,
)

# -- the path of a conversation ---------------------------------------------------------

def test_a_turn_fans_out_its_calls_and_the_last_result_hands_on_to_the_next_turn(store):
    run_id = started(store)
    rec = tools_turn(store, run_id)
    assert (rec.state, rec.left, rec.active) == ("ok", 2, True)
    now = store.now()
    # The hop to the calls: the step lease covers handoff_s; both calls are due now.
    assert now + 50 < lease(store, run_id, "pick") <= now + 60
    due = store.snapshot(run_id).steps["pick"].calls_due
    assert set(due) == {"0.0", "0.1"} and {q for q, _ in due.values()} == {"io"}
    assert all(abs(t - now) < 5 for _, t in due.values())
    # Turn 1 waits for the calls.
    assert store.begin_turn(run_id, "pick", 0, 1, "w", task_id="T1").state == "early"

    begun = store.begin_call(run_id, "pick", 0, 0, 0, "w0", 3, lease_s=20, task_id="C0")
    assert (begun.state, begun.attempt, begun.tool, begun.args) == ("run", 1, "echo",
                                                                     {"text": "a"})
    assert lease(store, run_id, call_lease("pick", 0, 0)) > store.now() + 15
    assert set(store.step_state(run_id, "pick").calls_due) == {"0.1"}
    first = store.finish_call(run_id, "pick", 0, 0, 0, attempt=1, outcome="succeeded",
                              output={"x": 1.0000000000001, "empty": []})
    assert (first.state, first.left) == ("ok", 1) and first.took is not None
    assert call_lease("pick", 0, 0) not in store.r.hgetall(RunKeys(run_id).leases)
    assert store.begin_turn(run_id, "pick", 0, 1, "w", task_id="T1").state == "early"
    last = settle(store, run_id, 1)
    assert (last.state, last.version) == ("last", 1)
    assert store.step_state(run_id, "pick").calls_due == {}
    assert store.begin_turn(run_id, "pick", 0, 1, "w", task_id="T1").state == "run"
    final = store.record_turn(run_id, "pick", 0, 1, "T1", kind="final",
                              content=[{"type": "text", "text": "a"}], text="a",
                              answer={"hotel": "a", "prices": []})
    assert (final.state, final.left, final.active) == ("ok", 0, True)

    conv = store.conversation(run_id, "pick")
    assert (conv.conversation, conv.last, conv.left) == (0, 1, 0)
    t0, t1 = conv.turns
    assert (t0.kind, t0.done, t0.tries, t0.attempt, t0.task) == ("tools", True, 1, 1, "S")
    assert t0.content == CONTENT and t0.usage == {"input_tokens": 550, "output_tokens": 20}
    assert (t0.text, t0.stop_reason, t0.latency_ms) == ("Checking both.", "tool_use", 412.5)
    # Payloads come back exactly as given: cjson never rewrote them.
    assert [(c.index, c.id, c.status, c.args, c.output, c.attempts) for c in t0.calls] == [
        (0, "tu0", "succeeded", {"text": "a"}, {"x": 1.0000000000001, "empty": []}, 1),
        (1, "tu1", "succeeded", {"text": "b"}, {"i": 1}, 1),
        (2, "tu2", "refused", {}, None, 0)]
    assert t0.calls[2].error == BAD_ARGS and t0.calls[0].worker == "w0"
    assert t0.calls[0].started_at and t0.calls[0].finished_at
    assert (t1.kind, t1.answered, t1.answer) == ("final", True, {"hotel": "a", "prices": []})
    assert not t0.answered and t0.answer is None

    assert [s for s, _ in events(store, run_id, "agent.turn")] == [
        "thinking", "tools", "thinking", "final"]
    turn0 = events(store, run_id, "agent.turn")[1][1]
    assert turn0 == {"turn": 0, "text": "Checking both.", "latency_ms": 412.5,
                     "calls": [{"index": 0, "tool": "echo"}, {"index": 1, "tool": "echo"},
                               {"index": 2, "tool": "nope"}],
                     "usage": {"input_tokens": 550, "output_tokens": 20}}
    calls = events(store, run_id, "agent.tool_call")
    assert [(s, d["index"]) for s, d in calls] == [
        ("refused", 2), ("running", 0), ("succeeded", 0), ("running", 1), ("succeeded", 1)]
    assert calls[0][1]["error"] == "CallRefused: args.text: Field required"
    assert calls[2][1]["attempt"] == 1 and calls[2][1]["took_s"] >= 0


def test_a_turn_whose_calls_are_all_refused_leaves_none_to_wait_for(store):
    run_id = started(store)
    rec = tools_turn(store, run_id, [CALLS[2]])
    assert (rec.state, rec.left) == ("ok", 0)
    assert store.step_state(run_id, "pick").calls_due == {}
    assert store.begin_turn(run_id, "pick", 0, 1, "w", task_id="T1").state == "run"


def test_a_turn_after_the_final_one_never_runs(store):
    run_id = started(store)
    thinking(store, run_id, attempt=1)
    store.record_turn(run_id, "pick", 0, 0, "S", kind="final", answer=None)
    assert store.conversation(run_id, "pick").turns[0].answered  # a null answer is one
    assert store.begin_turn(run_id, "pick", 0, 0, "w", task_id="X").state == "done"
    late = store.begin_turn(run_id, "pick", 0, 1, "w", task_id="T1")
    assert late.state == "inactive" and "final" in late.why


# -- begin_turn ---------------------------------------------------------------------------

def test_a_recorded_turn_is_done_and_a_second_record_is_a_duplicate(store):
    run_id = started(store)
    tools_turn(store, run_id)
    again = store.begin_turn(run_id, "pick", 0, 0, "w", task_id="S")
    assert (again.state, again.kind, again.detail) == ("done", "tools", "tools")
    dup = store.record_turn(run_id, "pick", 0, 0, "S", kind="final")
    assert (dup.state, dup.kind) == ("duplicate", "tools")
    assert store.conversation(run_id, "pick").turns[0].kind == "tools"
    assert len(events(store, run_id, "agent.turn")) == 2


def test_a_turn_being_made_is_busy_to_another_task_until_its_holder_is_gone(store):
    run_id = started(store)
    thinking(store, run_id, 0, "S", attempt=1)
    busy = store.begin_turn(run_id, "pick", 0, 0, "w2", task_id="X")
    assert busy.state == "busy" and 0 < busy.secs <= 30
    # Celery's retry of the same task keeps its id: it takes the turn over at once.
    again = thinking(store, run_id, 0, "S", attempt=1)
    assert again.tries == 2
    # Its holder's lease lapsed: another task takes it over, and the first one's late
    # record changes nothing.
    lapse(store, run_id, "pick")
    assert thinking(store, run_id, 0, "X").tries == 3
    assert store.record_turn(run_id, "pick", 0, 0, "S", kind="final").state == \
        "superseded"
    assert store.conversation(run_id, "pick").turns[0].kind == "thinking"
    # Begun TURN_TRIES times (model retries of its task, workers lost): the next taker is
    # told so, and nothing is counted.
    for tries in range(4, TURN_TRIES + 1):
        assert thinking(store, run_id, 0, "X").tries == tries
    lapse(store, run_id, "pick")
    out = store.begin_turn(run_id, "pick", 0, 0, "w", task_id="Y")
    assert (out.state, out.tries, out.detail) == ("exhausted", TURN_TRIES, str(TURN_TRIES))
    assert store.conversation(run_id, "pick").turns[0].task == "X"
    assert store.record_turn(run_id, "pick", 0, 0, "X", kind="tools").state == "ok"


def test_a_later_attempt_of_the_step_takes_over_a_turn_an_older_attempt_left(store):
    run_id = started(store)
    thinking(store, run_id, 0, "S", attempt=1)
    # The reconciler took attempt 1 for lost and re-drove the step: attempt 2 resumes.
    lapse(store, run_id, "pick")
    assert store.reclaim(run_id, "pick", 1, ErrorRecord(type="WorkerLost", message="x"), 0)
    assert store.begin_step(run_id, "pick", 1, "w2", 3, task_id="S2").attempt == 2
    # Attempt 1 is fenced out; attempt 2's lease is live, yet the turn is its to take.
    stale = store.begin_turn(run_id, "pick", 0, 0, "w", task_id="S", attempt=1)
    assert stale.state == "inactive" and "attempt 1" in stale.why
    begun = thinking(store, run_id, 0, "S2", attempt=2)
    assert (begun.attempt, begun.tries) == (2, 2)
    # A turn task (no attempt) of the same step now is busy: attempt 2 holds it.
    assert store.begin_turn(run_id, "pick", 0, 0, "w", task_id="T").state == "busy"


@pytest.mark.parametrize("stop", ["cancel", "pause", "ending", "budget", "step"])
def test_a_stopped_run_or_step_stops_the_agent_at_the_turn_boundary(store, stop):
    run_id = started(store)
    tools_turn(store, run_id, [CALLS[2]])
    if stop == "cancel":
        store.cancel(run_id)
    elif stop == "pause":
        assert store.set_status(run_id, RunStatus.PAUSED, "budget", from_=[RunStatus.RUNNING])
    elif stop == "ending":
        store.set_ending(run_id, BOOM)
    elif stop == "budget":
        store.finish_run(run_id, RunStatus.FAILED, error=ErrorRecord(
            type="BudgetExceeded", message="over"))
    else:
        store.fail_step(run_id, "pick", BOOM, "w", attempt=1)
    out = store.begin_turn(run_id, "pick", 0, 1, "w", task_id="T1")
    assert out.state == "inactive"
    assert out.why == {"cancel": "run cancelled", "pause": "run paused",
                       "ending": "run ending", "budget": "run failed",
                       "step": "step failed"}[stop]
    assert len(store.conversation(run_id, "pick").turns) == 1


def test_a_retried_step_starts_a_new_conversation_and_the_old_stays_readable(store):
    run_id = started(store)
    tools_turn(store, run_id)
    store.fail_step(run_id, "pick", BOOM, "w", attempt=1)
    store.finish_run(run_id, RunStatus.FAILED, error=BOOM)
    store.retry_run(run_id, ["pick"])
    assert store.begin_step(run_id, "pick", 1, "w", 3, task_id="S2").attempt == 2
    old = store.begin_turn(run_id, "pick", 0, 1, "w", task_id="T1")
    assert old.state == "inactive" and old.why == "conversation 0 is not 1"
    # Call messages of the old conversation find it gone too.
    assert store.begin_call(run_id, "pick", 0, 0, 0, "w", 3).state == "inactive"
    fresh = store.conversation(run_id, "pick")
    assert (fresh.conversation, fresh.turns, fresh.last) == (1, [], -1)
    # Turn 0 of the new one clears what the old one left due.
    assert store.step_state(run_id, "pick").calls_due
    assert store.begin_turn(run_id, "pick", 1, 0, "w", task_id="S2", attempt=2).state == "run"
    assert store.step_state(run_id, "pick").calls_due == {}
    assert store.conversation(run_id, "pick", 0).turns[0].kind == "tools"
    report = store.report(run_id).steps["pick"].agent
    assert report is not None and report.conversation == 1
    assert [t.kind for t in report.turns] == ["thinking"]


# -- record_turn --------------------------------------------------------------------------

def test_a_turn_recorded_after_its_run_was_cancelled_publishes_nothing(store):
    run_id = started(store)
    thinking(store, run_id, attempt=1)
    before = lease(store, run_id, "pick")
    store.cancel(run_id)
    rec = store.record_turn(run_id, "pick", 0, 0, "S", kind="tools", calls=CALLS,
                            handoff_s=600)
    assert (rec.state, rec.left, rec.active) == ("ok", 2, False)
    assert lease(store, run_id, "pick") == before  # no hop to hold the step for
    report = store.report(run_id).steps["pick"].agent
    assert report is not None
    # The step ended: its calls that never ran are shown cancelled (stored pending).
    assert [c.status for c in report.turns[0].calls] == ["cancelled", "cancelled", "refused"]
    assert [c.status for c in store.conversation(run_id, "pick").turns[0].calls] == [
        "pending", "pending", "refused"]


def test_a_record_without_a_begun_turn_is_superseded(store):
    run_id = started(store)
    assert store.record_turn(run_id, "pick", 0, 0, "S", kind="final").state == \
        "superseded"
    assert store.conversation(run_id, "pick").turns == []


# -- begin_call ---------------------------------------------------------------------------

def test_a_call_with_a_result_never_runs_again_and_says_whether_the_next_turn_began(store):
    run_id = started(store)
    tools_turn(store, run_id)
    settle(store, run_id, 0)
    done = store.begin_call(run_id, "pick", 0, 0, 0, "w", 3, task_id="again")
    assert (done.state, done.status, done.left, done.next_begun) == ("done", "succeeded", 1,
                                                                     False)
    settle(store, run_id, 1)
    done = store.begin_call(run_id, "pick", 0, 0, 1, "w", 3)
    assert (done.left, done.next_begun) == (0, False)  # publish turn 1: it never began
    thinking(store, run_id, 1, "T1")
    assert store.begin_call(run_id, "pick", 0, 0, 1, "w", 3).next_begun
    refused = store.begin_call(run_id, "pick", 0, 0, 2, "w", 3)
    assert (refused.state, refused.status) == ("done", "refused")
    assert store.begin_call(run_id, "pick", 0, 0, 7, "w", 3).why == "no call 0.7"


def test_a_running_call_is_busy_until_its_lease_lapses_then_taken_over(store):
    run_id = started(store)
    tools_turn(store, run_id)
    assert store.begin_call(run_id, "pick", 0, 0, 0, "w1", 2, task_id="C").attempt == 1
    busy = store.begin_call(run_id, "pick", 0, 0, 0, "w2", 2, task_id="D")
    assert busy.state == "busy" and float(busy.detail) > 0
    lapse(store, run_id, call_lease("pick", 0, 0))
    again = store.begin_call(run_id, "pick", 0, 0, 0, "w2", 2, task_id="D")
    assert (again.state, again.attempt) == ("run", 2)
    # Attempt 1 reports late: noted on the call, nothing else changes.
    late = store.finish_call(run_id, "pick", 0, 0, 0, attempt=1, outcome="succeeded",
                             output="old")
    assert late.state == "superseded"
    raw = json.loads(store.r.hget(RunKeys(run_id).agent, "pick|0|0|0"))
    assert [(n["attempt"], n["outcome"]) for n in raw["late"]] == [(1, "succeeded")]
    lapse(store, run_id, call_lease("pick", 0, 0))
    out = store.begin_call(run_id, "pick", 0, 0, 0, "w3", 2, task_id="E")
    assert (out.state, out.attempts) == ("exhausted", 2)
    # The engine fails it for good (no attempt number): the model reads the error.
    gave_up = store.finish_call(run_id, "pick", 0, 0, 0, outcome="failed",
                                error=ErrorRecord(type="WorkerLost", message="gone"))
    assert (gave_up.state, gave_up.left) == ("ok", 1)
    call = store.conversation(run_id, "pick").turns[0].calls[0]
    assert (call.status, call.attempts, call.error.type, call.worker) == (
        "failed", 2, "WorkerLost", "w2")


@pytest.mark.parametrize("stop", ["cancel", "pause"])
def test_a_call_of_a_stopped_run_does_not_begin(store, stop):
    run_id = started(store)
    tools_turn(store, run_id)
    if stop == "cancel":
        store.cancel(run_id)
    else:
        store.set_status(run_id, RunStatus.PAUSED, "budget", from_=[RunStatus.RUNNING])
    assert store.begin_call(run_id, "pick", 0, 0, 0, "w", 3).state == "inactive"


# -- finish_call --------------------------------------------------------------------------

def test_a_retried_call_is_pending_again_and_due_after_its_delay(store):
    run_id = started(store)
    tools_turn(store, run_id)
    assert store.begin_call(run_id, "pick", 0, 0, 1, "w", 3, task_id="C").state == "run"
    out = store.finish_call(run_id, "pick", 0, 0, 1, attempt=1, outcome="retry", error=FLAKY,
                            delay_s=40, queue="io2")
    assert out.state == "retry" and out.took is not None
    queue, due = store.step_state(run_id, "pick").calls_due["0.1"]
    assert queue == "io2" and store.now() + 35 < due <= store.now() + 40
    assert call_lease("pick", 0, 1) not in store.r.hgetall(RunKeys(run_id).leases)
    call = store.conversation(run_id, "pick").turns[0].calls[1]
    assert (call.status, call.error, call.attempts) == ("pending", FLAKY, 1)
    status, data = events(store, run_id, "agent.tool_call")[-1]
    assert (status, data["error"], data["attempt"]) == ("retrying", "TransientError: flaky", 1)
    # The same report again is not the running attempt's: superseded.
    assert store.finish_call(run_id, "pick", 0, 0, 1, attempt=1, outcome="retry",
                             error=FLAKY).state == "superseded"
    assert store.begin_call(run_id, "pick", 0, 0, 1, "w", 3, task_id="C").attempt == 2
    ok = store.finish_call(run_id, "pick", 0, 0, 1, attempt=2, outcome="succeeded", output=[])
    assert (ok.state, ok.left) == ("ok", 1)
    call = store.conversation(run_id, "pick").turns[0].calls[1]
    assert (call.output, call.error) == ([], None)
    assert store.finish_call(run_id, "pick", 0, 0, 1, attempt=2, outcome="succeeded",
                             output=[1]).state == "duplicate"
    assert store.finish_call(run_id, "pick", 0, 0, 1, outcome="failed", error=BOOM).state == \
        "duplicate"


def test_the_last_result_of_a_stopped_run_is_recorded_and_publishes_nothing(store):
    run_id = started(store)
    tools_turn(store, run_id)
    settle(store, run_id, 0)
    assert store.begin_call(run_id, "pick", 0, 0, 1, "w", 3).state == "run"
    store.cancel(run_id)
    out = store.finish_call(run_id, "pick", 0, 0, 1, attempt=1, outcome="failed", error=BOOM)
    assert out.state == "recorded"
    assert store.conversation(run_id, "pick").turns[0].calls[1].error == BOOM
    assert events(store, run_id, "agent.tool_call")[-1][0] == "failed"


def test_a_revoked_call_that_never_began_fails_and_counts(store):
    run_id = started(store)
    tools_turn(store, run_id)
    settle(store, run_id, 0)
    out = store.finish_call(run_id, "pick", 0, 0, 1, outcome="failed",
                            error=ErrorRecord(type="Revoked", message="terminated"))
    assert (out.state, out.took) == ("last", None)
    assert store.step_state(run_id, "pick").calls_due == {}
