"""The run store: runs, steps, outputs and an event log per run, in Redis.

Every transition is one Lua script (``planner/store/lua``), so it is atomic across workers:
a step is marked finished once, and a late duplicate cannot overwrite it. Times come from
Redis's own clock (``TIME``), one clock for every worker, so "b started after a finished"
holds across machines. A run's keys share a hash tag (``{run_id}``), so its scripts touch
one slot. Readers return the typed records of :mod:`planner.store.records`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import redis

from planner import metrics
from planner.errors import Conflict, RunNotFound
from planner.language.plan import Plan
from planner.store import lost, scripts
from planner.store.keys import (
    ACTIVE_RUNS,
    CALLBACK_ATTEMPTS,
    CALLBACKS_DUE,
    REPAIRS,
    RUN_INDEX,
    WORKER_PATTERN,
    RunKeys,
    owner_runs_key,
)
from planner.store.lost import new_run_id
from planner.store.records import (
    REPLAN_REASONS,
    TERMINAL_RUN,
    WAITING_RUN,
    ErrorRecord,
    PlanVersion,
    Repair,
    RunEvent,
    RunOptions,
    RunReport,
    RunSnapshot,
    RunState,
    RunStatus,
    RunSummary,
    StepReport,
    StepState,
    WorkerInfo,
)
from planner.store.steps import DEFAULT_LEASE_S, Begin, Finish, StepTransitions

__all__ = ["DEFAULT_LEASE_S", "EVENTS_MAXLEN", "Begin", "Finish", "Install", "RunStore",
           "new_run_id"]

#: Most entries kept in a run's events stream (trimmed approximately).
EVENTS_MAXLEN = 100_000


@dataclass(frozen=True)
class Install:
    """What ``install_plan`` did: ``ok`` with the steps ready to publish, ``stale`` (the
    run's version moved on: another install won), or ``inactive`` (the run is over)."""

    state: Literal["ok", "stale", "inactive"]
    remaining: int = -1
    ready: tuple[str, ...] = ()


class RunStore(StepTransitions):
    """Runs in Redis (the step transitions are :class:`StepTransitions`'). Safe to share
    between threads (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, retention_s: int = 7 * 86_400) -> None:
        self.r = client
        self.retention_s = retention_s
        self._scripts = {name: scripts.register(client, name) for name in scripts.RUN_SCRIPTS}

    @classmethod
    def from_url(cls, url: str, retention_s: int = 7 * 86_400) -> RunStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, health_check_interval=30),
                   retention_s)

    def _run(self, name: str, keys: list[str], *args: Any) -> Any:
        """Run a store script; ARGV[1] is always the events stream's length."""
        return self._scripts[name](keys=keys, args=[EVENTS_MAXLEN, *args])

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, goal: str, plan: Plan | None = None,
                   deps: Mapping[str, Iterable[str]] | None = None, run_id: str | None = None,
                   options: RunOptions | None = None) -> str:
        """Record a new run (status ``pending``), with plan version 1 if it has a plan yet
        (a goal is planned by the model first). ``options`` are per-run overrides."""
        run_id = run_id or new_run_id()
        k = RunKeys(run_id)
        if plan is not None:
            options = (options or RunOptions()).model_copy(update={"from_plan": True})
        # Watched before it exists: a creator that dies between the two leaves a run the
        # reconciler finds, never one it cannot see (it drops ids with no record).
        now = float(self.r.time()[0])
        self.r.zadd(ACTIVE_RUNS, {run_id: now}, nx=True)
        lost.mark(self.r, now)
        stamp = self._run("create_run", [k.run, k.events], run_id, goal,
                          (options or RunOptions()).model_dump_json(), str(self.retention_s))
        if not stamp:
            raise Conflict(f"run id {run_id!r} is taken; choose another (or none)")
        # The index is a key of its own (not in the run's hash slot): written apart.
        self.r.zadd(RUN_INDEX, {run_id: float(stamp)})
        self.r.zremrangebyscore(RUN_INDEX, 0, now - self.retention_s)
        owner = options.owner if options else None
        if owner is not None:
            # Each API key lists only its own runs: one index per owner, trimmed and
            # expiring with the runs it names.
            key = owner_runs_key(owner)
            pipe = self.r.pipeline(transaction=False)
            pipe.zadd(key, {run_id: float(stamp)})
            pipe.zremrangebyscore(key, 0, now - self.retention_s)
            pipe.expire(key, self.retention_s)
            pipe.execute()
        if plan is not None:
            self.install_plan(run_id, 1, plan, deps)
        return run_id

    def install_plan(self, run_id: str, version: int, plan: Plan,
                     deps: Mapping[str, Iterable[str]] | None = None, *,
                     reason: str = "planned", failed: Sequence[str] = ()) -> Install:
        """Make ``plan`` the run's version ``version``, once and atomically, if the run is
        still at ``version - 1``. Counters, reverse edges and the remaining count are built
        from the step states at this moment; steps it shares with the old version keep
        their state and outputs; old steps it leaves out that never started are marked
        ``replaced``. ``failed``: the failures this version handles."""
        k = RunKeys(run_id)
        edges = {sid: sorted(ups) for sid, ups in
                 (deps if deps is not None else plan.dependencies()).items()}
        previous = ({s.id for s in self.plan(run_id, version - 1).steps} if version > 1
                    else set())
        ids = [s.id for s in plan.steps]
        record = PlanVersion(version=version, reason=reason, failed=sorted(failed),
                             added=[s for s in ids if s not in previous],
                             kept=[s for s in ids if s in previous],
                             dropped=sorted(previous - set(ids)))
        reply = self._run("install_plan", [k.run, k.steps, k.events, k.deps, k.dependents,
                                           k.plans, k.versions, k.unhandled],
                          str(version - 1), str(version), plan.model_dump_json(),
                          json.dumps(edges), json.dumps(sorted(failed)),
                          record.model_dump_json(), str(self.retention_s),
                          json.dumps({s.id: s.tool for s in plan.steps}))
        if reply[0] != "ok":
            return Install(reply[0])
        if reason in REPLAN_REASONS:
            metrics.replanned(reason)  # once: a version installs once
        return Install("ok", int(reply[1]), tuple(reply[2:]))

    def start_run(self, run_id: str) -> bool:
        """pending -> running, once."""
        k = RunKeys(run_id)
        return bool(self._run("start_run", [k.run, k.events]))

    def set_status(self, run_id: str, status: RunStatus, reason: str, *,
                   from_: Sequence[RunStatus]) -> bool:
        """Move a run to a waiting status (or back), only from the statuses ``from_``;
        the ``run.<status>`` event carries the reason."""
        k = RunKeys(run_id)
        return bool(self._run("set_status", [k.run, k.events], status, reason, *from_))

    def set_ending(self, run_id: str, error: ErrorRecord) -> bool:
        """Mark a running run as ending with ``error``, once: no new step starts while its
        partial answer is written. False if it was already ending."""
        return bool(self.r.hsetnx(RunKeys(run_id).run, "ending", error.to_json()))

    def update_options(self, run_id: str, options: RunOptions) -> None:
        self.r.hset(RunKeys(run_id).run, "options", options.model_dump_json())

    def finish_run(self, run_id: str, status: RunStatus, answer: Any = None,
                   error: ErrorRecord | None = None, partial: bool = False) -> bool:
        """End a run that has not ended, once; mark the steps it abandons ``cancelled``;
        re-arm retention."""
        k = RunKeys(run_id)
        reply = self._run("finish_run", [k.run, k.events, k.steps, k.deps], status,
                          "" if answer is None else json.dumps(answer),
                          error.to_json() if error else "", "1" if partial else "0")
        if reply:
            pipe = self.r.pipeline(transaction=False)
            for key in k.all():
                pipe.expire(key, self.retention_s)
            self._queue_callback(pipe, run_id)  # before the run leaves chordal:active
            pipe.zrem(ACTIVE_RUNS, run_id)
            pipe.execute()
            metrics.run_finished(status, reply[0], self._makespan_ratio(run_id)
                                 if status == "succeeded" else None)
        return bool(reply)

    def _makespan_ratio(self, run_id: str) -> float | None:
        """A succeeded run's makespan over its critical path (for the metrics), its final
        plan version's steps weighted by their recorded start and end."""
        try:
            run = self.run_state(run_id)
            deps = self.plan(run_id, run.version).dependencies() if run.version else {}
            spans = {sid: (st.started_at.timestamp(), st.finished_at.timestamp())
                     for sid, st in self.step_states(run_id).items()
                     if st.started_at and st.finished_at}
            return metrics.makespan_ratio(deps, spans)
        except Exception:  # a metric must not fail the run's end, which is recorded
            return None

    def _queue_callback(self, pipe: redis.client.Pipeline, run_id: str) -> None:
        """An ended run with a ``callback_url``: its callback is due now (the workers'
        housekeeping delivers it). A run that ends again (retried) is queued afresh, and a
        delivery still in flight then counts for nothing."""
        if self.options(run_id).callback_url:
            pipe.zadd(CALLBACKS_DUE, {run_id: 0})
            pipe.hdel(CALLBACK_ATTEMPTS, run_id)

    def retry_run(self, run_id: str, step_ids: Sequence[str]) -> int:
        """Re-drive an ended run: ``step_ids`` (failed or cancelled steps of its current
        version) go back to pending; return the plan version. :class:`Conflict` if the
        run has not ended or a step cannot be retried."""
        k = RunKeys(run_id)
        self.run_state(run_id)  # RunNotFound
        # Watched first: a caller that dies after the script leaves a run the reconciler
        # sees (it moves a running run nobody published).
        self.watch(run_id)
        reply = self._run("retry_run", [k.run, k.events, k.steps, k.deps, k.unhandled,
                                        k.claims], json.dumps(list(step_ids)))
        if reply[0] == "never_approved":
            how = "rejected" if reply[1] == "Rejected" else "cancelled before it was approved"
            raise Conflict(f"run {run_id!r} was {how}: its plan never ran and never may; "
                           "submit the plan again to run it")
        if reply[0] == "not_ended":
            raise Conflict(f"run {run_id!r} is {reply[1]}: only a failed or cancelled run "
                           "can be retried")
        if reply[0] == "not_retryable":
            raise Conflict(f"run {run_id!r}: step {reply[1]!r} is not a failed or cancelled "
                           "step of its current plan")
        return int(reply[1])

    def cancel(self, run_id: str) -> bool:
        self.run_state(run_id)  # RunNotFound if it does not exist
        return self.finish_run(run_id, "cancelled", error=ErrorRecord(
            type="Cancelled", message="cancelled by a user"))

    def exists(self, run_id: str) -> bool:
        """Whether the run has a record (it was created and has not expired)."""
        return bool(self.r.exists(RunKeys(run_id).run))

    def run_state(self, run_id: str, fields: dict[str, str] | None = None) -> RunState:
        if fields is None:  # not read already (in a snapshot)
            fields = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).run))
        if not fields:
            raise lost.not_found(self.r, run_id, self.retention_s)
        return RunState.from_fields(fields)

    def runs(self, status: str | None = None, limit: int = 20) -> list[RunSummary]:
        """Runs newest first (those still retained), optionally only in ``status``."""
        found: list[RunSummary] = []
        start = 0
        while len(found) < limit:
            ids = cast(list[str], self.r.zrevrange(RUN_INDEX, start, start + 199))
            if not ids:
                break
            start += len(ids)
            for run_id in ids:
                fields = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).run))
                if not fields:
                    continue  # expired
                run = RunState.from_fields(fields)
                if status is None or run.status == status:
                    found.append(RunSummary.of(run_id, run))
                if len(found) >= limit:
                    break
        return found

    def runs_page(self, owner: str | None, status: str | None = None, limit: int = 20,
                  after: tuple[float, str] | None = None, scan: int = 1_000,
                  ) -> tuple[list[RunSummary], tuple[float, str] | None]:
        """One page of runs newest first: ``owner``'s (every run's when None), optionally
        only in ``status``, after the cursor ``after`` (creation time and run id of the
        last run seen). Returns the page and the cursor of the next one (None at the end).
        At most ``scan`` index entries are read, so a rare status returns short pages
        rather than one long request. The cursor is a position, not an offset: runs created
        meanwhile neither shift nor repeat a page."""
        key = owner_runs_key(owner) if owner is not None else RUN_INDEX
        found: list[RunSummary] = []
        cursor = after
        examined = 0
        batch = min(200, max(limit, 20))
        while len(found) < limit and examined < scan:
            top = "+inf" if cursor is None else repr(cursor[0])
            rows = cast(list[tuple[str, float]], self.r.zrevrangebyscore(
                key, top, "-inf", start=0, num=batch, withscores=True))
            # Same-time runs come in reverse id order; skip those up to the cursor's.
            fresh = [(m, sc) for m, sc in rows if cursor is None or sc < cursor[0]
                     or (sc == cursor[0] and m < cursor[1])]
            if not fresh:
                if len(rows) < batch:
                    return found, None  # the end of the index
                batch *= 2  # a page of runs with one creation time: read further
                continue
            for run_id, score in fresh:
                examined += 1
                cursor = (score, run_id)
                fields = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).run))
                if not fields:
                    if owner is not None:
                        self.r.zrem(key, run_id)  # expired: forget it
                    continue
                run = RunState.from_fields(fields)
                if status is None or run.status == status:
                    found.append(RunSummary.of(run_id, run))
                if len(found) >= limit or examined >= scan:
                    break
            if len(rows) < batch and cursor == (fresh[-1][1], fresh[-1][0]):
                return found, None
        return found, cursor

    def owner(self, run_id: str) -> str | None:
        """Who created the run (``RunOptions.owner``); :class:`RunNotFound` if none."""
        pipe = self.r.pipeline(transaction=False)
        pipe.exists(RunKeys(run_id).run)
        pipe.hget(RunKeys(run_id).run, "options")
        exists, raw = pipe.execute()
        if not exists:
            raise lost.not_found(self.r, run_id, self.retention_s)
        return RunOptions.model_validate_json(raw).owner if raw else None

    def plan(self, run_id: str, version: int) -> Plan:
        text = cast(str | None, self.r.hget(RunKeys(run_id).plans, str(version)))
        if text is None:
            raise RunNotFound(f"run {run_id!r} has no plan version {version}")
        return Plan.model_validate_json(text)

    def options(self, run_id: str) -> RunOptions:
        raw = cast(str | None, self.r.hget(RunKeys(run_id).run, "options"))
        return RunOptions.model_validate_json(raw) if raw else RunOptions()

    def claim(self, run_id: str, name: str, holder: str, *, reentrant: bool = False) -> bool:
        """Claim ``name`` for this run once (e.g. ``replan:1``): the first caller wins, so a
        callback that fires twice acts once. With ``reentrant``, the holder may claim it
        again: a task redelivered after its worker died (same task id) picks up where it
        stopped."""
        k = RunKeys(run_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.hsetnx(k.claims, name, holder)
        pipe.hget(k.claims, name)
        pipe.expire(k.claims, self.retention_s)
        won, held_by, _ = pipe.execute()
        return bool(won) or (reentrant and held_by == holder)

    def release(self, run_id: str, name: str) -> None:
        """Give a claim back (its holder could not finish: the next caller takes it)."""
        self.r.hdel(RunKeys(run_id).claims, name)

    def flag_failure(self, run_id: str, step_id: str) -> bool:
        """Note a failed step of the current version for the next replan; False if no
        current version holds it (a replan already handled it)."""
        k = RunKeys(run_id)
        return bool(self._run("flag_failure", [k.steps, k.deps, k.unhandled], step_id))

    def unhandled(self, run_id: str) -> list[str]:
        """The failed steps that wait for a replan, sorted."""
        return sorted(cast(set[str], self.r.smembers(RunKeys(run_id).unhandled)))

    def versions(self, run_id: str, raw: dict[str, str] | None = None) -> list[PlanVersion]:
        raw = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).versions)) \
            if raw is None else raw
        return sorted((PlanVersion.model_validate_json(v) for v in raw.values()),
                      key=lambda v: v.version)

    # -- leases --------------------------------------------------------------------------
    def take_leases(self, run_id: str, names: Sequence[str], lease_s: float) -> int:
        """Hold ``names`` (``@replan``…) for ``lease_s`` seconds from now."""
        k = RunKeys(run_id)
        return int(self._run("renew_leases", [k.run, k.leases], "take", str(lease_s), *names))

    def renew_leases(self, run_id: str, names: Sequence[str], lease_s: float) -> int:
        """Extend the leases of ``names`` that still exist; how many did."""
        k = RunKeys(run_id)
        return int(self._run("renew_leases", [k.run, k.leases], "renew", str(lease_s),
                             *names))

    def drop_lease(self, run_id: str, name: str) -> None:
        self.r.hdel(RunKeys(run_id).leases, name)

    def ready_unstarted(self, run_id: str, step_ids: Sequence[str] | None = None
                        ) -> list[str]:
        """Of ``step_ids`` (default: every step of the current version), those whose
        dependencies are all finished, that never started and whose message was never
        published (recovery after a worker died between finishing a step and publishing
        what it unlocked; a paused run going on)."""
        k = RunKeys(run_id)
        if step_ids is None:
            step_ids = sorted(cast(list[str], self.r.hkeys(k.deps)))
        if not step_ids:
            return []
        counts = cast(list[str | None], self.r.hmget(k.deps, list(step_ids)))
        fields = [f"{s}.{name}" for s in step_ids for name in ("status", "dispatched")]
        values = cast(list[str | None], self.r.hmget(k.steps, fields))
        return [s for i, (s, n) in enumerate(zip(step_ids, counts, strict=True))
                if n == "0" and values[2 * i] == "pending" and values[2 * i + 1] != "1"]

    # -- the reconciler -----------------------------------------------------------------
    def active_runs(self) -> list[tuple[str, float]]:
        """The runs that have not ended (run id, creation time), oldest first."""
        return [(m, float(t)) for m, t in
                cast(list[tuple[str, float]], self.r.zrange(ACTIVE_RUNS, 0, -1, withscores=True))]

    def forget_active(self, run_id: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        # An ended run still here: whoever ended it stopped before its callback was queued.
        self._queue_callback(pipe, run_id)
        pipe.zrem(ACTIVE_RUNS, run_id)
        pipe.execute()

    def watch(self, run_id: str) -> None:
        """Add a run to the reconciler's watch list (idempotent)."""
        self.r.zadd(ACTIVE_RUNS, {run_id: float(self.r.time()[0])}, nx=True)

    def unwatched_runs(self) -> list[str]:
        """Runs of the index that have not ended and are not watched."""
        found: list[str] = []
        indexed = cast(list[str], self.r.zrange(RUN_INDEX, 0, -1))
        for start in range(0, len(indexed), 500):
            run_ids = indexed[start:start + 500]
            pipe = self.r.pipeline(transaction=False)
            for run_id in run_ids:
                pipe.hget(RunKeys(run_id).run, "status")
                pipe.zscore(ACTIVE_RUNS, run_id)
            replies = pipe.execute()
            for i, run_id in enumerate(run_ids):
                status, watched = replies[2 * i], replies[2 * i + 1]
                if status and status not in TERMINAL_RUN and watched is None:
                    found.append(run_id)
        return found

    def now(self) -> float:
        """The Redis clock, epoch seconds."""
        secs, micros = self.r.time()
        return secs + micros / 1e6

    def snapshot(self, run_id: str) -> RunSnapshot | None:
        """One run as the reconciler sees it, read in one round trip; None if it has no
        record (expired, or not created yet)."""
        k = RunKeys(run_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.time()
        pipe.hgetall(k.run)
        pipe.hgetall(k.steps)
        pipe.hgetall(k.deps)
        pipe.hgetall(k.leases)
        pipe.hgetall(k.claims)
        pipe.smembers(k.unhandled)
        pipe.xrevrange(k.events, count=1)
        clock, run, steps, deps, leases, claims, unhandled, last = pipe.execute()
        if not run:
            return None
        fields: dict[str, dict[str, str]] = {}
        for field, value in steps.items():
            sid, _, name = field.rpartition(".")
            fields.setdefault(sid, {})[name] = value
        last_id, last_at = None, None
        if last:
            last_id = last[0][0]
            last_at = float(last[0][1].get("ts") or 0) or None
        return RunSnapshot(
            run_id=run_id, now=clock[0] + clock[1] / 1e6, run=RunState.from_fields(run),
            steps={sid: StepState.from_fields(f) for sid, f in fields.items()},
            waiting={sid: int(n) for sid, n in deps.items()},
            leases={name: float(t) for name, t in leases.items()},
            claims=claims, unhandled=sorted(unhandled), last_event=last_id,
            last_event_at=last_at, nudges=int(run.get("nudges") or 0),
            nudged_at=run.get("nudged_at") or None)

    def record_repair(self, run_id: str, repair: Repair) -> bool:
        """Write a ``run.repaired`` event (before the repair is made) and count it; False
        if the run has no record."""
        k = RunKeys(run_id)
        if not self._run("record_repair", [k.run, k.events], repair.kind, repair.step or "",
                         repair.model_dump_json(exclude_none=True)):
            return False
        self.r.hincrby(REPAIRS, repair.kind, 1)
        metrics.repaired(repair.kind)
        return True

    def repairs(self) -> dict[str, int]:
        """Repairs made so far, by kind (every reconciler, every run)."""
        return {k: int(v) for k, v in cast(dict[str, str], self.r.hgetall(REPAIRS)).items()}

    def fleet(self) -> metrics.Fleet:
        """For the metrics' gauges, read at scrape time: the runs not ended, the steps
        dispatched and not started by queue (a step is pending with its message out until
        a worker begins it, through a prefetch or a retry's countdown), and the live
        workers' queues."""
        active = 0
        queued: dict[str, int] = {}
        run_ids = [run_id for run_id, _ in self.active_runs()]
        for start in range(0, len(run_ids), 100):
            pipe = self.r.pipeline(transaction=False)
            for run_id in run_ids[start:start + 100]:
                k = RunKeys(run_id)
                pipe.hget(k.run, "status")
                pipe.hgetall(k.steps)
            replies = pipe.execute()
            for status, fields in zip(replies[::2], replies[1::2], strict=True):
                if not status or status in TERMINAL_RUN:
                    continue  # expired, or ended and not yet forgotten by the reconciler
                active += 1
                for name, value in fields.items():
                    sid, _, what = name.rpartition(".")
                    if what == "dispatched" and value == "1" \
                            and fields.get(f"{sid}.status") == "pending":
                        queue = fields.get(f"{sid}.queue") or metrics.UNKNOWN
                        queued[queue] = queued.get(queue, 0) + 1
        queues = frozenset(q for w in self.live_workers() for q in w.queues)
        return metrics.Fleet(runs_active=active, steps_queued=queued, queues=queues)

    def live_workers(self) -> list[WorkerInfo]:
        """The workers that said they are alive in the last few seconds."""
        found: list[WorkerInfo] = []
        for key in sorted(cast(Iterable[str], self.r.scan_iter(WORKER_PATTERN, count=500))):
            raw = cast(str | None, self.r.get(key))
            if raw:
                found.append(WorkerInfo.model_validate_json(raw))
        return found

    # -- model usage ---------------------------------------------------------------------
    def record_usage(self, run_id: str, role: str, model: str, step_id: str | None,
                     counts: Mapping[str, int | float]) -> None:
        """Add one model call's tokens and latency to the run's counters."""
        k = RunKeys(run_id)
        prefix = f"{role}|{model.replace('|', '/')}|{step_id or ''}|"
        pipe = self.r.pipeline(transaction=True)
        for metric, value in counts.items():
            pipe.hincrby(k.usage, prefix + metric, int(value))
        pipe.expire(k.usage, self.retention_s)
        pipe.execute()

    def record_exchange(self, run_id: str, exchange: Mapping[str, Any]) -> None:
        """Keep one model call (request summary and response) with the run, as long as
        the run is kept."""
        k = RunKeys(run_id)
        pipe = self.r.pipeline(transaction=True)
        pipe.rpush(k.exchanges, json.dumps(exchange, ensure_ascii=False))
        pipe.expire(k.exchanges, self.retention_s)
        pipe.execute()

    def exchanges(self, run_id: str) -> list[dict[str, Any]]:
        """The run's model calls, oldest first."""
        self.run_state(run_id)  # RunNotFound for an unknown or expired run
        rows = cast(list[str], self.r.lrange(RunKeys(run_id).exchanges, 0, -1))
        return [json.loads(row) for row in rows]

    def usage_fields(self, run_id: str) -> dict[str, str]:
        return cast(dict[str, str], self.r.hgetall(RunKeys(run_id).usage))

    # -- reading -------------------------------------------------------------------------
    def outputs(self, run_id: str, step_ids: Iterable[str]) -> dict[str, Any]:
        ids = sorted(set(step_ids))
        if not ids:
            return {}
        values = cast(list[str | None], self.r.hmget(RunKeys(run_id).outputs, ids))
        return {sid: json.loads(v) for sid, v in zip(ids, values, strict=True)
                if v is not None}

    def step_states(self, run_id: str, raw: dict[str, str] | None = None
                    ) -> dict[str, StepState]:
        raw = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).steps)) \
            if raw is None else raw
        fields: dict[str, dict[str, str]] = {}
        for field, value in raw.items():
            sid, _, name = field.rpartition(".")
            fields.setdefault(sid, {})[name] = value
        return {sid: StepState.from_fields(f) for sid, f in fields.items()}

    def step_state(self, run_id: str, step_id: str) -> StepState:
        return self.step_states(run_id).get(step_id, StepState())

    def completed(self, run_id: str) -> list[str]:
        """The steps that succeeded, sorted."""
        return sorted(s for s, st in self.step_states(run_id).items()
                      if st.status == "succeeded")

    def events(self, run_id: str, after: str = "0-0", block_ms: int | None = None,
               count: int = 1_000) -> list[RunEvent]:
        """Events after the stream id ``after``, waiting up to ``block_ms`` for one."""
        reply: Any = self.r.xread({RunKeys(run_id).events: after}, count=count,
                                  block=block_ms)
        if not reply:
            return []
        return [RunEvent.from_stream(i, f) for i, f in reply[0][1]]

    def report(self, run_id: str) -> RunReport:
        """The run report (without ``usage``, which needs prices: the client adds it).
        Its steps are those of every plan version, in the order they first appeared.
        The run, its steps and its versions are read at one instant (MULTI): a plan
        installed meanwhile cannot make a report of "plan v1 (1 replan)"."""
        pipe = self.r.pipeline(transaction=True)
        for key in (RunKeys(run_id).run, RunKeys(run_id).steps, RunKeys(run_id).versions):
            pipe.hgetall(key)
        fields, steps_raw, versions_raw = pipe.execute()
        run = self.run_state(run_id, fields)
        plan = self.plan(run_id, run.version) if run.version else None
        states = self.step_states(run_id, steps_raw)
        step_ids: list[str] = []
        for version in range(1, run.version + 1):
            older = self.plan(run_id, version) if version != run.version or plan is None \
                else plan
            step_ids.extend(s.id for s in older.steps if s.id not in step_ids)
        outputs = self.outputs(run_id, step_ids)
        steps: dict[str, StepReport] = {}
        for sid in step_ids:
            st = states.get(sid, StepState())
            steps[sid] = StepReport(
                status=st.status, output=outputs.get(sid), error=st.error,
                attempts=st.attempts, started_at=st.started_at,
                finished_at=st.finished_at, worker=st.worker, history=st.history)
        versions = self.versions(run_id, versions_raw)
        return RunReport(run_id=run_id, status=run.status, goal=run.goal, answer=run.answer,
                         error=run.error, plan_version=run.version,
                         created_at=run.created_at, finished_at=run.finished_at,
                         steps=steps, plan=plan, partial=run.partial,
                         reason=run.reason if run.status in WAITING_RUN else None,
                         versions=versions,
                         replans=sum(1 for v in versions if v.reason in REPLAN_REASONS))

    def step_times(self, run_id: str) -> dict[str, tuple[float | None, float | None]]:
        """``(started, finished)`` epoch seconds per step, for tests and benchmarks."""
        def epoch(moment: datetime | None) -> float | None:
            return moment.timestamp() if moment else None

        return {sid: (epoch(st.started_at), epoch(st.finished_at))
                for sid, st in self.step_states(run_id).items()}
