"""What an operator sees of one run on two workers: Flower's states, names and ids; the
run's spans, linked across processes; the workers' JSON log lines; distinct node names.

The run: ``ok`` succeeds; ``flaky`` fails once (transient), then succeeds; ``summary``
asks the (scripted) model; ``broken`` fails for good (permanent), so the replanner is
woken, finds no answer, and the run ends failed with a partial answer.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from planner import RunOptions
from planner.store.records import RunReport
from planner.tracing import run_ids
from tests.integration.helpers import plan, step
from tests.ops.conftest import Stack, get


@pytest.fixture(scope="module")
def report(stack: Stack) -> RunReport:
    flaky = step("flaky", "fail", times=1, value="flaky-ok")
    flaky["max_retries"] = 2
    broken = step("broken", "fail", deps=["flaky", "summary"], times=-1, kind="permanent")
    run_id = stack.client.submit(plan(
        step("ok"), flaky,
        step("summary", "llm", prompt=["Summarise", {"$ref": "ok"}]),
        broken), RunOptions(synthesize=True))  # the failed run gets a partial answer
    report = stack.client.wait(run_id, 60)
    assert report.ended, report
    return report


def flower_tasks(stack: Stack, run_id: str, want: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        status, tasks = get(f"{stack.flower}/api/tasks")
        assert status == 200
        ours = {tid: t for tid, t in tasks.items() if tid.startswith(run_id)}
        settled = all(t["state"] not in ("PENDING", "RECEIVED", "STARTED")
                      for t in ours.values())
        if (len(ours) >= want and settled) or time.monotonic() > deadline:
            return ours
        time.sleep(0.3)


def test_flower_shows_what_happened_to_each_step(stack: Stack, report: RunReport):
    run = report.run_id
    assert report.status == "failed" and report.steps["broken"].status == "failed"
    # ok, flaky, summary, broken, the replan, the partial answer
    tasks = flower_tasks(stack, run, 6)

    ok = tasks[f"{run}.1.ok"]
    assert (ok["name"], ok["state"]) == ("chordal.step echo ok", "SUCCESS")

    broken = tasks[f"{run}.1.broken"]
    assert (broken["name"], broken["state"]) == ("chordal.step fail broken", "FAILURE")
    assert broken["exception"].startswith("PermanentError(")
    assert "fails as asked" in broken["exception"]
    assert "planner/tools/testing.py" in broken["traceback"]  # the tool's own traceback
    assert "celery.exceptions.Retry" not in broken["traceback"]
    status, failed = get(f"{stack.flower}/api/tasks?state=FAILURE")
    assert status == 200 and f"{run}.1.broken" in failed

    flaky = tasks[f"{run}.1.flaky"]
    assert (flaky["name"], flaky["retries"]) == ("chordal.step fail flaky", 1)
    # SUCCESS, or RETRY when the retry ran on the other worker and its events reached
    # Flower before the first worker's task-retried (Flower lets a late RETRY win): with
    # these tests' 0.05 s backoff it can; with the default (at least 0.5 s), hardly.
    assert flaky["state"] in ("SUCCESS", "RETRY")
    # What its retry recorded: the tool's error and traceback, not Celery's Retry.
    assert flaky["exception"].startswith("TransientError(")
    assert "planner/tools/testing.py" in flaky["traceback"]
    _, metrics = get(f"{stack.flower}/metrics", None)
    # Flower counted its RETRY (its metrics name the task, not the shadow name).
    assert re.search(r'flower_events_total\{task="chordal.step( fail flaky)?",'
                     r'type="task-retried",worker="[^"]+"\} [1-9]', metrics)

    # The errback fired by broken's failure found its outcome recorded and did nothing,
    # unseen (bookkeeping, not a second row per failure): one replan was published, by
    # the step task itself.
    assert f"{run}.1.broken.error" not in tasks
    replans = [(tid, t) for tid, t in tasks.items() if t["name"].startswith("chordal.replan")]
    assert len(replans) == 1, replans
    tid, replan = replans[0]
    assert re.fullmatch(rf"{run}\.1\.replan\.broken\.[0-9a-f]{{8}}", tid)
    assert replan["name"] == "chordal.replan broken"
    partial = tasks[f"{run}.1.partial"]
    assert partial["name"] == "chordal.synthesize partial"

    # The step's error record keeps the traceback, trimmed.
    error = report.steps["broken"].error
    assert error is not None and error.traceback
    assert "planner/tools/testing.py" in error.traceback and len(error.traceback) <= 4_100


def test_workers_on_one_host_get_distinct_node_names(stack: Stack):
    status, workers = get(f"{stack.flower}/api/workers?refresh=1")
    assert status == 200
    names = sorted(workers)
    assert len(names) == 2 and all(re.fullmatch(r"chordal-\d+@.+", n) for n in names), names
    for w in stack.workers:
        assert "DuplicateNodenameWarning" not in w.log.read_text()


def spans_of(stack: Stack, run_id: str, want: int) -> list[dict[str, Any]]:
    trace_id = run_ids(run_id)[0]
    deadline = time.monotonic() + 10
    while True:
        spans = [s for s in stack.spans() if s["trace_id"] == trace_id]
        if len(spans) >= want or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def test_a_run_is_one_trace_linked_across_workers(stack: Stack, report: RunReport):
    run = report.run_id
    trace_id, run_span_id = run_ids(run)
    # run, ok, flaky x2, summary, its model call, broken, errback, replan, partial, its call
    spans = spans_of(stack, run, 11)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)

    (root,) = by_name["chordal.run"]
    assert root["span_id"] == run_span_id and root["parent_id"] is None
    assert root["attributes"]["chordal.run.status"] == "failed"
    assert root["status"] == "ERROR"

    (ok,) = by_name["chordal.step echo ok"]
    assert ok["parent_id"] == run_span_id  # published by the client: the run's child
    assert ok["attributes"]["chordal.tool"] == "echo"
    assert ok["attributes"]["chordal.attempt"] == 1
    assert ok["attributes"]["chordal.queue_wait_s"] >= 0
    assert ok["kind"] == "CONSUMER"

    # summary was published by ok's task (in whichever worker): its span is ok's child.
    (summary,) = by_name["chordal.step llm summary"]
    assert summary["parent_id"] == ok["span_id"]
    (call,) = [s for s in by_name["chat claude-haiku-5-5"]
               if s["attributes"]["chordal.role"] == "executor"]
    assert call["parent_id"] == summary["span_id"] and call["kind"] == "CLIENT"
    assert call["attributes"]["gen_ai.operation.name"] == "chat"
    assert call["attributes"]["gen_ai.request.model"] == "claude-haiku-5-5"
    assert call["attributes"]["gen_ai.response.model"] == "scripted:claude-haiku-5-5"
    assert call["attributes"]["gen_ai.usage.input_tokens"] == 42
    assert call["attributes"]["gen_ai.usage.output_tokens"] == 7
    assert call["attributes"]["gen_ai.response.finish_reasons"] == ["end_turn"]

    flaky = sorted(by_name["chordal.step fail flaky"],
                   key=lambda s: s["attributes"]["chordal.attempt"])
    assert [s["attributes"]["chordal.attempt"] for s in flaky] == [1, 2]
    assert [s["status"] for s in flaky] == ["ERROR", "UNSET"]
    assert "exception" in flaky[0]["events"]
    # The retry is the same message again: the same parent, and it waited its countdown.
    assert flaky[0]["parent_id"] == flaky[1]["parent_id"] == run_span_id

    (broken,) = by_name["chordal.step fail broken"]
    assert broken["status"] == "ERROR"
    assert broken["attributes"]["error.type"] == "PermanentError"
    (replan,) = by_name["chordal.replan broken"]
    assert replan["parent_id"] == broken["span_id"]  # woken by the failure
    assert {s["trace_id"] for s in spans} == {trace_id}


def test_json_log_lines_name_the_run_step_and_attempt(stack: Stack, report: RunReport):
    run = report.run_id
    lines = [x for x in stack.log_lines() if x.get("run_id") == run]
    assert lines
    flaky = [x for x in lines if x.get("step_id") == "flaky"]
    # Celery's own lines (received, retry, succeeded) and the engine's, for both attempts.
    received = [x for x in flaky if "received" in x["message"]]
    assert len(received) == 2
    during = [x for x in flaky if x not in received]
    assert during and all(x.get("attempt") in (1, 2) for x in during), during
    retried = [x for x in during if x.get("attempt") == 1 and "traceback" in x]
    assert retried and "planner/tools/testing.py" in retried[0]["traceback"]
    assert any("succeeded" in x["message"] and x["attempt"] == 2 for x in during)
    failed = [x for x in lines if x.get("step_id") == "broken" and x["level"] == "ERROR"]
    assert failed and "planner/tools/testing.py" in failed[0]["traceback"]
    for x in lines:
        assert {"time", "level", "logger", "message", "run_id"} <= set(x)
