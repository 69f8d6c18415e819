"""Client.wait takes the run's status from its run-level events: it hands over every event
of the run, run.finished included, returns the report once the run ends or waits for a
person, and still says a run does not exist."""

from __future__ import annotations

import threading

import pytest

from planner.client import Client
from planner.errors import RunNotFound
from planner.store.records import ErrorRecord, RunEvent, RunOptions
from planner.vocabulary import RunStatus
from tests.engine.conftest import MakeRuntime
from tests.engine.test_submit import PLAN, client


def every_event(c: Client, run_id: str) -> list[str]:
    return [e.id for e in c.store.events(run_id, "0-0", count=100_000)]


def test_a_run_that_ends_while_waited_for(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    run_id = c.submit(PLAN)
    seen: list[RunEvent] = []

    def cancel_once_seen(event: RunEvent) -> None:
        seen.append(event)
        if event.type == "run.started":  # ended by another thread while wait blocks
            threading.Thread(target=c.cancel, args=(run_id,)).start()

    report = c.wait(run_id, timeout=60, on_event=cancel_once_seen)
    assert report.status == RunStatus.CANCELLED
    assert [e.id for e in seen] == every_event(c, run_id)
    assert seen[-1].type == "run.finished" and seen[-1].status == "cancelled"


def test_a_run_that_ended_before_the_wait(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    run_id = c.submit(PLAN)
    c.store.finish_run(run_id, RunStatus.FAILED,
                       error=ErrorRecord(type="X", message="ended before"))
    seen: list[RunEvent] = []
    report = c.wait(run_id, timeout=60, on_event=seen.append)
    assert report.status == RunStatus.FAILED and report.error is not None
    assert report.error.message == "ended before"
    assert [e.id for e in seen] == every_event(c, run_id)


def test_a_run_waiting_for_approval(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    run_id = c.submit(PLAN, RunOptions(approve=True))
    seen: list[RunEvent] = []
    report = c.wait(run_id, timeout=60, on_event=seen.append)
    assert report.status == RunStatus.AWAITING_APPROVAL and report.reason
    assert [e.type for e in seen] == ["run.created", "plan.installed",
                                      "run.awaiting_approval"]


def test_a_run_that_does_not_exist(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    with pytest.raises(RunNotFound):
        c.wait("0123456789abcdef0123", timeout=5)


def test_the_report_reads_what_it_read_before(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    run_id = c.submit(PLAN)
    c.store.finish_run(run_id, RunStatus.CANCELLED,
                       error=ErrorRecord(type="Cancelled", message="x"))
    report, usage = c.store.report_and_usage(run_id)
    assert report == c.store.report(run_id) and usage == c.store.usage_fields(run_id)
    assert list(report.steps) == ["a", "b", "c", "d"] and report.plan is not None
