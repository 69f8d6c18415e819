"""Chordal vs raw Celery, on the same Redis, with the same worker, in one invocation.

    .venv/bin/python bench/run.py            # writes docs/benchmarks.md

1. Overhead per step: a 200-step chain of `echo` steps vs a raw chain of 200 no-op tasks.
2. Fan-out throughput: 1,000 independent `echo` steps vs a raw group of 1,000 no-ops.
3. Makespan efficiency on 20 random DAGs of 30-60 `sleep` steps (20-300 ms), with worker
   slots >= the widest level: makespan / max(critical path, total work / slots), for
   Chordal's dataflow compilation and for the naive level-by-level canvas.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
from celery import chain, group

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.levels import NOOP_TASK, submit_levels  # noqa: E402
from planner.client import Client  # noqa: E402
from planner.language.graph import shape, topological_order  # noqa: E402
from planner.language.plan import Plan  # noqa: E402
from planner.settings import Settings  # noqa: E402
from planner.tools import load_registry  # noqa: E402

REDIS_BASE = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
DB = 12
SLOTS = 12
REPS = 3


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    # The production app plus the baseline's tasks (bench/levels.py).
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.levels", "worker", "-Q", "chordal",
         f"--concurrency={SLOTS}", "--pool=prefork", "--loglevel=WARNING"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def submit(client: Client, plan: dict[str, Any], mode: str = "dataflow") -> str:
    return submit_levels(client, plan) if mode == "levels" else client.submit(plan)


def timed_run(client: Client, plan: dict[str, Any], mode: str = "dataflow") -> float:
    t0 = time.perf_counter()
    run_id = submit(client, plan, mode)
    report = client.wait(run_id, timeout=600)
    elapsed = time.perf_counter() - t0
    assert report.status == "succeeded", report.error
    return elapsed


def raw_chain(client: Client, n: int) -> float:
    noop = client.app.signature(NOOP_TASK, immutable=True)
    t0 = time.perf_counter()
    result = chain(*[noop.clone() for _ in range(n)]).apply_async()
    result.get(timeout=600)
    elapsed = time.perf_counter() - t0
    result.forget()
    return elapsed


def raw_group(client: Client, n: int) -> float:
    noop = client.app.signature(NOOP_TASK, immutable=True)
    t0 = time.perf_counter()
    result = group([noop.clone() for _ in range(n)]).apply_async()
    result.get(timeout=600)
    elapsed = time.perf_counter() - t0
    result.forget()
    return elapsed


def chain_plan(n: int) -> dict[str, Any]:
    return {"goal": "chain", "steps": [
        {"id": f"s{i}", "tool": "echo", "args": {"value": i},
         "depends_on": [f"s{i - 1}"] if i else []} for i in range(n)]}


def fan_out_plan(n: int) -> dict[str, Any]:
    return {"goal": "fan-out", "steps": [
        {"id": f"s{i}", "tool": "echo", "args": {"value": i}} for i in range(n)]}


def random_dag(rng: random.Random) -> dict[str, Any]:
    """30-60 sleep steps, each depending on up to 3 earlier ones, widest level <= SLOTS."""
    while True:
        n = rng.randint(30, 60)
        steps = []
        for i in range(n):
            window = list(range(max(0, i - 12), i))
            ups = rng.sample(window, k=min(len(window), rng.choice([0, 1, 1, 2, 2, 3])))
            steps.append({"id": f"s{i}", "tool": "sleep",
                          "args": {"seconds": round(rng.uniform(0.02, 0.3), 3)},
                          "depends_on": [f"s{u}" for u in ups]})
        plan = {"goal": "random", "steps": steps}
        if shape(Plan.model_validate(plan).dependencies()).widest <= SLOTS:
            return plan


def lower_bound(plan: dict[str, Any]) -> float:
    p = Plan.model_validate(plan)
    deps = p.dependencies()
    cost = {s.id: float(s.args["seconds"]) for s in p.steps}
    finish: dict[str, float] = {}
    for sid in topological_order(deps):
        finish[sid] = cost[sid] + max((finish[u] for u in deps[sid]), default=0.0)
    return max(max(finish.values()), sum(cost.values()) / SLOTS)


def makespan(client: Client, plan: dict[str, Any], mode: str) -> float:
    run_id = submit(client, plan, mode)
    report = client.wait(run_id, timeout=600)
    assert report.status == "succeeded", report.error
    assert report.finished_at is not None and report.created_at is not None
    return (report.finished_at - report.created_at).total_seconds()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    url = f"{REDIS_BASE}/{DB}"
    redis.Redis.from_url(url).flushdb()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORDAL_")}
    env.update({"CHORDAL_REDIS_URL": url, "CHORDAL_TOOL_MODULES": "planner.tools.testing",
                "CHORDAL_MAX_STEPS": "1000", "PYTHONPATH": str(ROOT)})
    settings = Settings.from_env(env)
    client = Client(settings, load_registry(settings.tools.tool_modules))
    worker = start_worker(env)
    try:
        deadline = time.monotonic() + 60
        while client.missing_queues({"chordal"}, timeout=0.5):
            assert time.monotonic() < deadline, "bench worker did not start"
        raw_chain(client, 10)
        timed_run(client, chain_plan(10))  # warm up both paths

        rows: list[tuple[str, str, str, str, str]] = []
        c_chain = statistics.median(timed_run(client, chain_plan(200)) for _ in range(REPS))
        r_chain = statistics.median(raw_chain(client, 200) for _ in range(REPS))
        ratio = c_chain / r_chain
        rows.append(("Overhead per step (200-step chain)",
                     f"{c_chain / 200 * 1000:.2f} ms/step", f"{r_chain / 200 * 1000:.2f} ms/step",
                     f"time ratio {ratio:.2f}", "<= 1.3 " + ("met" if ratio <= 1.3 else "MISSED")))

        c_fan = statistics.median(timed_run(client, fan_out_plan(1000)) for _ in range(REPS))
        r_fan = statistics.median(raw_group(client, 1000) for _ in range(REPS))
        tput = (1000 / c_fan) / (1000 / r_fan)
        rows.append(("Fan-out throughput (1,000 steps)", f"{1000 / c_fan:.0f} steps/s",
                     f"{1000 / r_fan:.0f} tasks/s", f"throughput ratio {tput:.2f}",
                     ">= 0.8 " + ("met" if tput >= 0.8 else "MISSED")))

        rng = random.Random(20261121)
        dags = [random_dag(rng) for _ in range(20)]
        eff: dict[str, list[float]] = {"dataflow": [], "levels": []}
        for dag in dags:
            bound = lower_bound(dag)
            for mode in eff:
                eff[mode].append(makespan(client, dag, mode) / bound)
        for mode, label in (("dataflow", "Chordal (dataflow)"),
                            ("levels", "naive level-by-level canvas")):
            med, p95 = statistics.median(eff[mode]), pct(eff[mode], 0.95)
            verdict = "" if mode == "levels" else (
                "median <= 1.10, p95 <= 1.25 " +
                ("met" if med <= 1.10 and p95 <= 1.25 else "MISSED"))
            rows.append((f"Makespan efficiency, {label}", f"median {med:.3f}",
                         f"p95 {p95:.3f}", f"max {max(eff[mode]):.3f}", verdict))
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    header = ("measure", "Chordal", "raw Celery / figure", "figure", "target")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(5)]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
    write_doc(rows, header)


def write_doc(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Reproduce: `.venv/bin/python bench/run.py` (after `./scripts/test` or `./scripts/demo`",
        "has made `.venv`). Everything runs in one invocation against the same Redis",
        f"(`{REDIS_BASE}/{DB}`), with one prefork worker of {SLOTS} processes for both Chordal",
        "and raw Celery. Medians of 3 repetitions for the first two rows.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, measured {time.strftime('%Y-%m-%d')}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
        "Makespan efficiency is makespan / max(critical path, total work / slots) over 20",
        "random DAGs of 30-60 `sleep` steps (20-300 ms, seeded), measured on Redis's clock",
        "from the run's creation to its end; 1.00 would be a perfect scheduler with zero",
        "overhead.",
        "",
        "## Reading the numbers",
        "",
        NOTES_MARKER,
    ]
    path = ROOT / "docs" / "benchmarks.md"
    notes = ""
    if path.exists() and NOTES_MARKER in path.read_text():
        notes = path.read_text().split(NOTES_MARKER, 1)[1]
    path.write_text("\n".join(lines) + notes)
    print(f"wrote {path.relative_to(ROOT)}")


NOTES_MARKER = "<!-- notes below this line are kept when the table is regenerated -->"

if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Celery's AsyncResult objects of the raw baselines unsubscribe in __del__, which fails
    # noisily during interpreter teardown; everything is written, so leave without it.
    os._exit(0)
