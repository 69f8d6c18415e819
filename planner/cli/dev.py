"""Commands that start processes: a worker, and ``dev`` (Redis if needed, plus a worker)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from planner.cli.app import app, err, registry, settings, user_errors
from planner.cli.embedded import ensure_redis, require_reachable
from planner.cli.follow import EXIT_INTERRUPTED, finish
from planner.cli.runs import run_goal, run_plan
from planner.errors import ConfigError, InvalidInput, Unavailable
from planner.wire import DEFAULT_QUEUE

#: The Celery app the workers run, named as ``celery -A`` takes it (no import from here).


def worker_app() -> str:
    """The Celery app to start, as Celery's ``-A`` takes it: the ``chordal.worker`` entry
    point's value (``workers.app:app``, installed with Chordal)."""
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group="chordal.worker") if ep.name == "app"]
    if not found:
        raise ConfigError("no Chordal worker app is installed (entry point group "
                          "'chordal.worker', name 'app'): reinstall chordal, e.g. "
                          "`pip install -e .` in a checkout")
    return str(found[0].value)


@app.command()
@user_errors
def worker(
    concurrency: Annotated[int | None, typer.Option("--concurrency", "-c", min=1,
                                                    help="Processes or threads.")] = None,
    pool: Annotated[str, typer.Option(help="prefork (CPU-bound tools, enforces timeouts) "
                                           "or threads (I/O-bound tools).")] = "prefork",
    queues: Annotated[str | None, typer.Option(
        "--queues", "-Q", help="Comma-separated queues (default: every Chordal queue).")
    ] = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "INFO",
    hostname: Annotated[str | None, typer.Option(
        "--hostname", "-n", help="Node name, as Celery takes it (%h: this host's name, "
                                 "%n: its first part, %d: its domain). Default: "
                                 "chordal-<pid>@%h, unique on this host.")] = None,
) -> None:
    """Start a worker (a Celery worker with Chordal's tasks)."""
    if pool not in ("prefork", "threads", "solo"):
        raise InvalidInput(f"--pool must be prefork, threads or solo, not {pool!r}")
    s = settings()
    require_reachable(s)
    names = queues or ",".join(sorted(registry(s).queues | {DEFAULT_QUEUE}))
    # Celery's default, celery@<host>, is the same for every worker on a host: they would
    # answer broadcasts under one name (DuplicateNodenameWarning; queue checks and Flower
    # mix them up) and share one liveness record. The pid tells them apart.
    node = hostname or f"chordal-{os.getpid()}@%h"
    argv = ["-A", worker_app(), "worker", f"--loglevel={loglevel}", f"--pool={pool}",
            f"--queues={names}", "--task-events", f"--hostname={node}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    # As `celery -A workers.app:app worker ...`: Celery imports the app by name.
    from celery.bin.celery import celery as celery_cli  # only the worker command needs it

    celery_cli.main(args=argv, prog_name="chordal worker")


@app.command()
@user_errors
def dev(
    run_path: Annotated[Path | None, typer.Option(
        "--run", help="Run this plan, print its report, then stop everything.")] = None,
    goal: Annotated[str | None, typer.Option(
        "--goal", help="Plan this goal with the model, run it, print the report, stop.")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1)] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="With --run or --goal: a JSON "
                                                          "report.")] = False,
    timeout: Annotated[float, typer.Option(help="With --run or --goal: seconds to wait.",
                                           min=1)] = 120.0,
) -> None:
    """Redis (embedded if none is configured or running) plus a worker, in the foreground.
    Ctrl-C stops them all. With --run or --goal, the exit status is `chordal run --wait`'s
    (3: the run waits for a person)."""
    s = settings()  # fail early on a bad CHORDAL_* variable
    # SIGTERM (a process manager, `kill`) stops everything in order, like Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    with ExitStack() as stack:
        embedded = ensure_redis()
        if embedded:
            stack.callback(embedded.stop)
            err.print(f"dev: started an embedded Redis at {embedded.url}", highlight=False)
        else:
            require_reachable(s)
        cmd = [sys.executable, "-m", "planner.cli", "worker", f"--concurrency={concurrency}"]
        log = None
        if run_path and goal:
            raise InvalidInput("give --run PLAN.json or --goal GOAL, not both")
        once = run_path is not None or goal is not None
        if once:
            # The worker's banner and log would bury the report: they go to a file.
            log = stack.enter_context(tempfile.NamedTemporaryFile(
                prefix="chordal-worker-", suffix=".log", delete=False))
            err.print(f"dev: worker log in {log.name}", highlight=False)
        worker_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT if log else None)
        stack.callback(_stop, worker_proc)
        try:
            if not once:
                err.print("dev: worker started; Ctrl-C stops everything", highlight=False)
                worker_proc.wait()
                return
            from planner.client import Client

            client = Client(s, registry(s))
            deadline = time.monotonic() + 60
            while client.missing_queues({DEFAULT_QUEUE}, timeout=0.5):
                if worker_proc.poll() is not None or time.monotonic() > deadline:
                    raise Unavailable(f"dev: the worker did not start; see {log and log.name}")
            left = partial(_left_behind, embedded=embedded is not None)
            report = (run_plan(client, run_path, True, as_json, timeout, left=left)
                      if run_path else
                      run_goal(client, str(goal), True, as_json, timeout, left=left))
            assert report is not None
            finish(report, as_json, left=left, who="dev: ")
        except KeyboardInterrupt:
            err.print("dev: stopping", highlight=False)
            if once:  # interrupted before the run's end: not a success
                raise typer.Exit(EXIT_INTERRUPTED) from None


def _left_behind(run_id: str, embedded: bool) -> str:
    """What becomes of a run `dev --run/--goal` stops waiting for: its worker stops with
    `dev` (so the run does not go on by itself), and with an embedded Redis so does its
    record."""
    if embedded:
        return (f"run {run_id} stops unfinished: `chordal dev` stops its worker and its "
                "embedded Redis, and the run's record goes with them")
    return (f"run {run_id} is left unfinished: `chordal dev` stops its worker; a worker "
            f"started later (`chordal dev`) carries it on, `chordal cancel {run_id}` ends it")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (running steps finish or are requeued), then kill if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
