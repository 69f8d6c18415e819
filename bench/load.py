"""Cost as work grows: N runs of M steps submitted at once, on one worker.

    .venv/bin/python bench/load.py --help
    .venv/bin/python bench/load.py --quick           # small shapes, prints only
    .venv/bin/python bench/load.py --write           # 100x20, 500x20, 20x500 into docs/

For each shape: steps per second over the whole batch (first submit to last result, on the
client's wall clock), each run's latency (its recorded creation to its end, on Redis's
clock: under load, that includes its wait for a worker slot) at p50 and p95, the Redis
memory a finished run keeps until it expires, and the two counts that must stay 0: steps
whose tool ran more than once (a tally kept in Redis by the tool, bench/load_tools.py) and
steps whose output is not what their arguments say it must be (or that did not succeed).

Each plan is a lattice 5 wide: step i waits for step i-5, so a run has M/5 levels and
several steps ready at a time, as a real plan would.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import table, write_section  # noqa: E402
from bench.load_tools import TALLY_KEY  # noqa: E402
from bench.measure import pct  # noqa: E402
from bench.run import machine, session, show  # noqa: E402

WIDTH = 5
FULL = ((100, 20), (500, 20), (20, 500))
QUICK = ((10, 10), (3, 50))
HEADER = ("runs x steps", "steps/s", "run latency p50", "run latency p95",
          "Redis memory per run", "ran twice", "wrong or missing")
START, END = "<!-- load:start -->", "<!-- load:end -->"


def lattice(k: int, m: int) -> dict[str, Any]:
    """Run ``k``'s plan of ``m`` steps: each ``tally``s a value naming its run and step."""
    return {"goal": f"load {k}", "steps": [
        {"id": f"s{i}", "tool": "tally", "args": {"value": f"{k}:{i}"},
         "depends_on": [f"s{i - WIDTH}"] if i >= WIDTH else []} for i in range(m)]}


@dataclass(frozen=True)
class Outcome:
    runs: int
    steps: int
    wall_s: float
    latencies: list[float]
    memory_per_run: float
    ran_twice: int
    wrong: int

    def row(self) -> tuple[str, ...]:
        return (f"{self.runs} x {self.steps}",
                f"{self.runs * self.steps / self.wall_s:.0f}",
                f"{pct(self.latencies, 0.5):.2f} s", f"{pct(self.latencies, 0.95):.2f} s",
                f"{self.memory_per_run / 1024:.0f} KiB", str(self.ran_twice), str(self.wrong))


def errors(reports: list[Any], counts: dict[str, int], m: int) -> tuple[int, int]:
    """(steps that ran more than once, steps whose output is wrong or missing)."""
    twice = wrong = 0
    for k, report in enumerate(reports):
        for i in range(m):
            step = report.steps.get(f"s{i}")
            ran = counts.get(f"{report.run_id}|s{i}", 0)
            twice += ran > 1
            wrong += (step is None or step.status != "succeeded" or step.output != f"{k}:{i}"
                      or ran == 0)
    return twice, wrong


def batch(client: Any, tally: Any, n: int, m: int) -> Outcome:
    before = int(client.store.r.info("memory")["used_memory"])
    tally.delete(TALLY_KEY)
    t0 = time.perf_counter()
    run_ids = [client.submit(lattice(k, m)) for k in range(n)]
    reports = [client.wait(run_id, timeout=1_800) for run_id in run_ids]
    wall = time.perf_counter() - t0
    after = int(client.store.r.info("memory")["used_memory"])
    counts = {key.decode(): int(v) for key, v in tally.hgetall(TALLY_KEY).items()}
    latencies = [(r.finished_at - r.created_at).total_seconds() for r in reports
                 if r.finished_at and r.created_at]
    twice, wrong = errors(reports, counts, m)
    return Outcome(n, m, wall, latencies, (after - before) / n, twice, wrong)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/load.py",
                                description="N runs of M steps at once: cost as work grows.")
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                         "redis://127.0.0.1:6379"),
                   help="Redis without a database (default: $BENCH_REDIS_URL or "
                        "redis://127.0.0.1:6379); databases --db and --db+1 are flushed")
    p.add_argument("--db", type=int, default=12, help="database to use and flush (12)")
    p.add_argument("--quick", action="store_true", help="small shapes, for a smoke run")
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import redis

    url, tally_url = f"{args.redis_url}/{args.db}", f"{args.redis_url}/{args.db + 1}"
    redis.Redis.from_url(url).flushdb()
    tally = redis.Redis.from_url(tally_url)
    tally.flushdb()
    load0 = os.getloadavg()[0]
    rows = []
    with session(url, telemetry=False, BENCH_TALLY_URL=tally_url,
                 CHORDAL_TOOL_MODULES="planner.tools.testing,bench.load_tools") as client:
        for n, m in (QUICK if args.quick else FULL):
            rows.append(batch(client, tally, n, m).row())
            show(HEADER, rows[-1:])
    if args.write:
        write_section(START, END, "\n".join([
            START, "## Cost as work grows (bench/load.py)", "",
            "Reproduce: `.venv/bin/python bench/load.py --write`. N runs of M `tally` steps "
            f"(a lattice {WIDTH} wide) submitted at once to one prefork worker; steps/s over "
            "the batch on the client's clock, run latency on Redis's clock (creation to end, "
            "queueing included), Redis `used_memory` after the batch less before, per run "
            "(a finished run's keys stay until they expire). \"ran twice\" counts steps whose "
            "tool ran more than once; \"wrong or missing\" steps whose output is not the "
            "expected one.", "", machine((load0, os.getloadavg()[0])), "",
            *table(HEADER, rows), "", END]))


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
