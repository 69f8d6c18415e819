"""The run store on one Redis vs a Redis Cluster, and what a reconciler pass costs as runs
pile up.

    .venv/bin/python bench/cluster.py --help
    .venv/bin/python bench/cluster.py reconcile --runs 100000   # prints only
    .venv/bin/python bench/cluster.py throughput --quick        # prints only

``reconcile``: a throwaway redis-server holding ``--runs`` finished runs (the index entry
and the run's record with a final status: what the reconciler reads of them) and
``--active`` runs that have not ended; then the reconciler passes of a worker that just
took the lock, one after another, each timed on the wall clock with the commands Redis
processed for it (``total_commands_processed``: machine-independent). Before #20 the first
pass read the whole index (every run ever made and not expired); after, each pass reads
at most one batch of it until it is through.

``throughput``: N runs of a fan-out (M leaves and a join) submitted at once to one worker
of 4 processes, the broker on RabbitMQ (127.0.0.1:5672, a virtual host of its own), the run
store on one redis-server, then on a 3-master Redis Cluster on loopback ports: steps per
second on the client's wall clock. Both on the same machine, so the cluster's masters share
its cores with the worker: this measures the cluster's overhead, not its scale-out.

``--write`` puts the figures into docs/benchmarks.md (section "Redis Cluster").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.doc import table, write_section  # noqa: E402
from bench.run import machine, show  # noqa: E402

START, END = "<!-- cluster:start -->", "<!-- cluster:end -->"


@contextmanager
def single_redis() -> Iterator[str]:
    """A redis-server of this benchmark's own on a free loopback port."""
    from tests import redis_server

    try:
        yield redis_server.url(0)
    finally:
        redis_server.stop()


@contextmanager
def cluster_redis() -> Iterator[str]:
    from tests import cluster_server

    cluster = cluster_server.start()
    try:
        yield cluster.url
    finally:
        cluster.stop()


# -- reconcile ---------------------------------------------------------------------------
def fill(r: Any, runs: int) -> None:
    """``runs`` finished runs, as the reconciler sees them: in the index, status final."""
    from planner.store.keys import RUN_INDEX, RunKeys

    now = time.time()
    for start in range(0, runs, 5_000):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(runs, start + 5_000)):
            run_id = f"{i:020x}"
            pipe.zadd(RUN_INDEX, {run_id: now - runs + i})
            pipe.hset(RunKeys(run_id).run, mapping={"status": "succeeded", "goal": "bench"})
        pipe.execute()


def commands(r: Any) -> int:
    """Commands processed so far (on a cluster: by every node)."""
    info = r.info("stats")
    if "total_commands_processed" in info:
        return int(info["total_commands_processed"])
    return sum(int(node["total_commands_processed"]) for node in info.values())


def reconcile_passes(url: str, runs: int, active: int, passes: int) -> list[tuple[float, int]]:
    """(seconds, commands) of each of ``passes`` passes of a reconciler that just took the
    lock, over ``runs`` finished runs and ``active`` runs that have not ended."""
    from planner.engine.dispatch import MemoryPublisher
    from planner.engine.reconcile import Reconciler
    from planner.engine.runtime import Runtime
    from planner.settings import Settings
    from planner.store.runs import RunStore
    from planner.tools import ToolRegistry

    # The broker is never used here (the publisher records), but a cluster needs one set.
    settings = Settings.from_env({"CHORDAL_REDIS_URL": url,
                                  "CHORDAL_BROKER_URL": "amqp://guest:guest@127.0.0.1//"})
    store = RunStore.from_url(url)
    store.r.flushall()
    fill(store.r, runs)
    plan = {"goal": "g", "steps": [{"id": "a", "tool": "echo", "args": {"value": 1}}]}
    from planner.language.plan import Plan

    for _ in range(active):  # pending, never started: quiet for less than the grace
        store.create_run("bench", Plan.model_validate(plan))
    rt = Runtime(settings, MemoryPublisher(), tools=ToolRegistry(), store=store)
    rec = Reconciler(rt, lock_s=600, settle_s=0)
    nodes = len(info) if "total_commands_processed" not in (info := store.r.info("stats")) \
        else 1  # the INFO that counts is counted too
    found: list[tuple[float, int]] = []
    for _ in range(passes):
        before = commands(store.r)
        t0 = time.perf_counter()
        rec.tick()
        found.append((time.perf_counter() - t0, commands(store.r) - before - nodes))
    rec.release()
    return found


def reconcile_rows(args: argparse.Namespace) -> list[tuple[str, ...]]:
    rows = []
    with (cluster_redis if args.cluster else single_redis)() as url:
        for runs in args.runs:
            passes = reconcile_passes(url, runs, args.active, args.passes)
            first, rest = passes[0], passes[1:]
            worst = max(passes, key=lambda p: p[0])
            rows.append((f"{runs:,}", f"{first[0] * 1000:.1f} ms / {first[1]:,}",
                         f"{worst[0] * 1000:.1f} ms / {worst[1]:,}",
                         f"{rest[-1][0] * 1000:.1f} ms / {rest[-1][1]:,}" if rest else "-"))
    return rows


# -- throughput --------------------------------------------------------------------------
def fan_out(m: int) -> dict[str, Any]:
    leaves = [{"id": f"l{i}", "tool": "echo", "args": {"value": i}} for i in range(m)]
    return {"goal": "fan-out", "steps": [*leaves, {
        "id": "all", "tool": "concat", "args": {"items": [[{"$ref": f"l{i}"}]
                                                          for i in range(m)]}}]}


def throughput(url: str, broker: str, runs: int, width: int, reps: int) -> list[float]:
    """Steps per second of ``runs`` fan-outs of ``width`` leaves submitted at once."""
    from planner.client import Client
    from planner.settings import Settings
    from planner.tools import load_registry

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHORDAL_")}
    env.update(CHORDAL_REDIS_URL=url, CHORDAL_BROKER_URL=broker, PYTHONPATH=str(ROOT),
               CHORDAL_TOOL_MODULES="planner.tools.testing")
    settings = Settings.from_env(env)
    client = Client(settings, load_registry(settings.tools.tool_modules))
    worker = subprocess.Popen(
        [sys.executable, "-m", "planner.cli", "worker", "--concurrency=4",
         "--loglevel=WARNING"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if not client.missing_queues({"chordal"}, timeout=0.5):
                    break
            except OSError:  # a fresh virtual host may reset the first connections
                time.sleep(0.5)
            assert time.monotonic() < deadline, "bench worker did not start"
        plan = client.compile(fan_out(width))
        client.wait(client.submit(plan), 60)  # warm up
        rates = []
        for _ in range(reps):
            t0 = time.perf_counter()
            ids = [client.submit(plan) for _ in range(runs)]
            for run_id in ids:
                assert client.wait(run_id, 600).status == "succeeded"
            rates.append(runs * (width + 1) / (time.perf_counter() - t0))
        return rates
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def throughput_rows(args: argparse.Namespace) -> list[tuple[str, ...]]:
    from tests.cluster.conftest import virtual_host  # a RabbitMQ vhost of its own

    rows = []
    for name, store in (("1 redis-server", single_redis), ("3-master cluster", cluster_redis)):
        with store() as url, virtual_host("bench") as broker:
            rates = sorted(throughput(url, broker, args.fan_runs, args.width, args.reps))
            rows.append((name, f"{args.fan_runs} x {args.width + 1}",
                         f"{rates[len(rates) // 2]:.0f}", f"{rates[0]:.0f}-{rates[-1]:.0f}"))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("what", choices=("reconcile", "throughput", "both"))
    p.add_argument("--runs", type=int, nargs="+", default=[1_000, 10_000, 100_000],
                   help="finished runs in the store (reconcile)")
    p.add_argument("--active", type=int, default=20, help="runs not ended (reconcile)")
    p.add_argument("--passes", type=int, default=5, help="reconciler passes (reconcile)")
    p.add_argument("--cluster", action="store_true",
                   help="the store on a 3-master cluster (reconcile)")
    p.add_argument("--fan-runs", type=int, default=20, help="runs at once (throughput)")
    p.add_argument("--width", type=int, default=20, help="leaves per run (throughput)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (throughput)")
    p.add_argument("--quick", action="store_true", help="small shapes, prints only")
    p.add_argument("--write", action="store_true", help="into docs/benchmarks.md")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.runs, args.fan_runs, args.width, args.reps = [1_000], 5, 5, 1
    load0 = os.getloadavg()[0]
    lines: list[str] = []
    if args.what in ("reconcile", "both"):
        header = ("finished runs", "first pass (took the lock)", "slowest pass",
                  f"pass {args.passes}")
        rows = reconcile_rows(args)
        show(header, rows)
        lines += ["Reconciler passes (time / Redis commands), "
                  f"{args.active} runs not ended:", "", *table(header, rows), ""]
    if args.what in ("throughput", "both"):
        header = ("run store", "runs x steps", "steps/s (median)", "range")
        rows = throughput_rows(args)
        show(header, rows)
        lines += [*table(header, rows), ""]
    print(machine((load0, os.getloadavg()[0])))
    if args.write:
        write_section(START, END, "\n".join([
            START, "## Redis Cluster (bench/cluster.py)", "",
            f"Reproduce: `.venv/bin/python bench/cluster.py {args.what} --write`.", "",
            *lines, machine((load0, os.getloadavg()[0])), END]))


if __name__ == "__main__":
    main()
