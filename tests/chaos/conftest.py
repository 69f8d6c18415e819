"""Chaos fixtures and helpers: real workers (killed with SIGKILL), a Redis that goes away,
lost broker messages, and the checks that every run still ends, correctly.

Each test is bounded: its waits have deadlines, and a deadline that passes fails the test
with the runs that are stuck and their unfinished steps, not a pytest-timeout kill. Every
process a test starts is killed in the fixtures' teardown.

Redis: database 3 of the test process's own Redis (tests/redis_server.py); only that
database is flushed, before each test. The Redis-restart test starts a Redis of its own.
``CHAOS_LONG=1`` runs the long form (more runs, more kills); ``CHAOS_SEED`` replays a run's
random choices; ``CHAOS_REPORT`` is where the drain test writes its measurements (JSON).

The workers run with short leases and a fast reconciler (``KNOBS``). On code whose Settings
does not know those variables yet, they are left out (the workers would refuse to start),
and every failure message says so.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from planner.cli.embedded import redis_answers, redis_server_binary
from planner.client import Client
from planner.settings import Settings
from planner.store.records import TERMINAL_RUN, RunEvent, RunReport
from planner.tools import load_registry
from tests import redis_server
from tests.integration.conftest import (
    Worker,
    _free_port,
    base_env,
    start_worker,
    wait_for_queues,
)

LONG = os.environ.get("CHAOS_LONG") == "1"
SEED = int(os.environ.get("CHAOS_SEED") or random.randrange(1_000_000))
CHAOS_DB = 3
TOOL_MODULES = "planner.tools.testing"

LEASE_S, RECONCILE_S, GRACE_S = 2.0, 0.5, 2.0
KNOBS = {
    "CHORDAL_STEP_LEASE_S": str(LEASE_S),
    "CHORDAL_RECONCILE_INTERVAL_S": str(RECONCILE_S),
    "CHORDAL_DISPATCH_GRACE_S": str(GRACE_S),
}
#: Attempts a chaos step may use: a step whose worker is killed more than this many times
#: ends failed (WorkerLost), which would be right but is not what these tests look at.
MAX_RETRIES = 8
#: The kinds of ``run.repaired`` events (their data: ``{"kind", "step", "why"}``).
REPAIR_KINDS = ("lease_expired", "message_lost", "never_dispatched", "stalled_run",
                "unrecoverable")


def _missing_knobs() -> list[str]:
    known = set(Settings.env_names())
    return [k for k in KNOBS if k not in known]


#: The chaos settings this code does not know (empty once leases and the reconciler land).
MISSING_KNOBS = _missing_knobs()
NOTE = ("" if not MISSING_KNOBS else
        f"\nNOTE: this code's Settings has no {', '.join(MISSING_KNOBS)}: the workers ran "
        "without them (no step leases or reconciler to repair the faults?)")
SEED_NOTE = f"(CHAOS_SEED={SEED}, CHAOS_LONG={int(LONG)})"


def chaos_env(redis_url: str, **extra: str) -> dict[str, str]:
    """A worker's and client's environment: testing tools only, short leases, a fast
    reconciler (those this code knows)."""
    knobs = {k: v for k, v in KNOBS.items() if k not in MISSING_KNOBS}
    return base_env(redis_url, CHORDAL_TOOL_MODULES=TOOL_MODULES, **knobs, **extra)


def _worker_takes_hostname() -> bool:
    """Whether ``chordal worker`` has a ``--hostname`` option (distinct node names)."""
    from planner.cli import dev
    return "hostname" in inspect.signature(dev.worker).parameters


WORKER_HOSTNAMES = _worker_takes_hostname()
#: Without ``--hostname`` every worker here is ``celery@<host>``, which Celery warns about
#: on each broadcast; the tests tell workers apart by process group instead.
SAME_NODE_NAMES = pytest.mark.filterwarnings(
    "ignore::celery.exceptions.DuplicateNodenameWarning")


def hard_kill(worker: Worker) -> None:
    """SIGKILL the worker's whole process group, even if its main process already died
    (its pool processes may not have)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        worker.process.wait(timeout=10)


class Cluster:
    """A client and the workers behind it. Workers are started with the project's
    ``chordal worker`` command, each in a process group of its own."""

    def __init__(self, env: dict[str, str], logdir: Path, *worker_args: str) -> None:
        self.env = env
        self.settings = Settings.from_env(env)
        self.client = Client(self.settings, load_registry(self.settings.tools.tool_modules))
        self.redis = self.client.store.r
        self.logdir = logdir
        self.worker_args = worker_args or ("--concurrency=2",)
        self.workers: list[Worker] = []
        self.killed = 0

    def start_worker(self, *args: str) -> Worker:
        n = len(self.workers) + 1
        extra = [f"--hostname=chaos{n}@%h"] if WORKER_HOSTNAMES else []
        worker = start_worker(self.env, self.logdir / f"worker-{n}.log",
                              *(args or self.worker_args), *extra)
        self.workers.append(worker)
        return worker

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    def wait_ready(self, worker: Worker, queues: set[str] | None = None,
                   timeout: float = 60) -> None:
        """Until some worker consumes ``queues`` (fails with ``worker``'s log if it died)."""
        wait_for_queues(self.client, queues or {"chordal"}, worker, timeout)

    def wait_workers(self, count: int, timeout: float = 60) -> None:
        """Until ``count`` workers answer a ping."""
        deadline = time.monotonic() + timeout
        while True:
            replies = self.client.app.control.ping(timeout=0.5) or []
            if len(replies) >= count:
                return
            dead = [w for w in self.workers if w.process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{len(replies)} of {count} workers answer; log:\n"
                                   f"{(dead or self.workers)[0].log.read_text()[-3000:]}")

    @staticmethod
    def is_ready(worker: Worker) -> bool:
        """Whether the worker said it is ready (Celery logs "<node> ready.")."""
        return worker.log.exists() and " ready." in worker.log.read_text(errors="replace")

    def running_steps(self, timeout: float = 1.0) -> list[tuple[int, str, float]]:
        """``(worker index, task id, start time)`` of each step a live worker's pool runs
        now. Asked by broadcast, whose replies come as a list (so workers that share a
        node name answer apart); a task's ``worker_pid`` (its pool process) finds its
        worker by process group. A reply may be missed: ask again."""
        groups = {w.process.pid: i for i, w in enumerate(self.workers)
                  if w.process.poll() is None}
        # Wait for the replies of the workers that are ready, not for the whole timeout
        # (after which the steps seen would be long done).
        ready = sum(1 for i in groups.values() if self.is_ready(self.workers[i]))
        replies = self.client.app.control.broadcast(
            "active", reply=True, timeout=timeout, limit=ready or None)
        found: list[tuple[int, str, float]] = []
        for reply in replies or []:
            for tasks in reply.values():
                for task in tasks if isinstance(tasks, list) else []:
                    if task.get("name") != "chordal.step" or not task.get("worker_pid"):
                        continue
                    try:
                        group = os.getpgid(int(task["worker_pid"]))
                    except (ProcessLookupError, ValueError):
                        continue
                    if group in groups:
                        found.append((groups[group], str(task.get("id")),
                                      float(task.get("time_start") or 0)))
        return found

    def kill(self, worker: Worker) -> None:
        hard_kill(worker)
        self.killed += 1

    def close(self) -> None:
        for worker in self.workers:
            hard_kill(worker)

    def log_errors(self, limit: int = 12) -> str:
        """The last errors of the workers' logs, each once with its count: ERROR and
        CRITICAL lines, and the exception line that ends each traceback."""
        found: Counter[str] = Counter()
        order: list[str] = []
        for worker in self.workers:
            if not worker.log.exists():
                continue
            in_traceback = False
            for line in worker.log.read_text(errors="replace").splitlines():
                if line.startswith("Traceback"):
                    in_traceback = True
                    continue
                if in_traceback and line[:1] in (" ", "\t", ""):
                    continue
                error = in_traceback or "ERROR" in line or "CRITICAL" in line
                in_traceback = False
                if error:
                    # Without the timestamp, so that repeats count as one.
                    text = f"{worker.log.stem}: {line.split('] ', 1)[-1][:300]}"
                    if text not in found:
                        order.append(text)
                    found[text] += 1
        shown = [f"{t} (x{found[t]})" if found[t] > 1 else t for t in order[-limit:]]
        return "\n".join(shown) or "(no errors logged)"


@pytest.fixture(scope="session")
def chaos_url() -> str:
    """The Redis database of the chaos tests (broker and run store)."""
    return redis_server.url(CHAOS_DB)


@pytest.fixture
def chaos_redis(chaos_url: str) -> redis.Redis:
    """The chaos database, flushed (only it: the other databases belong to others)."""
    r = redis.Redis.from_url(chaos_url)
    r.flushdb()
    return r


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """``clusters(env, *worker_args)``: a Cluster whose workers die with the test."""
    made: list[Cluster] = []

    def make(env: dict[str, str], *worker_args: str) -> Cluster:
        logdir = tmp_path / f"cluster-{len(made) + 1}"
        logdir.mkdir()
        cluster = Cluster(env, logdir, *worker_args)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()


class RedisServer:
    """A redis-server of its own with AOF, on a free port, restartable on the same port and
    directory (the pattern of tests/store/test_redis_restart.py)."""

    def __init__(self, workdir: Path, appendfsync: str = "always") -> None:
        self.port, self.workdir, self.appendfsync = _free_port(), workdir, appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> None:
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir), "--appendonly", "yes",
             "--appendfsync", self.appendfsync, "--save", "",
             "--maxmemory-policy", "noeviction"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not redis_answers(self.url, timeout=0.2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        # Loading the AOF: the server answers LOADING errors until it is done.
        r = redis.Redis.from_url(self.url)
        while True:
            try:
                r.ping()
                if not int(r.info("persistence").get("loading", 0)):
                    return
            except redis.BusyLoadingError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not finish loading its AOF")
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM: the AOF is flushed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """kill -9: whatever the AOF had not written is lost."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


# -- plans ------------------------------------------------------------------------------

Plan = dict[str, Any]
Outputs = dict[str, Any]


def random_dag(rng: random.Random, n_steps: int, goal: str,
               sleep_s: tuple[float, float] = (0.05, 0.3), p_sleep: float = 0.5
               ) -> tuple[Plan, Outputs]:
    """A random DAG of ``echo`` and ``sleep`` steps whose dependencies are ``$ref`` s, and
    the output every step must have. Step ``sK`` returns ``{"id", "n", "got"}``: ``got``
    is the ``n`` of each step it reads, in order."""
    steps: list[dict[str, Any]] = []
    expected: Outputs = {}
    numbers: dict[str, int] = {}
    for i in range(n_steps):
        sid = f"s{i}"
        window = list(range(max(0, i - 8), i))  # recent steps: deep chains, some fan-in
        k = min(len(window), rng.choice((0, 1, 1, 1, 2, 2, 3)) if i else 0)
        parents = sorted(rng.sample(window, k))
        numbers[sid] = rng.randrange(1_000_000)
        value = {"id": sid, "n": numbers[sid],
                 "got": [{"$ref": f"s{p}.n"} for p in parents]}
        expected[sid] = {"id": sid, "n": numbers[sid],
                         "got": [numbers[f"s{p}"] for p in parents]}
        if rng.random() < p_sleep:
            tool = "sleep"
            args: dict[str, Any] = {"seconds": round(rng.uniform(*sleep_s), 3), "value": value}
        else:
            tool, args = "echo", {"value": value}
        steps.append({"id": sid, "tool": tool, "args": args, "max_retries": MAX_RETRIES})
    return {"goal": goal, "steps": steps}, expected


def layered_dag(layers: int, width: int, goal: str = "drain") -> tuple[Plan, Outputs]:
    """``layers`` x ``width`` echo steps; each step reads two steps of the layer above."""
    steps: list[dict[str, Any]] = []
    expected: Outputs = {}
    for layer in range(layers):
        for j in range(width):
            sid, n = f"l{layer}_{j}", layer * 1000 + j
            ups = [] if layer == 0 else sorted({j, (j + 1) % width})
            value = {"n": n, "up": [{"$ref": f"l{layer - 1}_{u}.n"} for u in ups]}
            expected[sid] = {"n": n, "up": [(layer - 1) * 1000 + u for u in ups]}
            steps.append({"id": sid, "tool": "echo", "args": {"value": value}})
    return {"goal": goal, "steps": steps}, expected


def sinks(plan: Plan) -> list[str]:
    read = {ref["$ref"].split(".")[0] for s in plan["steps"] for ref in _refs(s["args"])}
    read |= {d for s in plan["steps"] for d in s.get("depends_on", [])}
    return [s["id"] for s in plan["steps"] if s["id"] not in read]


def _refs(value: Any) -> Iterator[dict[str, str]]:
    if isinstance(value, dict):
        if "$ref" in value:
            yield value
        else:
            for v in value.values():
                yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


# -- checks -----------------------------------------------------------------------------

def events(client: Client, run_id: str) -> list[RunEvent]:
    return client.store.events(run_id, count=1_000_000)


def repairs(evs: Sequence[RunEvent]) -> list[dict[str, Any]]:
    """The ``run.repaired`` events' data: ``{"kind", "step", "why"}``."""
    found = []
    for e in evs:
        if e.type == "run.repaired":
            data = e.data if isinstance(e.data, dict) else {"kind": "?", "why": e.data}
            found.append({"step": e.step, **data})
    return found


def repair_counts(client: Client, run_ids: Sequence[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for run_id in run_ids:
        try:
            counts.update(str(r.get("kind")) for r in repairs(events(client, run_id)))
        except redis.RedisError:
            counts["(unreadable)"] += 1
    return counts


def started_after_success(evs: Sequence[RunEvent]) -> list[str]:
    """Steps started again after they had succeeded: what must never happen."""
    done: dict[str, str] = {}
    bad = []
    for e in evs:
        if e.type == "step.finished" and e.status == "succeeded" and e.step:
            done.setdefault(e.step, e.id)
        elif e.type == "step.started" and e.step in done:
            bad.append(f"{e.step} started (event {e.id}, attempt {e.data}) after it "
                       f"succeeded (event {done[e.step]})")
    return bad


def output_mismatches(report: RunReport, plan: Plan, expected: Outputs) -> list[str]:
    bad = [f"{sid}: {report.steps[sid].output!r} != {want!r}"
           for sid, want in expected.items()
           if sid not in report.steps or report.steps[sid].output != want]
    answer = {s: expected[s] for s in sinks(plan)}
    if report.answer != answer:
        bad.append(f"answer {report.answer!r} != {answer!r}")
    return bad


def broker_backlog(r: redis.Redis) -> str:
    """Messages waiting in the broker's queue lists, and unacknowledged ones."""
    parts = []
    try:
        for key in sorted(r.scan_iter("chordal*", count=1000)):
            if r.type(key) == b"list":
                parts.append(f"{key.decode(errors='replace')}={r.llen(key)}")
        parts.append(f"unacked={r.hlen('unacked')}")
    except redis.RedisError as exc:
        return f"broker unreadable ({exc})"
    return ", ".join(parts)


def describe_stuck(client: Client, run_ids: Sequence[str], limit: int = 8) -> str:
    """Each run that has not ended: its status and its steps that are not final."""
    lines = []
    for run_id in list(run_ids)[:limit]:
        try:
            run = client.store.run_state(run_id)
            states = client.store.step_states(run_id)
            open_steps = [
                f"{sid} {st.status}{' dispatched' if st.dispatched else ''} "
                f"attempts={st.attempts}{' on ' + st.worker if st.worker else ''}"
                for sid, st in sorted(states.items()) if not st.final]
            done = sum(1 for st in states.values() if st.final)
            lines.append(f"  run {run_id}: {run.status} v{run.version}, {done} steps final, "
                         f"not final: {'; '.join(open_steps[:10]) or 'none'}"
                         f"{' ...' if len(open_steps) > 10 else ''}")
        except redis.RedisError as exc:
            lines.append(f"  run {run_id}: unreadable ({exc})")
    if len(run_ids) > limit:
        lines.append(f"  ... and {len(run_ids) - limit} more")
    return "\n".join(lines)


def wait_all(client: Client, run_ids: Sequence[str], timeout: float, what: str = "",
             cluster: Cluster | None = None) -> dict[str, RunReport]:
    """Until every run has ended (riding out Redis errors); past ``timeout`` the test
    fails, listing the stuck runs and their unfinished steps."""
    deadline = time.monotonic() + timeout
    pending = list(run_ids)
    while pending and time.monotonic() < deadline:
        with contextlib.suppress(redis.RedisError):  # Redis restarting: ask again
            pending = [rid for rid in pending
                       if client.store.run_state(rid).status not in TERMINAL_RUN]
        if pending:
            time.sleep(0.2)
    if pending:
        logs = f"\nworker log errors:\n{cluster.log_errors()}" if cluster else ""
        pytest.fail(
            f"{what}{len(pending)} of {len(run_ids)} runs did not end within {timeout:.0f} s "
            f"{SEED_NOTE}:\n{describe_stuck(client, pending)}\n"
            f"repairs seen: {dict(repair_counts(client, run_ids)) or 'none'}; broker: "
            f"{broker_backlog(client.store.r)}{logs}{NOTE}", pytrace=False)
    return {rid: client.report(rid) for rid in run_ids}


def write_report(name: str, data: dict[str, Any]) -> None:
    """Merge ``{name: data}`` into the JSON file named by CHAOS_REPORT, if set."""
    path = os.environ.get("CHAOS_REPORT")
    if not path:
        return
    target = Path(path)
    current: dict[str, Any] = {}
    if target.exists():
        try:
            current = json.loads(target.read_text())
        except json.JSONDecodeError:
            current = {}
    current[name] = data
    target.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")


def until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.05
          ) -> None:
    """Poll ``condition`` until true; past ``timeout`` the test fails saying ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{NOTE}",
                        pytrace=False)
        time.sleep(poll)
