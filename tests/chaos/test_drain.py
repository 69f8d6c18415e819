"""Many runs at once on two workers, with the leases and the reconciler on: all succeed.
Prints the drain time and the Redis memory a run leaves behind, and writes them (JSON,
under ``"drain"``) to the file named by CHAOS_REPORT, for the benchmarks page.

Short form: 20 runs x 20 echo steps. CHAOS_LONG=1: 100 runs x 20 steps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import redis

from tests.chaos.conftest import (
    LONG,
    NOTE,
    SAME_NODE_NAMES,
    Cluster,
    chaos_env,
    layered_dag,
    output_mismatches,
    repair_counts,
    wait_all,
    write_report,
)

pytestmark = [pytest.mark.chaos, SAME_NODE_NAMES, pytest.mark.timeout(900 if LONG else 240)]

RUNS = 100 if LONG else 20
LAYERS, WIDTH = 4, 5  # 20 steps a run
WORKERS, CONCURRENCY = 2, 2
DRAIN_TIMEOUT_S = 600 if LONG else 150


def keys_bytes(r: redis.Redis) -> int:
    """What the keys of this database take (MEMORY USAGE of each), whatever else the
    server holds in its other databases."""
    total = 0
    for key in r.scan_iter(count=1000):
        total += int(r.memory_usage(key, samples=0) or 0)
    return total


def test_many_concurrent_runs_drain(chaos_url: str, chaos_redis: redis.Redis,
                                    clusters: Callable[..., Cluster]) -> None:
    cluster = clusters(chaos_env(chaos_url), f"--concurrency={CONCURRENCY}")
    client = cluster.client
    for _ in range(WORKERS):
        cluster.start_worker()
    cluster.wait_workers(WORKERS)
    cluster.wait_ready(cluster.workers[0])

    plan, expected = layered_dag(LAYERS, WIDTH)
    compiled = client.compile(plan)  # validated once, submitted RUNS times
    used_before = int(chaos_redis.info("memory")["used_memory"])
    keys_before = keys_bytes(chaos_redis)

    t0 = time.monotonic()
    run_ids = [client.submit(compiled) for _ in range(RUNS)]
    submit_s = time.monotonic() - t0
    reports = wait_all(client, run_ids, DRAIN_TIMEOUT_S, "drain: ", cluster)
    drain_s = time.monotonic() - t0

    used_after = int(chaos_redis.info("memory")["used_memory"])
    keys_after = keys_bytes(chaos_redis)
    steps = RUNS * LAYERS * WIDTH
    result = {
        "runs": RUNS, "steps_per_run": LAYERS * WIDTH, "workers": WORKERS,
        "concurrency": CONCURRENCY, "submit_s": round(submit_s, 3),
        "drain_s": round(drain_s, 3), "steps_per_s": round(steps / drain_s, 1),
        "redis_used_memory_per_run_bytes": round((used_after - used_before) / RUNS),
        "redis_keys_bytes_per_run": round((keys_after - keys_before) / RUNS),
        "repairs": dict(repair_counts(client, run_ids)),
    }
    print("drain:", json.dumps(result))
    write_report("drain", result)

    problems: list[str] = []
    for run_id, report in reports.items():
        if report.status != "succeeded":
            problems.append(f"run {run_id} ended {report.status}: {report.error}")
        else:
            problems += [f"run {run_id}: {m}" for m in
                         output_mismatches(report, plan, expected)[:3]]
    assert not problems, "\n".join([json.dumps(result), *problems[:20]]) + NOTE
