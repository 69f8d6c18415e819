"""Coordination in the run store: claims (who acts once), the failures a replan owes,
the reconciler's watch list and repairs, and the live workers with the fleet's gauges."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

from planner import metrics
from planner.store.base import StoreBase
from planner.store.keys import ACTIVE_RUNS, REPAIRS, RUN_INDEX, WORKER_PATTERN, RunKeys
from planner.store.records import DISPATCHED, TERMINAL_RUN, Repair, WorkerInfo
from planner.vocabulary import StepStatus


class Coordination(StoreBase):
    """Claims, replan bookkeeping, the reconciler's watch list and repairs, workers."""

    # -- claims and the failures a replan owes ------------------------------------------
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

    def unwatched_runs(self, after: tuple[float, str] | None = None, batch: int = 500
                       ) -> tuple[list[str], tuple[float, str] | None]:
        """One batch of the run index, oldest first, from just after ``after`` (its
        creation time and id; None: the start): the runs in it that have not ended and are
        not watched, and where the next batch starts (None: the index is through). A
        cursor, not a rank: the index is trimmed from its old end while it is read."""
        low: float | str = "-inf" if after is None else after[0]
        num = batch
        while True:  # more than a batch created in the cursor's millisecond: read past
            rows = [(m, float(t)) for m, t in cast(list[tuple[str, float]], self.r.zrangebyscore(
                RUN_INDEX, low, "+inf", start=0, num=num, withscores=True))]
            fresh = [(m, t) for m, t in rows if after is None or (t, m) > after]
            if fresh or len(rows) < num:
                break
            num *= 2
        pipe = self.r.pipeline(transaction=False)
        for run_id, _ in fresh:
            pipe.hget(RunKeys(run_id).run, "status")
            pipe.zscore(ACTIVE_RUNS, run_id)
        replies = pipe.execute() if fresh else []
        found = [run_id for i, (run_id, _) in enumerate(fresh)
                 if (status := replies[2 * i]) and status not in TERMINAL_RUN
                 and replies[2 * i + 1] is None]
        return found, (fresh[-1][1], fresh[-1][0]) if len(rows) == num else None

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

    # -- workers and the fleet ----------------------------------------------------------
    def live_workers(self) -> list[WorkerInfo]:
        """The workers that said they are alive in the last few seconds."""
        found: list[WorkerInfo] = []
        for key in sorted(cast(Iterable[str], self.r.scan_iter(WORKER_PATTERN, count=500))):
            raw = cast(str | None, self.r.get(key))
            if raw:
                found.append(WorkerInfo.model_validate_json(raw))
        return found

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
                    if what == "dispatched" and value in DISPATCHED \
                            and fields.get(f"{sid}.status") == StepStatus.PENDING:
                        queue = fields.get(f"{sid}.queue") or metrics.UNKNOWN
                        queued[queue] = queued.get(queue, 0) + 1
        queues = frozenset(q for w in self.live_workers() for q in w.queues)
        return metrics.Fleet(runs_active=active, steps_queued=queued, queues=queues)
