"""The run store's transitions, one script at a time, against a real Redis (no workers)."""

from __future__ import annotations

import json

import pytest

from planner.errors import Conflict, RunNotFound
from planner.language.plan import Plan
from planner.store import scripts
from planner.store.keys import RUN_INDEX, RunKeys
from planner.store.records import ErrorRecord, PlanVersion, RunEvent, RunOptions, RunReport
from planner.store.runs import Begin, Finish, Install
from tests.store.conftest import BOOM, DIAMOND, done, plan, running


def test_create_run_with_a_plan(store):
    p = plan()
    run_id = store.create_run("g", p)
    run = store.run_state(run_id)
    assert (run.status, run.goal, run.version, run.remaining) == ("pending", "g", 1, 4)
    assert run.created_at is not None and run.finished_at is None
    assert store.r.hgetall(RunKeys(run_id).deps) == {"a": "0", "b": "1", "c": "1", "d": "2"}
    assert store.r.zscore(RUN_INDEX, run_id) is not None
    assert store.plan(run_id, 1) == p
    assert {s: st.status for s, st in store.step_states(run_id).items()} == dict.fromkeys(
        "abcd", "pending")
    assert [(e.type, e.status) for e in store.events(run_id)] == [
        ("run.created", "pending"), ("plan.installed", "pending")]
    assert store.versions(run_id) == [PlanVersion(version=1, reason="planned",
                                                  added=list("abcd"))]


def test_create_run_without_a_plan(store):
    run_id = store.create_run("just a goal")
    assert store.run_state(run_id).version == 0
    assert not store.r.exists(RunKeys(run_id).plans)
    assert store.versions(run_id) == [] and store.unhandled(run_id) == []
    report = store.report(run_id)
    assert (report.plan, report.steps, report.goal) == (None, {}, "just a goal")
    assert store.options(run_id) == RunOptions()


def test_a_taken_run_id_conflicts_and_leaves_the_first_run_and_its_options(store):
    opts = RunOptions(roles={"planner": {"model": "m"}}, budget_tokens=10, budget_usd=0.25)
    run_id = store.create_run("first", plan(), run_id="mine", options=opts)
    with pytest.raises(Conflict):
        store.create_run("second", plan([("z", [])]), run_id="mine", options=RunOptions())
    run = store.run_state(run_id)
    assert (run_id, run.goal, run.version, run.remaining) == ("mine", "first", 1, 4)
    assert store.plan(run_id, 1) == plan()
    assert store.options(run_id) == opts.model_copy(update={"from_plan": True})
    assert "z" not in store.step_states(run_id)


def test_start_run_once(store):
    run_id = store.create_run("g", plan())
    assert store.start_run(run_id) is True
    assert store.start_run(run_id) is False
    assert store.run_state(run_id).status == "running"
    assert [e.type for e in store.events(run_id)] == ["run.created", "plan.installed",
                                                      "run.started"]
    assert store.start_run("missing") is False


def test_begin_step_counts_attempts(store):
    run_id = running(store)
    # The message's version need not be the current one: the step runs as version 1 has it.
    begins = [store.begin_step(run_id, "a", v, f"w{v}", 3, lease_s=0) for v in (1, 2)]
    assert [(b.state, b.attempt, b.version) for b in begins] == [("run", 1, 1), ("run", 2, 1)]
    st = store.step_state(run_id, "a")
    assert (st.status, st.attempts, st.worker) == ("running", 2, "w2")
    assert st.started_at is not None and st.started_at <= st.attempt_started_at
    started = [e for e in store.events(run_id) if e.type == "step.started"]
    assert [(e.step, e.data) for e in started] == [("a", 1), ("a", 2)]


def test_begin_step_is_inactive_unless_the_run_runs_and_holds_the_step(store):
    run_id = store.create_run("g", plan())
    begin = store.begin_step(run_id, "a", 1, "w", 3)
    assert (begin.state, begin.detail, begin.version) == ("inactive", "pending", 0)
    store.start_run(run_id)
    begin = store.begin_step(run_id, "z", 1, "w", 3)
    assert (begin.state, begin.detail) == ("inactive", "not in plan version 1")
    assert store.set_ending(run_id, BOOM) is True
    assert store.set_ending(run_id, ErrorRecord(type="X", message="second")) is False
    assert store.run_state(run_id).ending == BOOM
    assert store.begin_step(run_id, "a", 1, "w", 3) == Begin("inactive", "running")
    store.cancel(run_id)
    assert store.run_state(run_id).ending is None  # finish_run clears it
    assert store.begin_step(run_id, "a", 1, "w", 3).detail == "cancelled"
    assert store.begin_step("missing", "a", 1, "w", 3).detail == "missing"
    assert store.step_state(run_id, "a").attempts == 0
    assert "z" not in store.step_states(run_id)


def test_begin_step_done_and_exhausted(store):
    run_id = running(store, plan([*DIAMOND, ("e", [])]))
    done(store, run_id, "a")
    begin = store.begin_step(run_id, "a", 1, "w", 3)
    assert (begin.state, begin.detail, begin.version) == ("done", "succeeded", 1)
    assert store.step_state(run_id, "a").attempts == 1
    assert [store.begin_step(run_id, "b", 1, "w", 2, lease_s=0).state for _ in range(4)] == [
        "run", "run", "exhausted", "exhausted"]
    assert store.begin_step(run_id, "c", 1, "w", 1, lease_s=0).attempt == 1
    assert store.begin_step(run_id, "c", 1, "w", 1).detail == "1"  # attempts made
    assert store.begin_step(run_id, "e", 1, "w", 0).state == "exhausted"
    assert [e.data for e in store.events(run_id) if e.step == "b"] == [1, 2]
    # d waits for b and c: not begun, not counted.
    assert store.begin_step(run_id, "d", 1, "w", 3) == Begin("waiting", "", 1)
    assert store.step_state(run_id, "d").attempts == 0


@pytest.mark.parametrize("order", [("b", "c"), ("c", "b")])
def test_finish_step_counts_down_a_diamond(store, order):
    run_id = running(store)
    first = done(store, run_id, "a", output={"n": 1})
    assert first == Finish("ok", 3, ("b", "c"), 1)
    assert done(store, run_id, order[0]).ready == ()
    second = done(store, run_id, order[1])
    assert (second.remaining, second.ready, second.version) == (1, ("d",), 1)
    assert (done(store, run_id, "d").remaining, store.run_state(run_id).remaining) == (0, 0)
    assert store.outputs(run_id, ["a", "b", "d", "x"]) == {"a": {"n": 1}, "b": "B", "d": "D"}
    assert store.completed(run_id) == ["a", "b", "c", "d"]
    assert set(store.r.hvals(RunKeys(run_id).deps)) == {"0"}


def test_a_duplicate_finish_changes_nothing(store):
    run_id = running(store)
    done(store, run_id, "a", output=1)
    before = store.step_state(run_id, "a")
    dup = store.finish_step(run_id, "a", output=2, worker="w2")
    assert (dup.state, dup.ready) == ("duplicate", ())
    assert store.outputs(run_id, ["a"]) == {"a": 1}
    assert store.step_state(run_id, "a") == before
    assert store.r.hgetall(RunKeys(run_id).deps) == {"a": "0", "b": "0", "c": "0", "d": "2"}
    assert store.run_state(run_id).remaining == 3
    assert [e.type for e in store.events(run_id)].count("step.finished") == 1


def test_a_finish_after_cancel_is_inactive_but_recorded(store):
    run_id = running(store)
    store.begin_step(run_id, "a", 1, "w", 3)
    assert store.cancel(run_id)
    # The run abandoned its steps: running or not started, they read 'cancelled'.
    assert {s: st.status for s, st in store.step_states(run_id).items()} == dict.fromkeys(
        "abcd", "cancelled")
    assert store.finish_step(run_id, "a", output=[1], worker="w").state == "inactive"
    assert store.outputs(run_id, ["a"]) == {"a": [1]}
    assert store.step_state(run_id, "a").status == "succeeded"
    assert store.run_state(run_id).status == "cancelled"
    assert store.begin_step(run_id, "b", 1, "w", 3).state == "inactive"
    assert store.step_state(run_id, "b").status == "cancelled"


def test_a_skip_records_the_error(store):
    run_id = running(store)
    skip = store.finish_step(run_id, "a", output=None, worker="w", skipped_error=BOOM)
    assert skip.ready == ("b", "c")
    st = store.step_state(run_id, "a")
    assert (st.status, st.error, st.finished_at is not None) == ("skipped", BOOM, True)
    assert store.completed(run_id) == []
    assert store.events(run_id)[-1].data == BOOM.model_dump(mode="json")


def test_fail_step_once(store):
    run_id = running(store)
    store.begin_step(run_id, "a", 1, "w", 3)
    late = ErrorRecord(type="X", message="late")
    assert store.fail_step(run_id, "a", BOOM, "w1") is True
    assert store.fail_step(run_id, "a", late, "w2") is False
    st = store.step_state(run_id, "a")
    assert (st.status, st.error, st.worker) == ("failed", BOOM, "w1")
    assert store.finish_step(run_id, "a", output=1, worker="w").state == "duplicate"
    assert store.outputs(run_id, ["a"]) == {}
    assert store.r.hget(RunKeys(run_id).deps, "b") == "1"
    assert store.record_retry(run_id, "a", late) is False
    assert store.step_state(run_id, "a") == st
    assert store.begin_step(run_id, "a", 1, "w", 3).detail == "failed"


def test_record_retry_puts_the_step_back_to_pending(store):
    run_id = running(store)
    store.begin_step(run_id, "a", 1, "w", 3)
    err = ErrorRecord(type="TransientError", message="flaky", transient=True, attempt=1)
    assert store.record_retry(run_id, "a", err) is True
    st = store.step_state(run_id, "a")
    assert (st.status, st.error, st.attempts) == ("pending", err, 1)
    last = store.events(run_id)[-1]
    assert (last.type, last.step, last.status, last.data) == (
        "step.retrying", "a", "pending", err.model_dump(mode="json"))
    assert store.begin_step(run_id, "a", 1, "w", 3).attempt == 2


def test_finish_run_once_and_rearms_retention(store):
    run_id = running(store)
    done(store, run_id, "a")
    store.begin_step(run_id, "b", 1, "w", 3)
    assert store.fail_step(run_id, "b", BOOM, "w") and store.flag_failure(run_id, "b")
    assert store.claim(run_id, "replan:1", "a") and not store.claim(run_id, "replan:1", "b")
    store.record_usage(run_id, "planner", "m", None, {"input_tokens": 3})
    store.record_exchange(run_id, {"role": "planner", "turn": 0, "prompt": "p", "content": []})
    store.take_leases(run_id, ["@join"], 30)  # b's lease went with its outcome
    store.begin_step(run_id, "c", 1, "w", 3)
    assert store.begin_turn(run_id, "c", 0, 0, "w").state == "run"  # an agent's turn
    keys = [k for k in RunKeys(run_id).all() if store.r.exists(k)]
    assert len(keys) == len(RunKeys(run_id).all())
    for key in keys:
        store.r.persist(key)
    assert store.finish_run(run_id, "succeeded", answer={"x": [1, 2]}) is True
    assert all(0 < store.r.ttl(k) <= store.retention_s for k in keys)
    first = store.run_state(run_id)
    assert (first.status, first.answer, first.error) == ("succeeded", {"x": [1, 2]}, None)
    assert store.finish_run(run_id, "failed", error=BOOM) is False
    assert store.run_state(run_id) == first
    assert [e.type for e in store.events(run_id)].count("run.finished") == 1


def test_cancel(store):
    pending = store.create_run("g", plan())
    assert store.cancel(pending) is True
    run = store.run_state(pending)
    assert (run.status, run.error.type, run.finished_at is not None) == (
        "cancelled", "Cancelled", True)
    assert (run.partial, run.answer) == (False, None)
    assert {st.status for st in store.step_states(pending).values()} == {"cancelled"}
    assert store.cancel(pending) is False
    with pytest.raises(RunNotFound):
        store.cancel("missing")


def test_ready_unstarted_and_mark_dispatched(store):
    run_id = running(store)
    assert store.ready_unstarted(run_id) == ["a"]
    done(store, run_id, "a")
    assert store.ready_unstarted(run_id, ["a", "b", "c", "d"]) == ["b", "c"]
    assert store.ready_unstarted(run_id) == ["b", "c"]  # every step of the version
    assert store.ready_unstarted(run_id, ["c", "b"]) == ["c", "b"]
    store.mark_dispatched(run_id, ["b"])
    store.mark_dispatched(run_id, [])
    assert store.step_state(run_id, "b").dispatched
    assert store.ready_unstarted(run_id, list("abcd")) == ["c"]
    store.begin_step(run_id, "c", 1, "w", 3)
    assert store.ready_unstarted(run_id, list("abcd")) == store.ready_unstarted(run_id) == []
    assert store.ready_unstarted(run_id, []) == []


def test_events_are_typed_ordered_and_resumable(store):
    run_id = running(store)
    done(store, run_id, "a")
    store.finish_run(run_id, "failed", error=BOOM)
    events = store.events(run_id)
    assert all(isinstance(e, RunEvent) and e.at is not None for e in events)
    assert [(e.type, e.step, e.status) for e in events] == [
        ("run.created", None, "pending"), ("plan.installed", None, "pending"),
        ("run.started", None, "running"),
        ("step.started", "a", "running"), ("step.finished", "a", "succeeded"),
        ("run.finished", None, "failed")]
    assert events[-1].data == BOOM.model_dump(mode="json")
    ids = [tuple(int(p) for p in e.id.split("-")) for e in events]
    assert ids == sorted(set(ids))
    assert store.events(run_id, after=events[2].id) == events[3:]
    assert store.events(run_id, after=events[-1].id) == []
    assert store.events(run_id, count=2) == events[:2]


def test_report_json_keeps_its_field_names(store):
    run_id = running(store, plan([("a", []), ("b", ["a"])]))
    done(store, run_id, "a", output={"v": 1})
    store.begin_step(run_id, "b", 1, "w", 3)
    store.fail_step(run_id, "b", BOOM, "w")
    store.finish_run(run_id, "failed", answer={"partial": {"a": {"v": 1}}}, error=BOOM,
                     partial=True)
    report = store.report(run_id)
    data = report.model_dump(mode="json")
    assert list(data) == ["run_id", "status", "goal", "answer", "error", "plan_version",
                          "created_at", "finished_at", "steps", "plan", "usage", "partial",
                          "reason", "versions", "replans"]
    assert (data["run_id"], data["status"], data["answer"], data["plan_version"]) == (
        run_id, "failed", {"partial": {"a": {"v": 1}}}, 1)
    assert (data["partial"], data["reason"], data["replans"]) == (True, None, 0)
    assert data["versions"] == [{"version": 1, "reason": "planned", "failed": [],
                                 "added": ["a", "b"], "kept": [], "dropped": []}]
    assert data["created_at"].endswith("Z") and data["finished_at"].endswith("Z")
    a, b = data["steps"]["a"], data["steps"]["b"]
    assert (a["status"], a["output"], a["attempts"], a["worker"]) == (
        "succeeded", {"v": 1}, 1, "w")
    assert a["started_at"].endswith("Z") and a["finished_at"].endswith("Z")
    assert b["error"] == {"type": "PermanentError", "message": "boom", "attempt": 1}
    assert data["plan"]["steps"][1]["depends_on"] == ["a"]
    assert RunReport.model_validate(data) == report


def test_install_plan_once_and_a_second_version(store):
    p1 = plan()
    run_id = running(store, p1)
    assert store.install_plan(run_id, 1, p1) == Install("stale")
    done(store, run_id, "a", output="A")
    done(store, run_id, "b", output="B")
    store.begin_step(run_id, "c", 1, "w", 3, lease_s=0)
    kept_b, kept_c = store.step_state(run_id, "b"), store.step_state(run_id, "c")
    p2 = plan([("a", []), ("b", ["a"]), ("c", ["a"]), ("e", ["b", "c"])])
    assert store.install_plan(run_id, 2, p2) == Install("ok", 2, ())
    assert store.install_plan(run_id, 2, p2).state == "stale"
    run = store.run_state(run_id)
    assert (run.version, run.remaining) == (2, 2)
    # Shared steps keep their state and output: b finished, c still running (not reset).
    assert store.step_state(run_id, "b") == kept_b and store.step_state(run_id, "c") == kept_c
    assert store.outputs(run_id, ["a", "b"]) == {"a": "A", "b": "B"}
    assert store.r.hgetall(RunKeys(run_id).deps) == {"a": "0", "b": "0", "c": "0", "e": "1"}
    assert store.plan(run_id, 2) == p2 and store.plan(run_id, 1) == p1
    assert store.step_state(run_id, "d").status == "replaced"
    # Its late message is refused: no current version holds it.
    assert store.begin_step(run_id, "d", 1, "w", 3) == Begin(
        "inactive", "not in plan version 2")
    assert store.step_state(run_id, "d").attempts == 0
    # c's old message runs it as version 2 defines it; its finish unlocks e there.
    assert store.begin_step(run_id, "c", 1, "w", 3) == Begin("run", "2", 2)
    assert store.finish_step(run_id, "c", output="C", worker="w") == Finish("ok", 1, ("e",), 2)


def test_the_events_length_is_an_argument_not_script_text():
    for name in scripts.RUN_SCRIPTS:
        text = scripts.source(name)
        assert "100000" not in text and "100_000" not in text
        assert "ARGV[1]" in text
        for helper in ("local function now()", "local function is_final(",
                       "local function event("):
            assert text.count(helper) == 1, (name, helper)
    assert "local function" not in scripts.source("acquire_call")


def test_late_messages_of_an_expired_run_recreate_nothing(store):
    plan = Plan.model_validate({"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": 1}}]})
    run_id = store.create_run("g", plan)
    store.start_run(run_id)
    store.begin_step(run_id, "a", 1, "w", 3)
    store.r.delete(*RunKeys(run_id).all())  # its retention ran out
    error = ErrorRecord(type="X", message="late")
    assert store.finish_step(run_id, "a", output=1, worker="w").state == "inactive"
    assert store.fail_step(run_id, "a", error, "w") is False
    assert store.record_retry(run_id, "a", error) is False
    assert not [k for k in RunKeys(run_id).all() if store.r.exists(k)]


def test_an_exhausted_begin_does_not_count_as_an_attempt(store):
    plan = Plan.model_validate({"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": 1}}]})
    run_id = store.create_run("g", plan)
    store.start_run(run_id)
    for _ in range(2):
        assert store.begin_step(run_id, "a", 1, "w", 2, lease_s=0).state == "run"
    for _ in range(3):
        begin = store.begin_step(run_id, "a", 1, "w", 2)
        assert (begin.state, begin.detail) == ("exhausted", "2")
    assert store.step_state(run_id, "a").attempts == 2


def test_options_written_by_a_newer_release_still_read(store):
    """During a rolling upgrade an older process reads runs a newer one recorded: a field
    it does not know is ignored, not a failure to read the run."""
    from planner.store.keys import RunKeys

    run_id = store.create_run("g", plan(), options=RunOptions(budget_tokens=10))
    raw = json.loads(store.r.hget(RunKeys(run_id).run, "options"))
    store.r.hset(RunKeys(run_id).run, "options", json.dumps({**raw, "from_the_future": 1}))
    assert store.options(run_id).budget_tokens == 10
    assert store.owner(run_id) is None
