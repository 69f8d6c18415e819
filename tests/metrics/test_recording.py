"""The recording rules, in this process against a database of our own: a transition counts
once however often it is attempted; the fleet's gauges and the /metrics answer that the
HTTP service mounts; the makespan ratio; the multiprocess directory's cleaning."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from planner import metrics
from planner.engine.dispatch import MemoryPublisher
from planner.language.graph import makespan_ratio
from planner.language.plan import Plan
from planner.store.records import ErrorRecord, Repair
from planner.store.runs import RunStore
from tests import redis_server
from tests.metrics.conftest import STORE_DB


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def store() -> RunStore:
    # Not the worker's database: the worker's tests count its runs.
    store = RunStore.from_url(redis_server.url(STORE_DB))
    store.r.flushdb()
    return store


def started(store: RunStore, tool: str = "echo") -> tuple[str, Plan]:
    plan = Plan.model_validate({"goal": "g", "steps": [
        {"id": "a", "tool": tool, "args": {"value": 1}},
        {"id": "b", "tool": tool, "args": {"value": 2}, "depends_on": ["a"]}]})
    run_id = store.create_run("g", plan)
    store.start_run(run_id)
    store.mark_dispatched(run_id, ["a"], queues={"a": "q1"})
    return run_id, plan


def test_each_transition_counts_once(store: RunStore) -> None:
    run_id, _ = started(store, tool="metrics-once")
    waited = sample("chordal_step_queue_seconds_count", queue="q1")
    assert store.begin_step(run_id, "a", 1, "w", 3).state == "run"
    assert store.begin_step(run_id, "a", 1, "w", 3).state == "busy"  # a duplicate
    assert sample("chordal_step_queue_seconds_count", queue="q1") == waited + 1

    assert store.record_retry(run_id, "a", ErrorRecord(type="T", message="m"))
    assert sample("chordal_step_retries_total", tool="metrics-once") == 1
    store.begin_step(run_id, "a", 1, "w", 3)
    for _ in range(2):  # a redelivered message finishes it again: a duplicate
        store.finish_step(run_id, "a", output=1, worker="w")
    assert sample("chordal_steps_total", tool="metrics-once", status="succeeded") == 1
    assert sample("chordal_step_duration_seconds_count", tool="metrics-once") == 1
    for _ in range(2):
        store.fail_step(run_id, "b", ErrorRecord(type="E", message="m"), "w")
    assert sample("chordal_steps_total", tool="metrics-once", status="failed") == 1
    # It never began: no attempt's duration.
    assert sample("chordal_step_duration_seconds_count", tool="metrics-once") == 1

    runs = sample("chordal_runs_total", status="cancelled")
    assert store.cancel(run_id) and not store.cancel(run_id)
    assert sample("chordal_runs_total", status="cancelled") == runs + 1

    repairs = sample("chordal_repairs_total", kind="stalled_run")
    store.record_repair(run_id, Repair(kind="stalled_run", why="test"))
    assert sample("chordal_repairs_total", kind="stalled_run") == repairs + 1


def test_a_retrys_queue_wait_starts_when_its_countdown_ends(store: RunStore) -> None:
    """Measured on Redis's clock around the calls, so it holds however slow the machine:
    the retried attempt's wait is what passed after its due time, never the countdown."""
    run_id, _ = started(store, tool="metrics-countdown")
    store.begin_step(run_id, "a", 1, "w", 3)
    before = sample("chordal_step_queue_seconds_sum", queue="q1")
    t0 = redis_now(store)
    assert store.record_retry(run_id, "a", ErrorRecord(type="T", message="m",
                                                       retry_in_s=0.5))
    time.sleep(0.7)  # the countdown (0.5 s), then 0.2 s in the queue, or more if slow
    assert store.begin_step(run_id, "a", 1, "w", 3).state == "run"
    elapsed = redis_now(store) - t0
    waited = sample("chordal_step_queue_seconds_sum", queue="q1") - before
    assert 0 <= waited <= elapsed - 0.5 + 0.01, (waited, elapsed)


def test_agent_turns_and_calls_are_counted_by_kind_tool_and_outcome() -> None:
    turns = sample("chordal_agent_turns_total", kind="tools")
    metrics.agent_turn("tools")
    assert sample("chordal_agent_turns_total", kind="tools") == turns + 1
    ok = sample("chordal_agent_calls_total", tool="metrics-agent", outcome="succeeded")
    took = sample("chordal_agent_call_duration_seconds_sum", tool="metrics-agent")
    metrics.agent_call("metrics-agent", "succeeded", 0.25)
    metrics.agent_call("metrics-agent", "refused", None)  # never ran: no duration
    assert sample("chordal_agent_calls_total", tool="metrics-agent",
                  outcome="succeeded") == ok + 1
    assert sample("chordal_agent_calls_total", tool="metrics-agent", outcome="refused") >= 1
    assert sample("chordal_agent_call_duration_seconds_sum",
                  tool="metrics-agent") == pytest.approx(took + 0.25)
    assert sample("chordal_agent_call_duration_seconds_count", tool="metrics-agent") == 1
    # A value the metric cannot take is logged, never raised into the task that records.
    metrics.agent_call("metrics-agent", "failed", "soon")  # type: ignore[arg-type]


def redis_now(store: RunStore) -> float:
    seconds, micros = store.r.time()
    return float(seconds) + micros / 1e6


def test_a_replan_counts_when_its_version_installs(store: RunStore) -> None:
    run_id, plan = started(store)
    before = sample("chordal_replans_total", reason="replan")
    for _ in range(2):  # the second install of version 2 is stale
        store.install_plan(run_id, 2, plan, reason="replan")
    assert sample("chordal_replans_total", reason="replan") == before + 1


def test_fleet_gauges_and_the_metrics_answer(store: RunStore) -> None:
    run_id, _ = started(store)
    publisher = MemoryPublisher(depths={"q1": 0, "llm": 5})
    body, content_type = metrics.metrics_response(
        None, metrics.fleet_collector(store, publisher))
    assert content_type.startswith("text/plain")
    text = body.decode()
    assert "chordal_runs_active 1.0" in text
    assert 'chordal_queue_depth{queue="q1"} 1.0' in text     # dispatched, not started
    assert 'chordal_queue_depth{queue="llm"} 5.0' in text    # what the broker holds
    assert 'chordal_queue_depth{queue="chordal"} 0.0' in text
    store.begin_step(run_id, "a", 1, "w", 3)
    # Its tools' queues are reported even when empty.
    body, _ = metrics.metrics_response(None, metrics.fleet_collector(store, publisher,
                                                                    ["q1"]))
    assert 'chordal_queue_depth{queue="q1"} 0.0' in body.decode()
    # OpenMetrics when the scraper asks for it.
    _, content_type = metrics.metrics_response("application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")


def test_the_fleet_is_left_out_while_redis_is_away() -> None:
    store = RunStore.from_url("redis://127.0.0.1:1/0")
    body, _ = metrics.metrics_response(None, metrics.fleet_collector(store, MemoryPublisher()))
    assert b"chordal_queue_depth" not in body and b"chordal_steps_total" in body


def test_makespan_ratio() -> None:
    deps = {"a": set(), "b": set(), "c": {"a", "b"}}
    # a and b in parallel (2 s and 1 s), then c (1 s), 0.5 s late: 3.5 / 3.
    spans = {"a": (0.0, 2.0), "b": (0.0, 1.0), "c": (2.5, 3.5)}
    assert makespan_ratio(deps, spans) == pytest.approx(3.5 / 3)
    assert makespan_ratio(deps, {}) is None


def test_a_worker_start_removes_other_processes_files(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name in ["counter_1.db", "histogram_2.db", f"counter_{os.getpid()}.db"]:
        (tmp_path / name).write_bytes(b"")
    assert metrics.clean_multiprocess_dir() == 2
    assert [p.name for p in tmp_path.iterdir()] == [f"counter_{os.getpid()}.db"]
