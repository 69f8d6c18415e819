"""The metrics a real prefork worker serves after real runs, scraped over HTTP: exact
counts where the runs make them deterministic, bounded labels, and a queue depth that sees
what waits in the broker and what a worker holds on a retry's countdown."""

from __future__ import annotations

from typing import Any

import pytest

from planner import RunOptions
from planner.client import Client
from planner.settings import DEFAULT_PRICES, FAST_MODEL, STRONG_MODEL
from planner.usage import cost_usd
from tests.fake_anthropic import FakeAnthropic, text, tool_use
from tests.metrics.conftest import Scraper, wait_for

# A success, a step retried once, a step that fails for good and is skipped, and a join.
MIXED = {"goal": "mixed", "synthesize": True, "steps": [
    {"id": "fine", "tool": "echo", "args": {"value": 1}},
    {"id": "flaky", "tool": "fail", "args": {"times": 1, "value": 2}},
    {"id": "broken", "tool": "fail", "args": {"times": -1, "kind": "permanent"},
     "on_failure": "skip"},
    {"id": "join", "tool": "echo",
     "args": {"value": [{"$ref": "fine"}, {"$ref": "flaky"}, {"$ref": "broken"}]}},
]}
# A step fails for good; the replanner routes around it.
ROUTE = {"goal": "route around", "synthesize": True, "steps": [
    {"id": "a", "tool": "echo", "args": {"value": 1}},
    {"id": "bad", "tool": "fail", "args": {"times": -1, "kind": "permanent"},
     "depends_on": ["a"]},
    {"id": "after", "tool": "echo", "args": {"value": {"$ref": "bad"}}},
]}
AROUND = {"goal": "route around", "steps": [
    {"id": "fix", "tool": "echo", "args": {"value": {"$ref": "a"}}}]}
THINK = {"goal": "think twice", "steps": [
    {"id": "think1", "tool": "llm", "args": {"prompt": "first thought"}},
    {"id": "think2", "tool": "llm", "args": {"prompt": ["second", {"$ref": "think1"}]}}]}


def responder(role: str, body: dict[str, Any]) -> dict[str, Any]:
    if role == "planner":
        return tool_use("submit_plan", THINK)
    if role == "replanner":
        return tool_use("submit_plan", AROUND)
    return text(f"{role} answer")


@pytest.fixture(scope="module")
def runs(scraper: Scraper, client: Client, fake: FakeAnthropic) -> list[str]:
    """The runs whose metrics the tests read: mixed outcomes, a replan, a planned goal
    with `llm` steps, and a goal stopped at its budget."""
    fake.serve(responder)
    ids = [client.submit(MIXED), client.submit(ROUTE), client.submit_goal("think twice")]
    for run_id in ids:
        assert client.wait(run_id, timeout=90).status == "succeeded", client.report(run_id)
    stopped = client.submit_goal("think twice", RunOptions(budget_tokens=1))
    report = client.wait(stopped, timeout=60)
    assert report.status == "failed" and report.error and report.error.type == "BudgetExceeded"
    return [*ids, stopped]


def test_counts_after_real_runs(runs: list[str], scraper: Scraper) -> None:
    v = scraper.value
    # A worker counts a transition just after its script returns, so a client may see the
    # last run end a moment before the worker's counters do.
    wait_for(lambda: v("chordal_runs_total") == 4 and v("chordal_budget_stops_total") == 1,
             timeout=10)
    assert v("chordal_runs_total", status="succeeded") == 3
    assert v("chordal_runs_total", status="failed") == 1
    assert v("chordal_run_duration_seconds_count") == 4
    # Only succeeded runs have a makespan ratio; a run is never faster than its critical
    # path (the steps' own spans), give or take the clock's microseconds.
    assert v("chordal_run_makespan_ratio_count") == 3
    assert v("chordal_run_makespan_ratio_sum") >= 3
    assert v("chordal_budget_stops_total") == 1

    assert v("chordal_steps_total", tool="echo", status="succeeded") == 4  # fine, join, a, fix
    assert v("chordal_steps_total", tool="fail", status="succeeded") == 1  # flaky
    assert v("chordal_steps_total", tool="fail", status="skipped") == 1    # broken
    assert v("chordal_steps_total", tool="fail", status="failed") == 1     # bad
    assert v("chordal_steps_total", tool="llm", status="succeeded") == 2
    assert v("chordal_steps_total") == 9  # "after" was replaced, never an outcome of its own
    assert v("chordal_step_retries_total", tool="fail") == 1
    assert v("chordal_step_retries_total") == 1
    # Every step that ended by an attempt of its own has that attempt's duration.
    assert v("chordal_step_duration_seconds_count", tool="echo") == 4
    assert v("chordal_step_duration_seconds_count", tool="fail") == 3
    # Every attempt begun waited in its queue first: 5 + 3 on chordal (flaky twice).
    assert v("chordal_step_queue_seconds_count", queue="chordal") == 8
    assert v("chordal_step_queue_seconds_count", queue="llm") == 2
    # That a retry's countdown is not counted as queueing is checked on Redis's clock in
    # test_recording.py (a bound on wall time here failed whenever the machine was busy).

    assert v("chordal_replans_total", reason="replan") == 1
    assert v("chordal_replans_total") == 1
    assert v("chordal_repairs_total") == 0

    calls = {(role, model): v("chordal_model_calls_total", role=role, model=model,
                                outcome="ok")
             for role, model in [("planner", STRONG_MODEL), ("replanner", STRONG_MODEL),
                                 ("executor", FAST_MODEL), ("synthesizer", FAST_MODEL)]}
    # Two goals planned; one replan; two `llm` steps; three answers (the budget-stopped
    # run ends at once, without one).
    assert calls == {("planner", STRONG_MODEL): 2, ("replanner", STRONG_MODEL): 1,
                     ("executor", FAST_MODEL): 2, ("synthesizer", FAST_MODEL): 3}
    assert v("chordal_model_calls_total") == 8
    # The fake answers 100 input and 50 output tokens a call, and 400 cache tokens (a
    # write the first time it sees a system prompt, a read after).
    assert v("chordal_model_tokens_total", kind="input") == 800
    assert v("chordal_model_tokens_total", kind="output") == 400
    assert v("chordal_model_tokens_total", kind="cache_read") \
        + v("chordal_model_tokens_total", kind="cache_write") == 3200
    assert v("chordal_model_latency_seconds_count", role="executor") == 2
    for role, model in calls:
        tokens = {name: v("chordal_model_tokens_total", role=role, model=model, kind=kind)
                  for name, kind in [("input_tokens", "input"), ("output_tokens", "output"),
                                     ("cache_read_input_tokens", "cache_read"),
                                     ("cache_creation_input_tokens", "cache_write")]}
        assert v("chordal_model_cost_usd_total", role=role, model=model) == pytest.approx(
            cost_usd(model, tokens, DEFAULT_PRICES))


def test_labels_stay_bounded(runs: list[str], scraper: Scraper, client: Client) -> None:
    ids = set(runs)
    for run_id in runs:
        ids |= set(client.report(run_id).steps)
    allowed = {"status", "tool", "queue", "reason", "kind", "role", "model", "outcome", "le"}
    series: dict[str, int] = {}
    for (name, labels), _ in scraper.samples().items():
        if not name.startswith("chordal_"):
            continue
        names = {k for k, _ in labels}
        assert names <= allowed, (name, names)
        assert not {value for _, value in labels} & ids, (name, labels)
        series[name] = series.get(name, 0) + 1
    # A histogram's buckets times a handful of tools or queues, at most.
    assert series and max(series.values()) <= 200, series


def test_queue_depth_counts_what_waits_and_what_workers_hold(
        runs: list[str], scraper: Scraper, client: Client) -> None:
    # Nothing consumes "orphan": its steps wait in the broker.
    waiting = client.submit({"goal": "nobody", "steps": [
        {"id": f"o{i}", "tool": "orphan", "args": {"value": i}} for i in range(3)]})
    # A worker holds this one on its retry's countdown (2-4 s): reserved, not in the broker.
    held = client.submit({"goal": "held", "steps": [
        {"id": "later", "tool": "fail", "args": {"times": 1, "value": 1}}]})
    wait_for(lambda: client.store.step_state(held, "later").attempts == 1
             and client.store.step_state(held, "later").status == "pending")
    assert client.runtime.publisher.waiting("chordal") == 0
    assert scraper.value("chordal_queue_depth", queue="chordal") == 1
    assert scraper.value("chordal_queue_depth", queue="orphan") == 3
    assert scraper.value("chordal_queue_depth", queue="llm") == 0
    assert scraper.value("chordal_runs_active") == 2
    assert client.wait(held, timeout=30).status == "succeeded"
    client.cancel(waiting)
    assert scraper.value("chordal_queue_depth", queue="chordal") == 0
    assert scraper.value("chordal_runs_active") == 0
