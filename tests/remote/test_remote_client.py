"""RemoteClient and AsyncClient against a real `chordal serve` and a real worker."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from planner import AsyncClient, Client, RemoteClient, RunOptions
from planner.errors import (
    Conflict,
    InvalidInput,
    PlanInvalid,
    RunNotFound,
    Unauthorized,
    Unavailable,
)
from planner.store.records import RunEvent
from tests.integration.conftest import _free_port
from tests.remote.conftest import ALICE, BOB, ECHO_PLAN, Stack, sleep_plan, start_server


def test_from_url_submits_waits_and_reports_over_http(stack: Stack):
    client = Client.from_url(stack.url, api_key=ALICE)
    assert isinstance(client, RemoteClient)
    seen: list[RunEvent] = []
    run_id = client.submit(ECHO_PLAN)
    report = client.wait(run_id, timeout=30, on_event=seen.append)
    assert report.status == "succeeded" and report.steps["join"].output == "hello"
    assert report.usage is not None  # the report as `chordal status --json` gives it
    # Every event, in order, once, as the run store holds them.
    assert [e.id for e in seen] == [e.id for e in stack.events(run_id)][:len(seen)]
    assert seen[-1].type == "run.finished" and seen[0].type == "run.created"
    assert client.report(run_id) == report
    assert run_id in [r.run_id for r in client.runs(limit=50)]
    assert run_id in [r.run_id for r in client.runs(status="succeeded", limit=50)]
    assert client.tools() and "echo" in {t["name"] for t in client.tools()}
    # Events after a cursor: the rest of the stream, then it ends (the run has ended).
    tail = list(client.events(run_id, after=seen[1].id))
    assert [e.id for e in tail] == [e.id for e in seen[2:]]


def test_errors_come_back_as_chordal_errors(stack: Stack):
    alice = stack.remote()
    with pytest.raises(PlanInvalid) as invalid:
        alice.submit({"goal": "g", "steps": [{"id": "x", "tool": "nope"},
                                             {"id": "y", "tool": "echo", "args": {}}]})
    fields = {(p.step, p.field) for p in invalid.value.problems}
    assert ("x", "tool") in fields and len(invalid.value.problems) >= 2
    with pytest.raises(InvalidInput, match="callback_url"):
        alice.submit(ECHO_PLAN, RunOptions(callback_url="http://evil.example.com/hook"))
    with pytest.raises(RunNotFound):
        alice.report("no-such-run")
    run_id = alice.submit(ECHO_PLAN)
    # Another tenant's run is a run that does not exist.
    with pytest.raises(RunNotFound):
        stack.remote(BOB).report(run_id)
    with pytest.raises(Unauthorized, match="CHORDAL_API_KEY"):
        RemoteClient(stack.url).report(run_id)
    with pytest.raises(Unauthorized):
        RemoteClient(stack.url, "wrong-secret-0123456789").runs()
    assert alice.wait(run_id, 30).status == "succeeded"
    assert alice.cancel(run_id) is False  # it had ended
    with pytest.raises(Conflict):
        alice.retry(run_id)
    with pytest.raises(InvalidInput, match="url: must not carry credentials"):
        RemoteClient("http://user:pw@127.0.0.1:1")
    with pytest.raises(InvalidInput, match=r"roles\.planner"):
        alice.submit_goal("g", RunOptions(roles={"planner": {"temperature": 0.5}}))
    # Nothing listens: one clear error, after a few quick tries.
    started = time.monotonic()
    with pytest.raises(Unavailable, match="cannot reach the Chordal server"):
        RemoteClient(f"http://127.0.0.1:{_free_port()}", ALICE).report("x")
    assert time.monotonic() - started < 3


def test_approve_reject_cancel_retry_over_http(stack: Stack):
    client = stack.remote()
    waiting = client.submit(ECHO_PLAN, RunOptions(approve=True))
    report = client.wait(waiting, timeout=30)  # returns: the run waits for a person
    assert report.status == "awaiting_approval" and report.plan is not None
    client.approve(waiting)
    assert client.wait(waiting, timeout=30).status == "succeeded"

    rejected = client.submit(ECHO_PLAN, RunOptions(approve=True))
    client.reject(rejected, "not today")
    assert client.report(rejected).status == "cancelled"

    slow = client.submit(sleep_plan(3))
    assert client.cancel(slow) is True
    assert client.wait(slow, timeout=30).status == "cancelled"

    # A retried run goes on past its first run.finished: wait follows it to the second.
    failing = client.submit({"goal": "g", "steps": [
        {"id": "f", "tool": "fail", "on_failure": "fail",
         "args": {"times": -1, "kind": "permanent"}}]})
    assert client.wait(failing, timeout=30).status == "failed"
    assert client.retry(failing) == ["f"]
    seen: list[str] = []
    assert client.wait(failing, timeout=30, on_event=lambda e: seen.append(e.type)
                       ).status == "failed"
    assert seen.count("run.finished") == 2 and "run.retried" in seen
    assert seen[-1] == "run.finished"


def test_wait_with_a_timeout_returns_the_running_report_on_time(stack: Stack):
    client = stack.remote()
    run_id = client.submit(sleep_plan(3))
    started = time.monotonic()
    report = client.wait(run_id, timeout=1.5)
    took = time.monotonic() - started
    assert report.status == "running" and 1.4 < took < 3.5
    client.cancel(run_id)


def test_wait_rides_out_a_server_restart(stack: Stack, tmp_path: Any):
    """The server goes away mid-run and comes back on the same port: wait() reconnects
    with Last-Event-ID and hands over every event once."""
    port = _free_port()
    server = start_server(stack.server.env, tmp_path / "server2.log", port)
    client = RemoteClient(server.url, ALICE)
    seen: list[RunEvent] = []
    run_id = client.submit({"goal": "outlive a restart", "steps": [
        {"id": "a", "tool": "sleep", "args": {"seconds": 1.0}},
        {"id": "b", "tool": "sleep", "args": {"seconds": 2.5}, "depends_on": ["a"]}]})

    restarts = 0

    def restart_once(event: RunEvent) -> None:
        nonlocal server, restarts
        if event.type == "step.finished" and event.step == "a":
            server.stop()  # the stream drops while b runs
            time.sleep(0.5)
            server = start_server(stack.server.env, tmp_path / "server2.log", port)
            restarts += 1

    def note(event: RunEvent) -> None:
        seen.append(event)
        restart_once(event)

    try:
        report = client.wait(run_id, timeout=60, on_event=note)
    finally:
        server.stop()
    assert report.status == "succeeded" and restarts == 1
    ids = [e.id for e in seen]
    assert ids == [e.id for e in stack.events(run_id)][:len(ids)]
    assert len(ids) == len(set(ids)) and seen[-1].type == "run.finished"


def test_async_client(stack: Stack):
    async def main() -> dict[str, Any]:
        async with AsyncClient(stack.url, api_key=ALICE) as client:
            run_id = await client.submit(ECHO_PLAN, idempotency_key="async-1")
            again = await client.submit(ECHO_PLAN, idempotency_key="async-1")
            seen: list[str] = []

            async def note(event: RunEvent) -> None:
                seen.append(event.type)

            report = await client.wait(run_id, timeout=30, on_event=note)
            streamed = [e.type async for e in client.events(run_id)]
            slow = await client.submit(sleep_plan(3), RunOptions(approve=True))
            waiting = await client.wait(slow, timeout=30)
            cancelled = await client.cancel(slow)
            with pytest.raises(RunNotFound):
                await client.report("no-such-run")
            runs = await client.runs(limit=100)
            return {"run_id": run_id, "again": again, "report": report, "seen": seen,
                    "streamed": streamed, "waiting": waiting.status, "cancelled": cancelled,
                    "final": (await client.report(slow)).status,
                    "listed": {r.run_id for r in runs}}

    # On a thread of its own: a session-scoped Playwright (tests/page) keeps an event loop
    # running on the main thread, and an app's own loop may be anywhere.
    with ThreadPoolExecutor(1) as pool:
        got = pool.submit(asyncio.run, main()).result(timeout=120)
    assert got["again"] == got["run_id"]  # the same Idempotency-Key: the same run
    assert got["report"].status == "succeeded"
    assert got["seen"][-1] == "run.finished" and got["seen"] == got["streamed"]
    assert got["waiting"] == "awaiting_approval" and got["cancelled"] is True
    assert got["final"] == "cancelled" and got["run_id"] in got["listed"]
