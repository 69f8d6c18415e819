"""Leases and the reconciler with real workers: a worker killed mid-step, a client that
knows tools its workers lack, and the stuck-runs listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from planner.client import Client
from planner.engine.reconcile import Reconciler
from planner.settings import Settings
from planner.store.keys import RUN_INDEX
from planner.tools import load_registry
from tests.integration.conftest import (
    ROOT,
    TOOL_MODULES,
    Worker,
    base_env,
    start_worker,
    wait_for_queues,
)
from tests.integration.helpers import plan, started_counts, step
from tests.integration.probe import PUBLISHED_KEY, counted

DB = 3
FAST = {"CHORDAL_STEP_LEASE_S": "2", "CHORDAL_RECONCILE_INTERVAL_S": "0.5",
        "CHORDAL_DISPATCH_GRACE_S": "2"}


@pytest.fixture
def env(redis_base: str) -> dict[str, str]:
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    return base_env(url, **FAST)


def client_for(env: dict[str, str]) -> Client:
    settings = Settings.from_env(env)
    return Client(settings, load_registry(settings.tools.tool_modules))


def test_a_step_whose_worker_was_killed_resumes_on_another_within_seconds(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    client = client_for(env)
    first = start_worker(env, tmp_path / "first.log", "--concurrency=1")
    workers.append(first)
    wait_for_queues(client, {"chordal"}, first)
    run_id = client.submit(plan(step("slow", "sleep", seconds=3, value="done"),
                                step("after", "echo", ["slow"], value={"$ref": "slow"})))
    deadline = time.monotonic() + 30
    while client.store.step_state(run_id, "slow").status != "running":
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    first.kill()  # the whole worker: no errback, no ack, no redelivery for hours
    killed_at = time.monotonic()
    second = start_worker(env, tmp_path / "second.log", "--concurrency=1")
    workers.append(second)
    report = client.wait(run_id, timeout=60)
    assert report.status == "succeeded", report
    assert report.steps["after"].output == "done"
    assert report.steps["slow"].attempts == 2
    # The lease (2 s) lapsed, the second worker's reconciler took the lock over (the dead
    # one's lapses within 5 s) and re-drove the step: seconds, not the visibility timeout.
    assert time.monotonic() - killed_at < 30
    repaired = [e.data for e in client.store.events(run_id) if e.type == "run.repaired"]
    assert [(r["kind"], r["step"]) for r in repaired] == [("lease_expired", "slow")]
    error = client.store.step_state(run_id, "slow").error
    assert error is not None and error.type == "WorkerLost"


def test_chordal_run_warns_when_no_live_worker_has_a_step_s_tool(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency=1")
    workers.append(worker)
    client = client_for(env)
    wait_for_queues(client, {"chordal"}, worker)
    deadline = time.monotonic() + 20
    while not client.workers():  # its first record comes when it is ready
        assert time.monotonic() < deadline, worker.log.read_text()[-2000:]
        time.sleep(0.1)
    [info] = client.workers()
    assert "chordal" in info.queues and "echo" in info.tools
    assert info.modules == TOOL_MODULES.split(",")

    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan({**step("me", "whoami"), "on_failure": "fail"})))
    knows_more = dict(env, CHORDAL_TOOL_MODULES=TOOL_MODULES + ",tests.integration.extra_tools")
    result = subprocess.run([sys.executable, "-m", "planner.cli", "run", "--plan", str(path),
                             "--wait", "--json", "--timeout", "60"], env=knows_more,
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "warning: step 'me': no live worker on queue 'chordal' has tool 'whoami'" in \
        result.stderr
    assert "CHORDAL_TOOL_MODULES" in result.stderr
    # Submitted all the same: the worker fails the step with the same advice, never hangs.
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "failed"
    assert report["steps"]["me"]["error"]["type"] == "ToolMissing"


def test_stuck_runs_are_listed_with_what_they_wait_for(
        env: dict[str, str], tmp_path: Path) -> None:
    client = client_for(env)  # no worker at all: nothing moves
    run_id = client.submit(plan(step("a", "echo", value=1)))
    time.sleep(2.2)
    [stuck] = client.stuck()
    assert stuck.run_id == run_id and stuck.quiet_s is not None and stuck.quiet_s >= 2
    assert stuck.waiting_for == "steps a that cannot start"
    result = subprocess.run([sys.executable, "-m", "planner.cli", "runs", "--stuck",
                             "--json"], env=env, cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert json.loads(line)["run_id"] == run_id
    refused = subprocess.run([sys.executable, "-m", "planner.cli", "runs", "--stuck",
                              "--status", "running"], env=env, cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "--stuck" in refused.stderr


#: Two roots that count their runs in the probe Redis, and a step after both.
COUNTED = plan(step("a", "count", name="a"), step("b", "count", name="b"),
               step("after", "echo", ["a", "b"], value=[{"$ref": "a"}, {"$ref": "b"}]))


def published_ids(run_id: str) -> list[str]:
    probe = redis.Redis.from_url(os.environ["TEST_PROBE_REDIS_URL"])
    rows = [json.loads(x) for x in probe.lrange(PUBLISHED_KEY, 0, -1)]
    return sorted(r["id"] for r in rows if r["id"] and r["id"] in
                  (f"{run_id}.1.a", f"{run_id}.1.b"))


def repairs_of(client: Client, run_id: str) -> list[tuple[str, str]]:
    return sorted((e.data["kind"], e.data["step"]) for e in client.store.events(run_id)
                  if e.type == "run.repaired")


def assert_ran_once(client: Client, run_id: str) -> None:
    report = client.wait(run_id, timeout=60)
    assert report.status == "succeeded", report
    assert report.steps["after"].output == [1, 1]  # each root's count: it ran once
    for root in ("a", "b"):
        assert counted(run_id, root, root) == 1
        assert report.steps[root].attempts == 1
    assert set(started_counts(client.store.events(run_id)).values()) == {1}


def test_a_client_that_died_between_the_submit_and_the_publish_leaves_a_run_that_runs(
        env: dict[str, str], workers: list[Worker], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-call submit notes the roots dispatched before the client publishes them: a
    client gone in between leaves no message anywhere, and none comes back. The
    reconciler publishes them (under the task ids the client would have used) once the
    run is older than the grace with nothing begun, even where the broker cannot say
    which messages it holds and its queue is long (RabbitMQ with a backlog, as this
    reconciler sees it): before, such roots waited for ever."""
    quiet = dict(env, CHORDAL_RECONCILE_INTERVAL_S="0")  # only this test's reconciler
    client = client_for(env)
    worker = start_worker(quiet, tmp_path / "worker.log", "--concurrency=2")
    workers.append(worker)
    wait_for_queues(client, {"chordal"}, worker)

    def die(messages: object) -> None:
        raise SystemExit("the client died before it published")

    publisher = client.runtime.publisher
    monkeypatch.setattr(publisher, "publish", die)
    with pytest.raises(SystemExit):
        client.submit(COUNTED)
    monkeypatch.undo()
    [run_id] = [m.decode() for m, _ in redis.Redis.from_url(env["CHORDAL_REDIS_URL"])
                .zscan_iter(RUN_INDEX)]
    assert published_ids(run_id) == []
    monkeypatch.setattr(publisher, "waiting", lambda queue: 50)
    monkeypatch.setattr(publisher, "held", lambda queue: None)
    monkeypatch.setattr(publisher, "queued_runs", lambda queues: None)
    reconciler = Reconciler(client.runtime, lock_s=10, settle_s=0)
    deadline = time.monotonic() + 30
    while not (made := reconciler.reconcile()):
        assert time.monotonic() < deadline, "the roots were never published again"
        time.sleep(0.2)
    assert sorted((r.kind, r.step) for _, r in made) == [("never_dispatched", "a"),
                                                         ("never_dispatched", "b")]
    assert_ran_once(client, run_id)
    assert repairs_of(client, run_id) == [("never_dispatched", "a"), ("never_dispatched", "b")]
    assert published_ids(run_id) == [f"{run_id}.1.a", f"{run_id}.1.b"]


def test_a_submitted_run_whose_roots_began_is_not_published_again(
        env: dict[str, str], workers: list[Worker], tmp_path: Path) -> None:
    # A grace the roots begin well within, and a root that runs past it: the workers'
    # reconciler looks at the run meanwhile.
    env = dict(env, CHORDAL_DISPATCH_GRACE_S="4")
    client = client_for(env)
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency=2")
    workers.append(worker)
    wait_for_queues(client, {"chordal"}, worker)
    run_id = client.submit(plan(step("a", "count", name="a"), step("b", "count", name="b"),
                                step("slow", "sleep", seconds=6, value="done"),
                                step("after", "echo", ["a", "b", "slow"],
                                     value=[{"$ref": "a"}, {"$ref": "b"}])))
    assert_ran_once(client, run_id)
    assert client.store.step_state(run_id, "slow").attempts == 1
    assert repairs_of(client, run_id) == []
    assert published_ids(run_id) == [f"{run_id}.1.a", f"{run_id}.1.b"]


def test_roots_published_and_not_yet_begun_when_the_reconciler_looks_run_once(
        env: dict[str, str], workers: list[Worker], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of the run began in the grace (no worker yet). A broker that shows its
    queues holds the roots' messages: nothing is published again. One that cannot say
    (RabbitMQ, as this reconciler sees it) leaves a dead client and a long queue alike:
    the roots are published again; the two messages of each root share its task id, and
    begin_step runs it once."""
    client = client_for(env)
    run_id = client.submit(COUNTED)
    assert published_ids(run_id) == [f"{run_id}.1.a", f"{run_id}.1.b"]
    time.sleep(2.2)  # past the grace (CHORDAL_DISPATCH_GRACE_S=2)
    reconciler = Reconciler(client.runtime, lock_s=10, settle_s=0)
    assert reconciler.reconcile() == []
    monkeypatch.setattr(client.runtime.publisher, "held", lambda queue: None)
    made = reconciler.reconcile()
    assert sorted((r.kind, r.step) for _, r in made) == [("never_dispatched", "a"),
                                                         ("never_dispatched", "b")]
    assert published_ids(run_id) == [f"{run_id}.1.a", f"{run_id}.1.a",
                                     f"{run_id}.1.b", f"{run_id}.1.b"]
    monkeypatch.undo()
    worker = start_worker(env, tmp_path / "worker.log", "--concurrency=2")
    workers.append(worker)
    assert_ran_once(client, run_id)
