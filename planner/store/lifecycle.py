"""A run's lifecycle in the run store: created, given plan versions, started, moved to a
waiting status and back, ended (once), retried, cancelled."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, Literal

from planner import metrics
from planner.errors import Conflict
from planner.language.graph import makespan_ratio
from planner.language.plan import Plan
from planner.store import lost
from planner.store.base import StoreBase
from planner.store.keys import ACTIVE_RUNS, RUN_INDEX, RunKeys, owner_runs_key
from planner.store.lost import new_run_id
from planner.store.records import (
    REPLAN_REASONS,
    ErrorRecord,
    PlanVersion,
    RunOptions,
    RunStatus,
)

#: A step's (start, end), epoch seconds of the Redis clock.
Span = tuple[float, float]


@dataclass(frozen=True)
class Install:
    """What ``install_plan`` did: ``ok`` with the steps ready to publish, ``stale`` (the
    run's version moved on: another install won), or ``inactive`` (the run is over)."""

    state: Literal["ok", "stale", "inactive"]
    remaining: int = -1
    ready: tuple[str, ...] = ()


class RunLifecycle(StoreBase):
    """Creating, planning, starting, ending and re-driving runs."""

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
                     reason: str = "planned", failed: Sequence[str] = (),
                     cancelled: Sequence[str] = ()) -> Install:
        """Make ``plan`` the run's version ``version``, once and atomically, if the run is
        still at ``version - 1``. Counters, reverse edges and the remaining count are built
        from the step states at this moment; steps it shares with the old version keep
        their state and outputs; old steps it leaves out that never started are marked
        ``replaced``. ``failed``: the failures this version handles; ``cancelled``: the
        early steps of a streamed plan that it contradicts (for its record)."""
        k = RunKeys(run_id)
        edges = {sid: sorted(ups) for sid, ups in
                 (deps if deps is not None else plan.dependencies()).items()}
        previous = ({s.id for s in self.plan(run_id, version - 1).steps} if version > 1
                    else set())
        ids = [s.id for s in plan.steps]
        record = PlanVersion(version=version, reason=reason, failed=sorted(failed),
                             added=[s for s in ids if s not in previous],
                             kept=[s for s in ids if s in previous],
                             dropped=sorted(previous - set(ids)),
                             cancelled=sorted(cancelled))
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
                   error: ErrorRecord | None = None, partial: bool = False,
                   known: tuple[Mapping[str, Set[str]], Mapping[str, Span]] | None = None
                   ) -> bool:
        """End a run that has not ended, once; mark the steps it abandons ``cancelled``;
        re-arm retention. ``known``: the final version's dependencies and its steps' spans
        (start, end epoch seconds), when the caller read them already (the join): the
        metrics' makespan needs them, and reading them again would cost the run's end
        three round trips."""
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
            metrics.run_finished(status, reply[0], self._makespan_ratio(run_id, known)
                                 if status == RunStatus.SUCCEEDED else None)
        return bool(reply)

    def _makespan_ratio(self, run_id: str,
                        known: tuple[Mapping[str, Set[str]], Mapping[str, Span]] | None
                        ) -> float | None:
        """A succeeded run's makespan over its critical path (for the metrics), its final
        plan version's steps weighted by their recorded start and end."""
        try:
            if known is None:
                run = self.run_state(run_id)
                known = (self.plan(run_id, run.version).dependencies() if run.version
                         else {}, {sid: (st.started_at.timestamp(), st.finished_at.timestamp())
                                   for sid, st in self.step_states(run_id).items()
                                   if st.started_at and st.finished_at})
            return makespan_ratio(*known)
        except Exception:  # a metric must not fail the run's end, which is recorded
            return None

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
        return self.finish_run(run_id, RunStatus.CANCELLED, error=ErrorRecord(
            type="Cancelled", message="cancelled by a user"))
