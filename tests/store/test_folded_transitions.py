"""Transitions folded into one call (#20): ``begin_step`` reads the step's inputs, and
``finish_step`` notes the dependents it made ready as dispatched, as the separate calls
(``outputs``, ``mark_dispatched``) would."""

from __future__ import annotations

from planner.store.runs import RunStore
from tests.store.conftest import done, plan, running


def test_begin_step_reads_the_inputs_asked_for(store: RunStore) -> None:
    run_id = running(store)
    done(store, run_id, "a", {"x": [1, 2]})
    begin = store.begin_step(run_id, "b", 1, "w", 3, reads=["a", "c"])
    assert begin.state == "run" and begin.attempt == 1
    assert begin.inputs == store.outputs(run_id, ["a", "c"]) == {"a": {"x": [1, 2]}}
    # Not run: nothing read.
    assert store.begin_step(run_id, "a", 1, "w", 3, reads=["a"]).inputs == {}


def test_a_finish_notes_its_ready_dependents_as_dispatched(store: RunStore) -> None:
    run_id = running(store)
    store.begin_step(run_id, "a", 1, "w", 3)
    finish = store.finish_step(run_id, "a", output=1, worker="w", attempt=1,
                               dispatching={"b": "q1", "c": ""})
    assert finish.state == "ok" and finish.ready == ("b", "c") and finish.noted
    states = store.step_states(run_id)
    assert states["b"].dispatched and states["c"].dispatched and not states["d"].dispatched
    assert states["b"].task == f"{run_id}.1.b"
    raw = store.r.hgetall(f"chordal:run:{{{run_id}}}:steps")
    assert raw["b.queue"] == "q1" and "c.queue" not in raw
    # Noted to be published, not published: the finish's own recovery publishes them
    # again (noted=True); anyone else (a paused run going on, a new plan version) takes
    # their messages as on their way.
    assert raw["b.dispatched"] == "p"
    assert store.ready_unstarted(run_id, noted=True) == ["b", "c"]
    assert store.ready_unstarted(run_id) == []
    store.mark_dispatched(run_id, ["b"])
    assert store.ready_unstarted(run_id, noted=True) == ["c"]


def test_a_finish_without_dispatching_notes_nothing(store: RunStore) -> None:
    run_id = running(store)
    finish = done(store, run_id, "a")
    assert finish.ready == ("b", "c") and not finish.noted
    assert not store.step_state(run_id, "b").dispatched


def test_a_new_plan_version_does_not_publish_again_a_step_a_finish_is_publishing(
        store: RunStore) -> None:
    # a -> b, and c. a's finish notes b 'p' (its message on its way); a plan version
    # installed before b starts must not list b as ready to publish again (a duplicate
    # whose recover() would republish b's own 'p' dependents, and so on down the plan).
    run_id = running(store, plan([("a", []), ("b", ["a"]), ("c", [])]))
    store.begin_step(run_id, "a", 1, "w", 3)
    store.finish_step(run_id, "a", output=1, worker="w", attempt=1, dispatching={"b": ""})
    installed = store.install_plan(run_id, 2, plan([("a", []), ("b", ["a"]), ("c", []),
                                                    ("x", [])]), reason="replan")
    assert "b" not in installed.ready and "x" in installed.ready
