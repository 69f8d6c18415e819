"""Plans run on real workers through a real broker; outcomes read from the run store."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from planner.engine.dispatch import step_message
from tests.integration.conftest import Engine
from tests.integration.helpers import (
    assert_dependencies_respected,
    plan,
    started_counts,
    step,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def test_weekend_getaway_example(any_engine: Engine):
    report = any_engine.run(load("weekend-getaway.json"))
    assert report.status == "succeeded", report
    summary = report.answer["summary"]
    assert summary == {"hotel": "Casa do Largo", "total_eur": 212 + 2 * 118,
                       "weather": "sunny, 22C",
                       "flight": report.steps["flights"].output}
    assert all(s.status == "succeeded" and s.attempts == 1
               for s in report.steps.values())


def test_cost_of_living_example(any_engine: Engine):
    report = any_engine.run(load("cost-of-living.json"))
    assert report.status == "succeeded", report
    steps = report.steps
    assert steps["lisbon_total"].output == 1150 + 320 + 40
    assert steps["berlin_total"].output == 1300 + 380 + 58
    assert report.answer == {"compare": pytest.approx((1738 - 1510) / 1510 * 100)}


def test_research_digest_example_retries_the_flaky_source(engine: Engine):
    report = engine.run(load("research-digest.json"))
    assert report.status == "succeeded", report
    assert report.steps["issues"].attempts == 2
    assert report.answer["titles"][1].startswith("chord body never runs")


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES.glob("*.json")} == {
        "weekend-getaway.json", "cost-of-living.json", "research-digest.json"}


def test_report_fields(engine: Engine):
    report = engine.run(plan(step("a"), step("b", deps=["a"])))
    data = report.model_dump(mode="json")
    assert set(data) >= {"run_id", "status", "answer", "steps"}
    b = data["steps"]["b"]
    assert set(b) == {"status", "output", "error", "attempts", "started_at", "finished_at",
                      "worker", "history"}
    [attempt] = b["history"]
    assert attempt["attempt"] == 1 and attempt["status"] == "succeeded"
    assert attempt["started_at"] and attempt["worker"] == b["worker"]
    assert b["started_at"].endswith("Z") and len(b["started_at"]) == len(
        "2026-01-01T00:00:00.000000Z")
    assert b["worker"].startswith("chordal-")  # chordal worker's default node name
    assert report.answer == {"b": "b"}  # no model: the sinks' outputs


def test_refs_with_paths_and_list_indexes(any_engine: Engine):
    report = any_engine.run(plan(
        step("src", value={"hotels": [{"name": "A", "tags": ["x", "y"]}, {"name": "B"}],
                           "n": 3}),
        step("picked", value={"first": {"$ref": "src.hotels.0.name"},
                              "last": {"$ref": "src.hotels.-1.name"},
                              "tag": {"$ref": "src.hotels.0.tags.1"},
                              "all": {"$ref": "src"}}),
        step("calc", "calculate", expression="n * 2", variables={"n": {"$ref": "src.n"}}),
        step("cat", "concat", items=[{"$ref": "src.hotels.0.tags"}, ["z"]]),
    ))
    assert report.status == "succeeded", report
    picked = report.steps["picked"].output
    assert picked["first"] == "A" and picked["last"] == "B" and picked["tag"] == "y"
    assert picked["all"]["n"] == 3
    assert report.steps["calc"].output == 6
    assert report.steps["cat"].output == ["x", "y", "z"]


def test_a_ref_path_missing_at_run_time_fails_the_step_clearly(engine: Engine):
    report = engine.run(plan(step("src", value={"a": 1}),
                             {**step("use", value={"$ref": "src.b"}), "on_failure": "fail"}))
    assert report.status == "failed"
    use = report.steps["use"]
    assert use.status == "failed" and use.attempts == 1
    assert "has no key 'b'" in use.error.message


def test_two_runs_at_once_do_not_see_each_others_data(any_engine: Engine):
    def p(tag: str) -> dict:
        return plan(step("a", "sleep", seconds=0.2, value=f"{tag}-a"),
                    step("b", value={"$ref": "a"}),
                    step("c", "concat", items=[{"$ref": "a"}, {"$ref": "b"}]))

    first = any_engine.client.submit(p("one"))
    second = any_engine.client.submit(p("two"))
    r1 = any_engine.client.wait(first, 30)
    r2 = any_engine.client.wait(second, 30)
    assert r1.answer == {"c": "one-aone-a"}
    assert r2.answer == {"c": "two-atwo-a"}


def test_step_context_reaches_the_tool_on_its_own_queue(engine: Engine):
    report = engine.run(plan(step("here", "where", value=1)))
    out = report.steps["here"].output
    assert out == {"run": report.run_id, "step": "here", "attempt": 1, "value": 1}
    routes = {p["id"].split(".", 2)[2]: p["queue"] for p in engine.published(report.run_id)}
    # No join message: the step's task ended the run (CHORDAL_INLINE_JOIN).
    assert routes == {"here": "probe"}


def test_a_run_needing_an_unconsumed_queue_is_reported(engine: Engine):
    missing = engine.client.missing_queues({"chordal", "orphan"})
    assert missing == {"orphan"}
    with pytest.raises(Exception, match=r"no worker consumes queue\(s\) orphan"):
        engine.client.require_workers(plan(step("x", "orphan", value=1)))


def test_redelivered_message_of_a_succeeded_step_does_not_run_it_again(engine: Engine):
    report = engine.run(plan(step("a"), step("b", value={"$ref": "a"})))
    run_id = report.run_id
    compiled = engine.client.compile(plan(step("a"), step("b", value={"$ref": "a"})))
    # Deliver both steps' messages again, as the broker does after a lost ack.
    for sid in ("a", "b"):
        engine.client.runtime.publish([step_message(compiled, run_id, 1, sid)])
    time.sleep(1.5)
    again = engine.client.report(run_id)
    events = engine.events(run_id)
    assert started_counts(events) == {"a": 1, "b": 1}
    assert [e.step for e in events if e.type == "step.finished"] == ["a", "b"]
    assert again.steps["a"].attempts == 1
    assert_dependencies_respected(engine.client.store, run_id, {"a": set(), "b": {"a"}})
