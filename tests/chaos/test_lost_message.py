"""A step's message vanishes from the broker (Redis lost a write, an operator purged the
queue): the reconciler sees the step dispatched but never started past the grace, with its
queue empty, sends it again (a ``run.repaired`` event of kind ``message_lost``), and the run
succeeds.

Celery's Redis transport keeps the queue ``chordal`` as a Redis list of JSON messages whose
``headers.id`` is the task id ``<run>.<version>.<step>``; the tests take the step's message
out of it with LREM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from planner.engine.broker import step_of
from tests.chaos.conftest import (
    GRACE_S,
    LEASE_S,
    LONG,
    NOTE,
    SAME_NODE_NAMES,
    TOOL_MODULES,
    Cluster,
    chaos_env,
    events,
    repairs,
    until,
    wait_all,
    write_report,
)
from tests.integration.conftest import base_env
from tests.integration.helpers import started_counts

pytestmark = [pytest.mark.chaos, SAME_NODE_NAMES, pytest.mark.timeout(300 if LONG else 180)]

#: The reconciler's grace, its interval and a worker's slack: when the run must have ended.
REPAIR_BUDGET_S = GRACE_S + LEASE_S + 12
#: Issue 17's goal: at the default settings a lost message is re-sent and its run ends
#: within this long (it took ~65 s when only an empty queue and the 60 s grace counted).
DEFAULT_RECOVERY_S = 30.0


def take_message(r: redis.Redis, task_id: str) -> bool:
    """Remove the message of ``task_id`` from whichever broker queue list holds it."""
    for key in r.scan_iter("chordal*", count=1000):
        if r.type(key) != b"list":
            continue
        for raw in r.lrange(key, 0, -1):
            try:
                headers = json.loads(raw).get("headers") or {}
            except (ValueError, AttributeError):
                continue
            if headers.get("id") == task_id and r.lrem(key, 1, raw):  # type: ignore[arg-type]
                return True
    return False


def take_step(r: redis.Redis, run_id: str, step_id: str, version: int = 1) -> bool:
    """Remove the message of a step (found by its arguments, whatever its task id) from
    whichever broker queue list holds it."""
    for key in r.scan_iter("chordal*", count=1000):
        if r.type(key) != b"list":
            continue
        for raw in r.lrange(key, 0, -1):
            if step_of(raw) == (run_id, step_id, version) and r.lrem(key, 1, raw):
                return True
    return False


def assert_repaired_lost(client_events: list[dict[str, Any]], step: str,
                         elapsed: float) -> None:
    kinds = [(r.get("kind"), r.get("step")) for r in client_events]
    assert ("message_lost", step) in kinds, (
        f"the run succeeded in {elapsed:.1f} s but no run.repaired event of kind "
        f"message_lost for step {step!r}; repairs: {client_events or 'none'}{NOTE}")


def test_a_step_message_lost_before_any_worker_took_it(
        chaos_url: str, chaos_redis: redis.Redis,
        clusters: Callable[..., Cluster]) -> None:
    cluster = clusters(chaos_env(chaos_url), "--concurrency=2")
    client = cluster.client
    # Two roots; z reads both. No worker runs yet: both root messages wait in the queue.
    plan = {"goal": "lose one message", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": "A"}},
        {"id": "mid", "tool": "echo", "args": {"value": "M"}},
        {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}}},
        {"id": "z", "tool": "echo", "args": {"value": [{"$ref": "b"}, {"$ref": "mid"}]}}]}
    run_id = client.submit(plan)
    assert take_message(chaos_redis, f"{run_id}.1.mid"), \
        "the message of step mid is not in the broker's queue list"
    lost_at = time.monotonic()
    assert not take_message(chaos_redis, f"{run_id}.1.mid")

    worker = cluster.start_worker()
    cluster.wait_ready(worker)
    ready_s = time.monotonic() - lost_at
    report = wait_all(client, [run_id], REPAIR_BUDGET_S, "with mid's message lost: ",
                      cluster)[run_id]
    elapsed = time.monotonic() - lost_at
    print(f"lost before delivery: the run ended {report.status} {elapsed:.1f} s after the "
          f"loss (the worker was ready after {ready_s:.1f} s)")
    assert report.status == "succeeded", report
    write_report("lost_before_delivery", {"ended_after_loss_s": round(elapsed, 1),
                                          "worker_ready_after_s": round(ready_s, 1)})
    assert report.answer == {"z": ["A", "M"]}
    evs = events(client, run_id)
    assert_repaired_lost(repairs(evs), "mid", elapsed)
    assert started_counts(evs) == {"a": 1, "mid": 1, "b": 1, "z": 1}


def test_a_step_message_lost_while_its_upstream_runs(
        chaos_url: str, chaos_redis: redis.Redis,
        clusters: Callable[..., Cluster]) -> None:
    """The worker stops consuming ``chordal`` while ``up`` runs, so the message that
    ``up`` publishes for ``down`` stays in the list, where the test takes it; the worker
    then consumes again. (``up`` makes two steps ready, so neither runs in its task:
    CHORDAL_INLINE_STEPS runs only a single one there.)"""
    cluster = clusters(chaos_env(chaos_url), "--concurrency=1")
    client = cluster.client
    worker = cluster.start_worker()
    cluster.wait_ready(worker)
    plan = {"goal": "lose a message in flight", "steps": [
        {"id": "up", "tool": "sleep", "args": {"seconds": 2.0, "value": "U"}},
        {"id": "down", "tool": "echo", "args": {"value": {"$ref": "up"}}},
        {"id": "side", "tool": "echo", "args": {"value": {"$ref": "up"}}},
        {"id": "z", "tool": "echo", "args": {"value": [{"$ref": "down"}]}}]}
    run_id = client.submit(plan)
    until(lambda: client.store.step_state(run_id, "up").status == "running", 20,
          "step up to start")
    control = client.app.control
    try:
        replies = control.cancel_consumer("chordal", reply=True, timeout=2.0, limit=1)
        assert replies, "the worker did not answer cancel_consumer"
        until(lambda: take_message(chaos_redis, f"{run_id}.1.down"), 15,
              "up to finish and publish down's message")
        lost_at = time.monotonic()
    finally:
        control.add_consumer("chordal", reply=True, timeout=2.0, limit=1)
    assert client.store.step_state(run_id, "up").status == "succeeded"
    report = wait_all(client, [run_id], REPAIR_BUDGET_S, "with down's message lost: ",
                      cluster)[run_id]
    elapsed = time.monotonic() - lost_at
    print(f"lost in flight: the run ended {report.status} {elapsed:.1f} s after the loss")
    assert report.status == "succeeded", report
    write_report("lost_in_flight", {"ended_after_loss_s": round(elapsed, 1)})
    assert report.answer == {"z": ["U"], "side": "U"}
    evs = events(client, run_id)
    assert_repaired_lost(repairs(evs), "down", elapsed)
    assert started_counts(evs) == {"up": 1, "down": 1, "side": 1, "z": 1}


@pytest.mark.slow
def test_at_the_default_settings_a_lost_message_is_recovered_within_30_s(
        chaos_url: str, chaos_redis: redis.Redis,
        clusters: Callable[..., Cluster]) -> None:
    """As the in-flight loss above, with no chaos knobs: a 30 s lease, the reconciler
    every 5 s, the 60 s dispatch grace and the 10 s lost grace."""
    cluster = clusters(base_env(chaos_url, CHORDAL_TOOL_MODULES=TOOL_MODULES),
                       "--concurrency=1")
    client = cluster.client
    assert client.settings.engine.dispatch_grace_s == 60  # and the lost grace its default, 10 s
    worker = cluster.start_worker()
    cluster.wait_ready(worker)
    plan = {"goal": "lose a message at the defaults", "steps": [
        {"id": "up", "tool": "sleep", "args": {"seconds": 1.0, "value": "U"}},
        # Two steps made ready: both published (one alone would run in up's task).
        {"id": "down", "tool": "echo", "args": {"value": {"$ref": "up"}}},
        {"id": "side", "tool": "echo", "args": {"value": {"$ref": "up"}}}]}
    run_id = client.submit(plan)
    until(lambda: client.store.step_state(run_id, "up").status == "running", 30,
          "step up to start")
    control = client.app.control
    try:
        assert control.cancel_consumer("chordal", reply=True, timeout=5.0, limit=1), \
            "the worker did not answer cancel_consumer"
        until(lambda: take_step(chaos_redis, run_id, "down"), 30,
              "up to finish and publish down's message")
        lost_at = time.monotonic()
    finally:
        control.add_consumer("chordal", reply=True, timeout=5.0, limit=1)
    report = wait_all(client, [run_id], DEFAULT_RECOVERY_S,
                      "at the default settings, with down's message lost: ", cluster)[run_id]
    elapsed = time.monotonic() - lost_at
    print(f"lost at the defaults: the run ended {report.status} {elapsed:.1f} s after the loss")
    write_report("lost_at_defaults", {"ended_after_loss_s": round(elapsed, 1)})
    assert report.status == "succeeded", report
    assert report.answer == {"down": "U", "side": "U"}
    evs = events(client, run_id)
    assert_repaired_lost(repairs(evs), "down", elapsed)
    assert started_counts(evs) == {"up": 1, "down": 1, "side": 1}


@pytest.mark.slow
def test_behind_a_backlog_the_lost_message_is_repaired_and_no_waiting_one_is(
        chaos_url: str, chaos_redis: redis.Redis,
        clusters: Callable[..., Cluster]) -> None:
    """200 steps queue behind one worker process (0.1 s each: the last waits ten times
    the grace and the lost grace); one of their messages is lost. It is re-sent while
    the others still wait, and none of those is taken for lost. A run submitted first
    has its one step run at once; its join then waits behind the backlog, quiet for
    longer than the grace: it is not taken for stalled."""
    cluster = clusters(chaos_env(chaos_url), "--concurrency=1")
    client = cluster.client
    front = client.submit({"goal": "in front", "steps": [
        {"id": "e", "tool": "echo", "args": {"value": 1}}]})
    ids = [f"q{i}" for i in range(200)]
    plan = {"goal": "a backlog with one message lost", "steps": [
        {"id": sid, "tool": "sleep", "args": {"seconds": 0.1, "value": i}}
        for i, sid in enumerate(ids)]}
    run_id = client.submit(plan)  # no worker yet: all 200 messages wait in the queue
    lost = "q5"
    assert take_step(chaos_redis, run_id, lost), "q5's message is not in the queue list"
    worker = cluster.start_worker()
    cluster.wait_ready(worker)
    reports = wait_all(client, [front, run_id], 240, "a backlog with q5's message lost: ",
                       cluster)
    assert reports[front].status == "succeeded", reports[front]
    assert reports[run_id].status == "succeeded", reports[run_id]
    front_repairs = repairs(events(client, front))
    evs = events(client, run_id)
    found = [(r.get("kind"), r.get("step")) for r in repairs(evs)]
    at = next((i for i, e in enumerate(evs) if e.type == "run.repaired"), len(evs))
    after = sum(1 for e in evs[at:] if e.type == "step.started")
    print(f"backlog: repairs {found}, of the run in front {front_repairs}; {after} of 200 "
          "steps started after the repair")
    write_report("lost_behind_backlog", {"repairs": len(found) + len(front_repairs),
                                         "steps_started_after_repair": after})
    assert front_repairs == [], (
        f"the run whose join waited behind the backlog was repaired: {front_repairs}{NOTE}")
    assert found == [("message_lost", lost)], (
        f"expected one message_lost repair of {lost} and no other (the queued steps were "
        f"waiting, not lost); repairs: {found}{NOTE}")
    assert after >= 50, (
        f"the lost message was repaired only when the backlog had drained ({after} steps "
        f"started after the repair); it should be re-sent while the others wait{NOTE}")
    assert started_counts(evs) == {sid: 1 for sid in ids}
