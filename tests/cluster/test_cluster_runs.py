"""Real plans on real workers, the broker on RabbitMQ and the run store on a 3-master
Redis Cluster: fan-out, a failure and its retries, a cancel, the report, the events (read
as the service streams them) and the reconciler's repair of a killed worker's step."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from planner.options import RunOptions
from planner.service.events import stream
from planner.service.streams import StreamSlots
from planner.store.keys import RunKeys
from tests.cluster.conftest import client_for, cluster_env, virtual_host
from tests.cluster_server import Cluster
from tests.integration.conftest import Engine, Worker, start_worker, wait_for_queues
from tests.integration.helpers import assert_dependencies_respected, plan, started_counts, step


def test_a_fan_out_runs_and_its_runs_spread_over_the_masters(cluster_engine: Engine,
                                                             cluster: Cluster) -> None:
    leaves = [step(f"leaf{i}", value=i) for i in range(12)]
    fan = plan(*leaves, step("all", "concat", [s["id"] for s in leaves],
                             items=[[{"$ref": s["id"]}] for s in leaves]))
    run_ids = [cluster_engine.client.submit(fan) for _ in range(6)]
    for run_id in run_ids:
        report = cluster_engine.client.wait(run_id, 60)
        assert report.status == "succeeded", report
        assert report.steps["all"].output == list(range(12))
        assert all(s.attempts == 1 for s in report.steps.values())
        assert_dependencies_respected(cluster_engine.client.store, run_id,
                                      {"all": {s["id"] for s in leaves}})
    # Each run's keys sit on one node (one slot), and the runs on more than one node.
    c = cluster.client()
    nodes = {c.get_node_from_key(RunKeys(r).run).name for r in run_ids}
    assert len(nodes) > 1 or len({c.keyslot(RunKeys(r).run) for r in run_ids}) == 1
    for run_id in run_ids:
        k = RunKeys(run_id)
        assert len({c.keyslot(key) for key in k.all()}) == 1
    c.close()


def test_a_failing_step_retries_and_a_failed_run_is_retried(cluster_engine: Engine) -> None:
    client = cluster_engine.client
    flaky = cluster_engine.run(plan(step("flaky", "fail", times=2, value="ok"),
                                    step("after", deps=["flaky"], value={"$ref": "flaky"})))
    assert flaky.status == "succeeded", flaky
    assert flaky.steps["flaky"].attempts == 3 and flaky.steps["after"].output == "ok"
    failing = plan({**step("once", "fail", times=1, value="second"), "max_retries": 0})
    run_id = client.submit(failing)
    failed = client.wait(run_id, 60)
    assert failed.status == "failed" and failed.steps["once"].error is not None
    assert client.retry(run_id) == ["once"]
    again = client.wait(run_id, 60)
    assert again.status == "succeeded", again
    assert again.steps["once"].output == "second"
    assert again.steps["once"].attempts == 2


def test_a_cancelled_run_abandons_its_steps(cluster_engine: Engine) -> None:
    client = cluster_engine.client
    run_id = client.submit(plan(step("slow", "sleep", seconds=3.0),
                                step("next", deps=["slow"], value={"$ref": "slow"})))
    deadline = time.monotonic() + 30
    while client.report(run_id).steps["slow"].status != "running":
        assert time.monotonic() < deadline, "the step never started"
        time.sleep(0.05)
    assert client.cancel(run_id)
    report = client.report(run_id)
    assert report.status == "cancelled"
    assert {s.status for s in report.steps.values()} == {"cancelled"}
    assert not client.cancel(run_id)  # once
    # The run left the reconciler's watch list with its end.
    assert run_id not in {r for r, _ in client.store.active_runs()}


def test_the_report_and_the_events_as_the_service_streams_them(cluster_engine: Engine,
                                                                cluster: Cluster) -> None:
    client = cluster_engine.client
    report = cluster_engine.run(plan(step("a"), step("b", deps=["a"], value={"$ref": "a"})))
    assert report.status == "succeeded" and report.steps["b"].output == "a"
    events = cluster_engine.events(report.run_id)
    assert started_counts(events) == {"a": 1, "b": 1}
    assert events[-1].type == "run.finished"
    assert report.run_id in {s.run_id for s in client.runs(limit=100)}
    # What reads many runs' keys or every master: the gauges, the workers, the stuck.
    assert client.store.fleet().runs_active >= 0
    assert client.workers()  # chordal:worker:* found by a SCAN of every master
    assert client.stuck() == []

    async def read() -> list[str]:
        slots = StreamSlots.connect(cluster.url, per_key=2, most=4, keepalive_s=1.0)
        try:
            return [frame async for frame in stream(slots.redis, report.run_id, "0-0", 1.0)]
        finally:
            await slots.close()

    frames = asyncio.run(read())
    assert len(frames) == len(events)
    assert f"id: {events[-1].id}" in frames[-1]


def test_the_reconciler_starts_a_run_whose_creator_died(cluster_engine: Engine) -> None:
    """Recorded and never published (its creator died before the message went out): the
    reconciler's pass over the watched runs finds it quiet and makes its next move."""
    client = cluster_engine.client
    compiled = client.compile(plan(step("a"), step("b", deps=["a"], value={"$ref": "a"})))
    run_id = client.store.create_run("orphaned", compiled.plan,
                                     options=RunOptions(synthesize=False))
    report = client.wait(run_id, timeout=60)
    assert report.status == "succeeded", report
    assert report.steps["b"].output == "a"
    repaired = [e.data for e in client.store.events(run_id) if e.type == "run.repaired"]
    assert [r["kind"] for r in repaired] == ["stalled_run"]


def test_a_killed_workers_step_runs_again(cluster: Cluster, tmp_path: Path) -> None:
    """RabbitMQ gives a dead worker's unacknowledged message to another at once (a Redis
    broker waits for the lease and the reconciler); either way the step's lost attempt
    counts and the run ends as if nothing had happened."""
    workers: list[Worker] = []
    with virtual_host("reconcile") as broker:
        env = cluster_env(cluster, broker)
        client = client_for(env)
        try:
            first = start_worker(env, tmp_path / "first.log", "--concurrency=1")
            workers.append(first)
            wait_for_queues(client, {"chordal"}, first)
            run_id = client.submit(plan(step("slow", "sleep", seconds=3, value="done"),
                                        step("after", deps=["slow"], value={"$ref": "slow"})))
            deadline = time.monotonic() + 30
            while client.store.step_state(run_id, "slow").status != "running":
                assert time.monotonic() < deadline, "the step never started"
                time.sleep(0.05)
            first.kill()  # no errback, no ack: only the lease and the reconciler
            workers.append(start_worker(env, tmp_path / "second.log", "--concurrency=1"))
            report = client.wait(run_id, timeout=60)
        finally:
            for w in workers:
                w.stop()
    assert report.status == "succeeded", report
    assert report.steps["after"].output == "done" and report.steps["slow"].attempts == 2
    repaired = [e.data for e in client.store.events(run_id) if e.type == "run.repaired"]
    assert {(r["kind"], r["step"]) for r in repaired} <= {("lease_expired", "slow")}


def test_an_agent_steps_turns_and_tool_calls(cluster_engine: Engine) -> None:
    """begin_turn, record_turn, begin_call and finish_call, and the ``:agent`` key, on the
    run's slot like every other transition."""
    report = cluster_engine.run({"goal": "pick", "steps": [
        {"id": "pick", "tool": "agent", "args": {"task": "echo, then say what you picked",
                                                  "tools": ["echo"]}},
        {"id": "after", "tool": "echo", "args": {"value": {"$ref": "pick"}}}]}, timeout=90)
    assert report.status == "succeeded", report
    assert report.steps["after"].output == "picked one"
    conv = cluster_engine.client.store.conversation(report.run_id, "pick")
    assert len(conv.turns) == 2
