"""Chordal vs raw Celery, on the same Redis, with the same worker, in one invocation.

    .venv/bin/python bench/run.py --help
    .venv/bin/python bench/run.py --quick            # a smoke run: small sizes, prints only
    .venv/bin/python bench/run.py --write            # full sizes, writes docs/benchmarks.md

Every comparison is timed on the client's wall clock for both sides (submit to result);
Chordal's runs also show their span on Redis's clock as an extra column.

1. Per-step cost: a 100-step chain of `echo` steps vs a raw chain of 100 no-op tasks.
2. Fan-out throughput: 1,000 independent `echo` steps vs a raw group of 1,000 no-ops.
3. Latency: a 1-step plan, submit to report, vs a raw ``delay().get()`` (p50, p95).
4. Redis round trips, commands and bytes per step over a measured chain, for both sides.
5. 1-3 again on a worker with metrics (CHORDAL_METRICS_PORT) and tracing (a span exporter
   that drops its spans) on, so their cost is known.
6. Makespan efficiency on 20 random DAGs of 30-60 `sleep` steps (20-300 ms), with worker
   slots >= the widest level: makespan / max(critical path, total work / slots), for
   Chordal's dataflow compilation and for the naive level-by-level canvas.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import redis_cost, sides  # noqa: E402
from bench.doc import table, write_section  # noqa: E402
from bench.measure import pct, per_step_ms, ratio  # noqa: E402
from planner.language.graph import shape, topological_order  # noqa: E402
from planner.language.plan import Plan  # noqa: E402

SLOTS = 12
Row = tuple[str, ...]
HEADER = ("measure", "Chordal (client clock)", "Chordal (Redis clock)", "raw Celery",
          "Chordal / raw")


@dataclass(frozen=True)
class Sizes:
    chain: int
    fan_out: int
    samples: int
    dags: int


FULL = Sizes(chain=100, fan_out=1000, samples=50, dags=20)
QUICK = Sizes(chain=20, fan_out=100, samples=10, dags=3)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/run.py", description="Chordal vs raw Celery on the same broker and worker.")
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL",
                                                         "redis://127.0.0.1:6379"),
                   help="Redis without a database (default: $BENCH_REDIS_URL or "
                        "redis://127.0.0.1:6379); its database --db is flushed")
    p.add_argument("--db", type=int, default=12, help="database to use and flush (12)")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each timed run (3)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    p.add_argument("--label", default="before #20", help="the section's name in the doc")
    p.add_argument("--note", default="", help="a line under the section's tables")
    return p.parse_args(argv)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_env(url: str, telemetry: bool, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORDAL_", "OTEL_"))}
    env.update({"CHORDAL_REDIS_URL": url, "CHORDAL_TOOL_MODULES": "planner.tools.testing",
                "CHORDAL_MAX_STEPS": "1000", "PYTHONPATH": str(ROOT), **extra})
    if telemetry:
        env.update({"CHORDAL_METRICS_PORT": str(free_port()),
                    "CHORDAL_TRACE_EXPORTER": "bench.telemetry:discard"})
    return env


@contextmanager
def session(url: str, telemetry: bool, **extra: str) -> Iterator[Any]:
    """A client, and a worker (the production app plus the baselines' tasks, bench/levels.py)
    started for it and stopped after; ``extra``: more of the worker's environment."""
    from planner.client import Client
    from planner.settings import Settings
    from planner.tools import load_registry

    env = worker_env(url, telemetry, **extra)
    settings = Settings.from_env({k: v for k, v in env.items()
                                  if k not in ("CHORDAL_METRICS_PORT", "CHORDAL_TRACE_EXPORTER")})
    client = Client(settings, load_registry(settings.tools.tool_modules))
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.levels", "worker", "-Q", "chordal",
         f"--concurrency={SLOTS}", "--pool=prefork", "--loglevel=WARNING"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while client.missing_queues({"chordal"}, timeout=0.5):
            assert time.monotonic() < deadline, "bench worker did not start"
        sides.raw_chain(client, 10)
        sides.chordal(client, sides.chain_plan(10))  # warm up both paths
        yield client
    finally:
        worker.terminate()
        worker.wait(timeout=30)


Run = Callable[[], sides.Timed]


def paired(chordal: Run, raw: Run, reps: int) -> tuple[list[sides.Timed], list[sides.Timed]]:
    """Alternate the two sides so the machine's drifting load falls on both alike."""
    c, r = [], []
    for _ in range(reps):
        c.append(chordal())
        r.append(raw())
    return c, r


def medians(timed: list[sides.Timed]) -> tuple[float, float]:
    return (statistics.median(t.wall_s for t in timed),
            statistics.median(t.redis_s or 0.0 for t in timed))


def chain_row(client: Any, n: int, reps: int, tag: str) -> Row:
    c, r = paired(lambda: sides.chordal(client, sides.chain_plan(n)),
                  lambda: sides.raw_chain(client, n), reps)
    (cw, cr), (rw, _) = medians(c), medians(r)
    return (f"per step, {n}-step chain{tag}", f"{per_step_ms(cw, n):.2f} ms",
            f"{per_step_ms(cr, n):.2f} ms", f"{per_step_ms(rw, n):.2f} ms",
            f"{ratio(cw, rw):.2f}x time")


def fan_out_row(client: Any, n: int, reps: int, tag: str) -> Row:
    c, r = paired(lambda: sides.chordal(client, sides.fan_out_plan(n)),
                  lambda: sides.raw_group(client, n), reps)
    (cw, cr), (rw, _) = medians(c), medians(r)
    return (f"fan-out throughput, {n:,} steps{tag}", f"{n / cw:.0f} steps/s",
            f"{n / cr:.0f} steps/s", f"{n / rw:.0f} tasks/s", f"{ratio(rw, cw):.2f}x throughput")


def latency_rows(client: Any, samples: int, tag: str) -> list[Row]:
    c, r = paired(lambda: sides.chordal(client, sides.chain_plan(1)),
                  lambda: sides.raw_one(client), samples)
    rows: list[Row] = []
    for q in (0.5, 0.95):
        cw, rw = pct([t.wall_s for t in c], q), pct([t.wall_s for t in r], q)
        cr = pct([t.redis_s or 0.0 for t in c], q)
        rows.append((f"1-step submit to result, p{round(q * 100)}{tag}", f"{cw * 1000:.1f} ms",
                     f"{cr * 1000:.1f} ms", f"{rw * 1000:.1f} ms", f"{ratio(cw, rw):.2f}x time"))
    return rows


def redis_rows(client: Any, n: int, tag: str) -> list[Row]:
    c_trips, c = redis_cost.per_step(client.store.r,
                                     lambda: sides.chordal(client, sides.chain_plan(n)), n)
    r_trips, raw = redis_cost.per_step(client.store.r, lambda: sides.raw_chain(client, n), n)
    return [(f"Redis commands sent per step, {n}-step chain{tag}", f"{c_trips:.1f}", "",
             f"{r_trips:.1f}", f"{ratio(c_trips, r_trips):.2f}x"),
            (f"Redis commands per step incl. scripts' calls, {n}-step chain{tag}",
             f"{c.commands:.1f}", "", f"{raw.commands:.1f}",
             f"{ratio(c.commands, raw.commands):.2f}x"),
            (f"Redis bytes per step (in + out), {n}-step chain{tag}", f"{c.bytes:,.0f}", "",
             f"{raw.bytes:,.0f}", f"{ratio(c.bytes, raw.bytes):.2f}x")]


def comparison_rows(client: Any, sizes: Sizes, reps: int, tag: str = "") -> list[Row]:
    return [chain_row(client, sizes.chain, reps, tag),
            fan_out_row(client, sizes.fan_out, reps, tag),
            *latency_rows(client, sizes.samples, tag),
            *redis_rows(client, sizes.chain, tag)]


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


def makespan_rows(client: Any, count: int) -> list[Row]:
    """Makespan on Redis's clock (the run's creation to its end) over the lower bound."""
    rng = random.Random(20261121)
    eff: dict[str, list[float]] = {"dataflow": [], "levels": []}
    for dag in [random_dag(rng) for _ in range(count)]:
        bound = lower_bound(dag)
        for mode, values in eff.items():
            values.append((sides.chordal(client, dag, mode).redis_s or 0.0) / bound)
    return [(label, f"median {statistics.median(eff[mode]):.3f}",
             f"p95 {pct(eff[mode], 0.95):.3f}", f"max {max(eff[mode]):.3f}")
            for mode, label in (("dataflow", "Chordal (dataflow)"),
                                ("levels", "naive level-by-level canvas"))]


def show(header: Row, rows: list[Row]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)), flush=True)


def machine(load: tuple[float, float]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}; measured {when}"
            f"; load average (1 min) {load[0]:.2f} at the start, {load[1]:.2f} at the end.")


def section(args: argparse.Namespace, url: str, rows: list[Row], spans: list[Row],
            load: tuple[float, float]) -> str:
    start, end = section_markers(args.label)
    return "\n".join([
        start, f"## Side by side, one run: {args.label}", "",
        f"Reproduce: `.venv/bin/python bench/run.py --write --label '{args.label}'` "
        f"(`--help` for the options). One invocation against `{url}`, one prefork worker "
        f"of {SLOTS} processes for both sides; both timed on the client's wall clock "
        "(submit to result), Chordal's run also on Redis's clock (its recorded creation "
        f"to its end). Medians of {args.reps} alternated repetitions for the chain and the "
        f"fan-out; latency over {FULL.samples if not args.quick else QUICK.samples} "
        "alternated samples. Redis costs are measured by the server "
        "over one chain (client and worker included), less the idle rate measured over "
        "2 s just before, divided by the steps: commands sent are those that arrived over "
        "the network (MONITOR, over a second chain; a pipeline's commands count one by "
        "one, so they bound round trips from above), commands incl. scripts' calls also "
        "count every call a Lua script makes (`total_commands_processed`), bytes are "
        "`total_net_input_bytes` + `total_net_output_bytes`. \"metrics + tracing on\": the worker "
        "has CHORDAL_METRICS_PORT set (prometheus multiprocess files) and "
        "CHORDAL_TRACE_EXPORTER=bench.telemetry:discard (spans made and batched, then "
        "dropped).", "", machine(load), "",
        *table(HEADER, rows), "",
        *table(("makespan / lower bound", "median", "p95", "max"), spans), "",
        *([args.note, ""] if args.note else []), end])


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import redis

    sizes, url = (QUICK if args.quick else FULL), f"{args.redis_url}/{args.db}"
    redis.Redis.from_url(url).flushdb()
    load0 = os.getloadavg()[0]
    with session(url, telemetry=False) as client:
        rows = comparison_rows(client, sizes, args.reps)
        show(HEADER, rows)
        spans = makespan_rows(client, sizes.dags)
        show(("makespan / lower bound", "median", "p95", "max"), spans)
    with session(url, telemetry=True) as client:
        on = comparison_rows(client, sizes, args.reps, " (metrics + tracing on)")
        show(HEADER, on)
    if args.write:
        write_section(*section_markers(args.label),
                      section(args, url, rows + on, spans, (load0, os.getloadavg()[0])))


def section_markers(label: str) -> tuple[str, str]:
    slug = "".join(ch if ch.isalnum() else "-" for ch in label.lower())
    return f"<!-- run:{slug}:start -->", f"<!-- run:{slug}:end -->"


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    # Celery's AsyncResult objects of the raw baselines unsubscribe in __del__, which fails
    # noisily during interpreter teardown; everything is written, so leave without it.
    os._exit(0)
