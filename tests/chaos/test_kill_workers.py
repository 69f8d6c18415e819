"""Workers killed with SIGKILL (the whole process group: no ack, no cleanup) while runs of
random DAGs go on, and a replacement started each time: every run still ends succeeded,
with the right outputs, and no step that had succeeded ever starts again.

Short form: 6 runs of 10-15 steps, 4 kills. CHAOS_LONG=1: 20 runs of 20-40 steps, 20 kills.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import pytest
import redis

from tests.chaos.conftest import (
    LONG,
    NOTE,
    REPAIR_KINDS,
    SAME_NODE_NAMES,
    SEED,
    SEED_NOTE,
    Cluster,
    Outputs,
    Plan,
    chaos_env,
    events,
    output_mismatches,
    random_dag,
    repair_counts,
    started_after_success,
    wait_all,
    write_report,
)

pytestmark = [pytest.mark.chaos, SAME_NODE_NAMES, pytest.mark.timeout(1_500 if LONG else 240)]

WORKERS = 3
RUNS = 20 if LONG else 6
STEPS = (20, 40) if LONG else (10, 15)
KILLS = 20 if LONG else 4
#: After the last kill: the time the runs have to end.
SETTLE_S = 240 if LONG else 60


def step_of(task_id: str) -> str:
    """``<run>.<version>.<step>`` -> ``<step>/<run prefix>``."""
    run, _, rest = task_id.partition(".")
    return f"{rest.partition('.')[2]}/{run[:6]}"


def kill_one(cluster: Cluster, rng: random.Random, seconds: dict[str, float],
             look_s: float = 3.0) -> tuple[str, list[str]]:
    """SIGKILL a worker while it runs a step that has at least 0.08 s left (``seconds``:
    each sleep step's duration by task id), if one shows within ``look_s``; else any live
    worker. Returns its name and the steps it was running."""
    deadline = time.monotonic() + look_s
    while True:
        running = cluster.running_steps()
        now = time.time()
        targets = sorted({index for index, task, started in running
                          if started + seconds.get(task, 0.0) - now > 0.08})
        if targets or time.monotonic() > deadline:
            break
    if targets:
        index = rng.choice(targets)
        victim = cluster.workers[index]
        hit = [task for i, task, _ in running if i == index]
    else:
        live = cluster.live()
        if not live:
            return "none", []
        victim, hit = rng.choice(live), []
    cluster.kill(victim)
    return victim.log.stem, hit


@pytest.mark.slow
def test_runs_survive_workers_killed_mid_run(chaos_url: str, chaos_redis: redis.Redis,
                                            clusters: Callable[..., Cluster]) -> None:
    rng = random.Random(SEED)
    cluster = clusters(chaos_env(chaos_url), "--concurrency=2")
    client = cluster.client
    first = cluster.start_worker()
    for _ in range(WORKERS - 1):
        cluster.start_worker()
    cluster.wait_ready(first)

    plans: dict[str, tuple[Plan, Outputs]] = {}
    seconds: dict[str, float] = {}  # task id -> how long its sleep step sleeps
    todo = [random_dag(rng, rng.randint(*STEPS), f"chaos run {i}") for i in range(RUNS)]
    # A wave of runs before each kill, so that every run is in flight while workers die.
    per_wave = math.ceil(RUNS / KILLS)

    def submit_wave() -> None:
        for _ in range(min(per_wave, len(todo))):
            plan, expected = todo.pop(0)
            run_id = client.submit(plan)
            plans[run_id] = (plan, expected)
            seconds.update({f"{run_id}.1.{s['id']}": s["args"]["seconds"]
                            for s in plan["steps"] if s["tool"] == "sleep"})

    t0 = time.monotonic()
    kills: list[str] = []
    last_kill = t0 - 1.0
    for _ in range(KILLS):
        # A kill every 1-2 s: a wave of runs shortly before, to get going, then the kill
        # (of a worker running a step, looked for up to 3 s).
        kill_at = last_kill + rng.uniform(1.0, 2.0)
        time.sleep(max(0.0, kill_at - 0.6 - time.monotonic()))
        submit_wave()
        time.sleep(max(0.3, kill_at - time.monotonic()))
        name, hit = kill_one(cluster, rng, seconds)
        last_kill = time.monotonic()
        kills.append(f"{name}@{time.monotonic() - t0:.1f}s"
                     + (f" running {','.join(step_of(t) for t in hit)}" if hit else " idle"))
        cluster.start_worker()
    while todo:
        submit_wave()
    chaos_s = time.monotonic() - t0

    run_ids = list(plans)
    reports = wait_all(client, run_ids, SETTLE_S,
                       f"after {len(kills)} kills ({', '.join(kills)}): ", cluster)
    total_s = time.monotonic() - t0

    problems: list[str] = []
    for run_id, report in reports.items():
        plan, expected = plans[run_id]
        if report.status != "succeeded":
            problems.append(f"run {run_id} ended {report.status}: "
                            f"{report.error.message if report.error else 'no error'}")
            continue
        problems += [f"run {run_id}: {v}" for v in started_after_success(
            events(client, run_id))]
        problems += [f"run {run_id}: output {m}" for m in output_mismatches(
            report, plan, expected)[:5]]
    seen = dict(repair_counts(client, run_ids))
    problems += [f"a run.repaired event of unknown kind {k!r}" for k in seen
                 if k not in REPAIR_KINDS]
    steps = sum(len(p["steps"]) for p, _ in plans.values())
    attempts = sum(s.attempts for r in reports.values() for s in r.steps.values())
    summary = (f"{len(run_ids)} runs, {steps} steps, {attempts} attempts, "
               f"{len(kills)} kills ({', '.join(kills)}), chaos {chaos_s:.1f} s, "
               f"all ended after {total_s:.1f} s; repairs by kind: {seen or 'none'} "
               f"{SEED_NOTE}")
    print(summary)
    write_report("kill_workers", {
        "runs": len(run_ids), "steps": steps, "attempts": attempts, "kills": len(kills),
        "chaos_s": round(chaos_s, 1), "ended_after_s": round(total_s, 1),
        "succeeded": sum(r.status == "succeeded" for r in reports.values()),
        "rerun_after_success": sum("started again" in p for p in problems),
        "repairs": seen})
    assert not problems, "\n".join([summary, *problems[:30]]) + NOTE
