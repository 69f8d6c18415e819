"""What Flower learns of a step's attempts, from the events a real worker sends, read by
a real Celery event receiver keeping Celery's own ``events.State`` (what Flower does):
one row per step task, its state the truth, and no row for the errback's bookkeeping.

A step cancelled while it waits to retry never succeeded: its row ends REVOKED, not
SUCCESS. A step that fails for good is one FAILURE row, with no ``chordal.step_error``
row beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from planner.engine.publisher import producer_app
from tests.integration.conftest import Engine, _make_engine
from tests.integration.helpers import plan, step


@dataclass
class Watcher:
    """Task events as Flower receives them, folded into Celery's ``State``."""

    engine: Engine
    events: list[dict[str, Any]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.app = producer_app(self.engine.client.settings)
        self.state = self.app.events.State()
        self.lock = threading.Lock()

    def on_event(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(event)
            self.state.event(event)

    def run(self) -> None:
        with self.app.connection() as conn:
            receiver = self.app.events.Receiver(conn, handlers={"*": self.on_event})
            for _ in receiver.itercapture(limit=None, timeout=None, wakeup=True):
                if self.stop.is_set():
                    return

    def of(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if str(e.get("uuid", "")).startswith(prefix)]

    def task_state(self, task_id: str) -> str | None:
        with self.lock:
            task = self.state.tasks.get(task_id)
            return None if task is None else str(task.state)

    def until(self, what: str, check: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"no {what} in {self.events[-20:]}"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def slow_retries(redis_base: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Engine]:
    """A worker whose retries wait 3 s: time to cancel a run in between."""
    yield from _make_engine("slow-retries", f"{redis_base}/10",
                            tmp_path_factory.mktemp("flower-states"), None,
                            CHORDAL_RETRY_BACKOFF_S="3", CHORDAL_RETRY_BACKOFF_MAX_S="3")


@pytest.fixture
def watcher(slow_retries: Engine) -> Iterator[Watcher]:
    watcher = Watcher(slow_retries)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    # Listening once the worker's heartbeats (every 2 s) come in.
    watcher.until("heartbeat", lambda: any(e["type"] == "worker-heartbeat"
                                           for e in watcher.events))
    yield watcher
    watcher.stop.set()
    thread.join(timeout=10)


def test_a_step_cancelled_while_waiting_to_retry_is_revoked_not_successful(
        slow_retries: Engine, watcher: Watcher):
    flaky = step("flaky", "fail", times=-1)
    flaky["max_retries"] = 3
    client = slow_retries.client
    run_id = client.submit(plan(flaky))
    task_id = f"{run_id}.1.flaky"
    watcher.until("retry", lambda: any(e["type"] == "task-retried"
                                       for e in watcher.of(task_id)))
    assert client.cancel(run_id)
    # The retry's message is delivered after its countdown, finds the run cancelled, and
    # runs nothing.
    watcher.until("end of the retry", lambda: any(
        e["type"] in ("task-succeeded", "task-failed", "task-revoked")
        for e in watcher.of(task_id)), timeout=30)
    time.sleep(1.0)  # any event after it
    kinds = [e["type"] for e in watcher.of(task_id)]
    assert "task-succeeded" not in kinds, kinds
    assert kinds.count("task-revoked") == 1, kinds
    assert watcher.task_state(task_id) == "REVOKED"
    report = client.report(run_id)
    assert report.status == "cancelled" and report.steps["flaky"].status == "cancelled"
    assert report.steps["flaky"].attempts == 1


def test_a_failed_step_is_one_failure_row_and_its_errback_none(slow_retries: Engine,
                                                               watcher: Watcher):
    broken = step("broken", "fail", times=-1, kind="permanent")
    broken["on_failure"] = "fail"
    report = slow_retries.run(plan(step("ok"), broken))
    assert report.status == "failed"
    run_id = report.run_id
    watcher.until("the failure", lambda: any(e["type"] == "task-failed"
                                             for e in watcher.of(f"{run_id}.1.broken")))
    time.sleep(2.0)  # the errback's events, if any, come after the failure
    rows = {e["uuid"] for e in watcher.of(run_id)}
    assert rows == {f"{run_id}.1.ok", f"{run_id}.1.broken", f"{run_id}.1.finalize"} \
        or rows == {f"{run_id}.1.ok", f"{run_id}.1.broken"}, rows
    assert watcher.task_state(f"{run_id}.1.broken") == "FAILURE"
    assert watcher.task_state(f"{run_id}.1.ok") == "SUCCESS"
    names = {e.get("name") for e in watcher.of(run_id) if e.get("name")}
    assert not any("step_error" in str(n) for n in names), names


def test_the_errback_still_does_its_work_unseen(slow_retries: Engine, watcher: Watcher,
                                                tmp_path: Path):
    """Killed at the hard time limit (no tool error: only the errback knows), the step's
    attempt is counted and its policy applied, with no errback row."""
    stuck = step("stuck", "stubborn", seconds=30)
    stuck["on_failure"] = "skip"
    stuck["max_retries"] = 0
    report = slow_retries.run(plan(stuck), timeout=60)
    assert report.status == "succeeded", report
    state = report.steps["stuck"]
    assert state.status == "skipped" and state.error is not None
    assert state.error.type == "TaskFailed"
    time.sleep(1.0)
    assert not watcher.of(f"{report.run_id}.1.stuck.error")
    assert watcher.task_state(f"{report.run_id}.1.stuck") == "FAILURE"
