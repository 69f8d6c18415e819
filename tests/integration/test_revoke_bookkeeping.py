"""A revoke its worker could not record at once is handed to ``chordal.step_revoked``: a
real worker runs that bookkeeping task and the step ends as a revoke ends it (the
engine's side: tests/engine/test_stale_tasks.py)."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from planner.engine.dispatch import revoked_message
from planner.engine.publisher import CeleryPublisher
from tests.integration.conftest import Worker, base_env
from tests.integration.test_lifecycle import DB, FAST, one_step, started, wait_until


def test_a_revoke_handed_to_the_bookkeeping_task_ends_the_step(
        redis_base: str, workers: list[Worker], tmp_path: Path) -> None:
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    client = started(base_env(url, **FAST), workers, tmp_path / "worker.log")
    run_id = client.submit(one_step(seconds=60, later_s=0))
    wait_until("the step to run", lambda: client.store.step_state(run_id, "s").status
               == "running")
    # What a worker publishes when the run store did not answer as it heard the revoke.
    CeleryPublisher(client.app).publish([revoked_message(
        run_id, "s", "w1", True, f"{run_id}.1.s", time.time())])
    report = client.wait(run_id, timeout=30)
    assert report.status == "failed", (report, workers[0].log.read_text()[-3000:])
    step = report.steps["s"]
    assert step.error is not None and step.error.type == "Revoked"
    assert [a.status for a in step.history] == ["revoked"]
