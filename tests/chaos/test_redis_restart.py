"""Redis (broker and run store at once) goes away for 3 s while runs are in flight, and
comes back on the same port from its AOF: every run still ends, succeeded or failed with a
reason, and none stays running.

Two ways to go: a clean shutdown with ``appendfsync always`` (nothing acknowledged is
lost), and ``kill -9`` with ``appendfsync everysec`` (up to a second of writes is lost: a
step's result, a message, an ack). A Redis of its own, on a free port.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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
    RedisServer,
    chaos_env,
    events,
    output_mismatches,
    random_dag,
    repair_counts,
    started_after_success,
    wait_all,
    write_report,
)

pytestmark = [pytest.mark.chaos, SAME_NODE_NAMES, pytest.mark.timeout(600 if LONG else 200)]

RUNS = 24 if LONG else 8
STEPS = (10, 20) if LONG else (8, 12)
OUTAGE_S = 3.0
#: After Redis is back: the time the runs have to end.
SETTLE_S = 90


@pytest.mark.slow
@pytest.mark.parametrize("how", ["shutdown-fsync-always", "kill9-fsync-everysec"])
def test_runs_end_across_a_redis_restart(how: str, tmp_path: Path,
                                         clusters: Callable[..., Cluster]) -> None:
    rng = random.Random(SEED)
    server = RedisServer(tmp_path / "redis", "always" if how.endswith("always") else "everysec")
    server.start()
    try:
        cluster = clusters(chaos_env(server.url), "--concurrency=2")
        client = cluster.client
        first = cluster.start_worker()
        cluster.start_worker()
        cluster.wait_ready(first)
        plans: dict[str, tuple[Plan, Outputs]] = {}
        for i in range(RUNS):
            plan, expected = random_dag(rng, rng.randint(*STEPS), f"restart run {i}",
                                        sleep_s=(0.2, 0.5), p_sleep=0.7)
            plans[client.submit(plan)] = (plan, expected)
        time.sleep(1.5)  # steps running, messages in flight
        if how.startswith("kill9"):
            server.kill()
        else:
            server.stop()
        time.sleep(OUTAGE_S)
        server.start()
        t0 = time.monotonic()
        run_ids = list(plans)
        reports = wait_all(client, run_ids, SETTLE_S, f"after the Redis restart ({how}): ",
                           cluster)
        settled_s = time.monotonic() - t0

        problems: list[str] = []
        statuses: dict[str, int] = {}
        for run_id, report in reports.items():
            statuses[report.status] = statuses.get(report.status, 0) + 1
            running = [s for s, st in report.steps.items() if st.status == "running"]
            if running:
                problems.append(f"run {run_id} ended {report.status} with steps still "
                                f"running: {running}")
            if report.status == "succeeded":
                plan, expected = plans[run_id]
                problems += [f"run {run_id}: output {m}" for m in output_mismatches(
                    report, plan, expected)[:5]]
                problems += [f"run {run_id}: {v}" for v in started_after_success(
                    events(client, run_id))]
            elif report.error is None or not report.error.message:
                problems.append(f"run {run_id} ended {report.status} without a reason")
        seen = dict(repair_counts(client, run_ids))
        problems += [f"a run.repaired event of unknown kind {k!r}" for k in seen
                     if k not in REPAIR_KINDS]
        reasons = sorted({r.error.message[:160] for r in reports.values()
                          if r.status != "succeeded" and r.error})
        summary = (f"{how}: {len(run_ids)} runs ended {statuses} {settled_s:.1f} s after "
                   f"Redis came back; repairs by kind: {seen or 'none'}; failure reasons: "
                   f"{reasons or 'none'} {SEED_NOTE}")
        print(summary)
        write_report(f"redis_restart_{how}", {
            "runs": len(run_ids), "statuses": dict(statuses),
            "settled_after_redis_back_s": round(settled_s, 1), "repairs": seen})
        assert not problems, "\n".join([summary, *problems[:30]]) + NOTE
    finally:
        server.kill()
