"""Plan versions in the run store (replanning, human edits), against a real Redis: what
``install_plan`` builds from the step states of its moment, what becomes of the old
version's steps, and the transitions that come with versions (failures waiting for a
replan, waiting steps and runs, the end of a run)."""

from __future__ import annotations

import json
import threading
from typing import Any

from planner.store.keys import RunKeys
from planner.store.records import ErrorRecord, PlanVersion
from planner.store.runs import Begin, Finish, Install, RunStore
from tests import redis_server
from tests.store.conftest import BOOM, DB, done, plan, running


def statuses(store: RunStore, run_id: str) -> dict[str, str]:
    return {sid: st.status for sid, st in sorted(store.step_states(run_id).items())}


def failed(store: RunStore, run_id: str, sid: str) -> None:
    assert store.begin_step(run_id, sid, 1, "w", 3).state == "run"
    assert store.fail_step(run_id, sid, BOOM, "w")


def snapshot(store: RunStore, run_id: str) -> dict[str, Any]:
    """Everything a run holds in Redis (events by count)."""
    k = RunKeys(run_id)
    hashes = {key: store.r.hgetall(key) for key in
              (k.run, k.steps, k.outputs, k.deps, k.dependents, k.plans, k.versions)}
    return {**hashes, "unhandled": store.r.smembers(k.unhandled),
            "events": store.r.xlen(k.events)}


def test_install_counts_from_the_step_states_at_install(store):
    run_id = running(store)
    done(store, run_id, "a")
    store.mark_dispatched(run_id, ["b", "c"])
    store.begin_step(run_id, "b", 1, "w", 3)
    # The replanner saw b running; b finished before the new version was installed.
    assert store.finish_step(run_id, "b", output="B", worker="w") == Finish("ok", 2, (), 1)
    p2 = plan([("a", []), ("b", ["a"]), ("c", ["a"]), ("e", ["b", "c"]), ("f", ["b"])])
    # b counts as finished: c, e and f remain; f is ready at once; c was published already.
    assert store.install_plan(run_id, 2, p2, reason="replan") == Install("ok", 3, ("f",))
    assert store.r.hgetall(RunKeys(run_id).deps) == {
        "a": "0", "b": "0", "c": "0", "e": "1", "f": "0"}
    assert store.run_state(run_id).remaining == 3
    assert statuses(store, run_id) == {"a": "succeeded", "b": "succeeded", "c": "pending",
                                       "d": "replaced", "e": "pending", "f": "pending"}
    assert store.step_state(run_id, "e").attempts == 0
    assert store.ready_unstarted(run_id) == ["f"]
    assert done(store, run_id, "c") == Finish("ok", 2, ("e",), 2)


def test_a_v1_step_finishing_after_v2_counts_down_v2_edges(store):
    run_id = running(store)  # a -> b, c -> d
    done(store, run_id, "a")
    store.begin_step(run_id, "b", 1, "w", 3)
    p2 = plan([("a", []), ("b", ["a"]), ("c", ["a"]), ("x", ["b"])])
    assert store.install_plan(run_id, 2, p2) == Install("ok", 3, ("c",))
    k = RunKeys(run_id)
    assert {up: json.loads(downs) for up, downs in store.r.hgetall(k.dependents).items()} \
        == {"a": ["b", "c"], "b": ["x"]}
    assert not store.r.hexists(k.deps, "d")
    # b began under version 1, where d waited for it; version 2 gives it x instead.
    assert store.finish_step(run_id, "b", output="B", worker="w") == Finish(
        "ok", 2, ("x",), 2)
    assert store.r.hgetall(k.deps) == {"a": "0", "b": "0", "c": "0", "x": "0"}
    assert store.step_state(run_id, "d").status == "replaced"
    assert store.begin_step(run_id, "x", 1, "w", 3) == Begin("run", "1", 2)


def test_dropped_steps_that_never_started_are_replaced_and_refused(store):
    run_id = running(store, plan([("a", []), ("b", ["a"]), ("c", [])]))
    store.mark_dispatched(run_id, ["a", "c"])  # c's message is on its way
    done(store, run_id, "a")
    assert store.install_plan(run_id, 2, plan([("a", []), ("n", ["a"])])).state == "ok"
    for sid in ("b", "c"):
        st = store.step_state(run_id, sid)
        assert (st.status, st.attempts, st.finished_at is not None) == ("replaced", 0, True)
    assert store.begin_step(run_id, "c", 1, "w", 3).state == "inactive"
    assert store.finish_step(run_id, "c", output="late", worker="w").state == "duplicate"
    assert store.fail_step(run_id, "c", BOOM, "w") is False
    assert store.record_retry(run_id, "c", BOOM) is False
    assert store.outputs(run_id, ["c"]) == {}
    st = store.step_state(run_id, "c")
    assert (st.status, st.attempts) == ("replaced", 0)
    report = store.report(run_id)
    assert list(report.steps) == ["a", "b", "c", "n"]
    assert [report.steps[s].status for s in "bc"] == ["replaced", "replaced"]


def test_a_started_step_left_out_keeps_going_and_finishes_detached(store):
    run_id = running(store, plan([("a", []), ("b", []), ("c", [])]))
    store.begin_step(run_id, "a", 1, "w", 3)
    store.begin_step(run_id, "b", 1, "w", 3)
    assert store.record_retry(run_id, "b", BOOM)  # waiting for its retry: started
    assert store.install_plan(run_id, 2, plan([("c", []), ("n", ["c"])])) == Install(
        "ok", 2, ("c",))
    assert statuses(store, run_id) == {"a": "running", "b": "pending", "c": "pending",
                                       "n": "pending"}
    assert store.versions(run_id)[1].dropped == ["a", "b"]
    before = store.r.hgetall(RunKeys(run_id).deps)
    assert store.finish_step(run_id, "a", output="A", worker="w") == Finish("detached")
    assert (store.step_state(run_id, "a").status, store.outputs(run_id, ["a"])) == (
        "succeeded", {"a": "A"})
    assert store.r.hgetall(RunKeys(run_id).deps) == before
    assert store.run_state(run_id).remaining == 2
    assert store.begin_step(run_id, "b", 1, "w", 3) == Begin(
        "inactive", "not in plan version 2")
    assert store.step_state(run_id, "b").attempts == 1


def test_an_install_at_a_wrong_version_is_stale_and_changes_nothing(store):
    run_id = running(store)
    done(store, run_id, "a")
    assert store.install_plan(run_id, 2, plan([("a", []), ("x", ["a"])])).state == "ok"
    before = snapshot(store, run_id)
    other = plan([("z", [])])
    assert store.install_plan(run_id, 2, other, reason="replan") == Install("stale")
    assert store.install_plan(run_id, 1, other) == Install("stale")
    assert snapshot(store, run_id) == before
    assert store.run_state(run_id).version == 2 and store.plan(run_id, 2).steps[1].id == "x"
    assert store.cancel(run_id)
    ended = snapshot(store, run_id)
    assert store.install_plan(run_id, 3, other) == Install("inactive")
    assert snapshot(store, run_id) == ended


def test_the_version_record_and_the_plan_installed_event(store):
    run_id = running(store)
    done(store, run_id, "a")
    failed(store, run_id, "b")
    assert store.flag_failure(run_id, "b")
    p2 = plan([("a", []), ("c", ["a"]), ("x", ["a"])])
    assert store.install_plan(run_id, 2, p2, reason="replan", failed=["b"]).state == "ok"
    v1 = PlanVersion(version=1, reason="planned", added=["a", "b", "c", "d"])
    v2 = PlanVersion(version=2, reason="replan", failed=["b"], added=["x"], kept=["a", "c"],
                     dropped=["b", "d"])
    assert store.versions(run_id) == [v1, v2]
    installed = [e for e in store.events(run_id) if e.type == "plan.installed"]
    assert [(e.status, e.data) for e in installed] == [
        ("pending", v1.model_dump(mode="json")), ("running", v2.model_dump(mode="json"))]
    report = store.report(run_id)
    assert (report.plan_version, report.plan, report.versions, report.replans) == (
        2, p2, [v1, v2], 1)
    assert list(report.steps) == ["a", "b", "c", "d", "x"]
    assert [report.steps[s].status for s in "bd"] == ["failed", "replaced"]


def test_flag_failure_and_the_failures_an_install_handles(store):
    run_id = running(store, plan([("a", []), ("b", []), ("c", []), ("d", []), ("e", ["a"])]))
    for sid in "acd":
        failed(store, run_id, sid)
    assert [store.flag_failure(run_id, s) for s in ("a", "c", "d", "d")] == [True] * 4
    # Only failed steps of the current version are noted.
    assert store.flag_failure(run_id, "b") is False  # pending
    assert store.flag_failure(run_id, "zz") is False  # in no version
    assert store.unhandled(run_id) == ["a", "c", "d"]
    p2 = plan([("a", []), ("c", []), ("n", [])])
    assert store.install_plan(run_id, 2, p2, reason="replan", failed=["a"]).state == "ok"
    # a: handled by this version; d: left out, so moot; c: still waits for a replan.
    assert store.unhandled(run_id) == ["c"]
    assert store.flag_failure(run_id, "d") is False
    assert store.flag_failure(run_id, "b") is False  # replaced
    assert store.unhandled(run_id) == ["c"]


def test_begin_step_waits_for_the_new_dependencies_of_a_relisted_step(store):
    run_id = running(store, plan([("a", []), ("b", []), ("r", [])]))
    store.mark_dispatched(run_id, ["a", "b", "r"])
    store.begin_step(run_id, "r", 1, "w", 3, lease_s=0)  # its worker dies
    p2 = plan([("a", []), ("n", []), ("m", []), ("b", ["n"]), ("r", ["m"])])
    assert store.install_plan(run_id, 2, p2) == Install("ok", 5, ("m", "n"))
    # A step that started already is not held back (its lost worker's redelivery runs).
    assert store.begin_step(run_id, "r", 1, "w", 3) == Begin("run", "2", 2)
    assert store.finish_step(run_id, "r", output="R", worker="w") == Finish("ok", 4, (), 2)
    assert not store.step_state(run_id, "b").dispatched  # whoever unlocks it publishes it
    store.mark_dispatched(run_id, ["b"])  # say it was published again anyway
    # b's version-1 message arrives: not ready in version 2.
    assert store.begin_step(run_id, "b", 1, "w", 3) == Begin("waiting", "", 2)
    st = store.step_state(run_id, "b")
    assert (st.status, st.attempts, st.dispatched) == ("pending", 0, False)
    assert store.ready_unstarted(run_id) == ["m", "n"]
    assert done(store, run_id, "n") == Finish("ok", 3, ("b",), 2)
    assert store.begin_step(run_id, "b", 1, "w", 3) == Begin("run", "1", 2)


def test_set_status_moves_only_from_the_given_statuses(store):
    run_id = running(store)
    store.mark_dispatched(run_id, ["a"])
    assert store.set_status(run_id, "paused", "no", from_=("pending", "awaiting_approval")) \
        is False
    assert store.run_state(run_id).status == "running"
    assert store.set_status(run_id, "paused", "budget spent", from_=("running",)) is True
    assert store.set_status(run_id, "paused", "again", from_=("running",)) is False
    run = store.run_state(run_id)
    assert (run.status, run.reason, store.report(run_id).reason) == (
        "paused", "budget spent", "budget spent")
    last = store.events(run_id)[-1]
    assert (last.type, last.status, last.data) == ("run.paused", "paused", "budget spent")
    # A delivery while paused does not begin; it is sent again when the run goes on.
    assert store.begin_step(run_id, "a", 1, "w", 3) == Begin("inactive", "paused")
    st = store.step_state(run_id, "a")
    assert (st.status, st.attempts, st.dispatched) == ("pending", 0, False)
    assert store.set_status(run_id, "running", "resumed", from_=("paused",)) is True
    assert (store.run_state(run_id).status, store.report(run_id).reason) == ("running", None)
    assert store.finish_run(run_id, "cancelled")
    assert store.set_status(run_id, "running", "x", from_=("paused", "running")) is False
    assert store.run_state(run_id).status == "cancelled"


def test_finish_run_cancels_the_steps_it_abandons_and_late_results_are_recorded(store):
    run_id = running(store, plan([("a", []), ("b", ["a"]), ("c", []), ("d", ["b"]),
                                  ("e", [])]))
    done(store, run_id, "a")
    store.begin_step(run_id, "b", 1, "w", 3)
    failed(store, run_id, "c")
    ending = ErrorRecord(type="ReplanLimit", message="no more replans")
    assert store.finish_run(run_id, "failed", answer={"partial": {"a": "A"}}, error=ending,
                            partial=True)
    assert statuses(store, run_id) == {"a": "succeeded", "b": "cancelled", "c": "failed",
                                       "d": "cancelled", "e": "cancelled"}
    assert all(store.step_state(run_id, s).finished_at is not None for s in "bde")
    run = store.run_state(run_id)
    assert (run.status, run.partial, run.answer, run.error) == (
        "failed", True, {"partial": {"a": "A"}}, ending)
    # cancelled is not final: b's late result is still recorded (the run stays over).
    assert store.finish_step(run_id, "b", output="B", worker="w") == Finish("inactive")
    assert (store.step_state(run_id, "b").status, store.outputs(run_id, ["b"])) == (
        "succeeded", {"b": "B"})
    assert store.record_retry(run_id, "e", BOOM) is False
    assert statuses(store, run_id)["d"] == statuses(store, run_id)["e"] == "cancelled"
    assert store.run_state(run_id).status == "failed"


def test_a_report_is_one_instant_while_plans_are_installed(store):
    """A report read while the replanner installs versions never mixes two moments: its
    plan_version is its last version's (the live view once ended on "plan v1 (1 replan)",
    a version read before an install beside the versions read after it)."""
    run_id = running(store)
    installer = RunStore.from_url(redis_server.url(DB))  # a client of its own, as a worker's
    stop = threading.Event()

    def install() -> None:
        for version in range(2, 400):
            if stop.is_set():
                return
            assert installer.install_plan(run_id, version, plan(), reason="replan").state \
                == "ok"

    thread = threading.Thread(target=install)
    thread.start()
    torn = []
    try:
        while thread.is_alive():
            report = store.report(run_id)
            if report.versions[-1].version != report.plan_version \
                    or report.replans != report.plan_version - 1:
                torn.append((report.plan_version, len(report.versions), report.replans))
    finally:
        stop.set()
        thread.join()
    assert torn == []
