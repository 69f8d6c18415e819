"""A submitted plan recorded and started in one round trip (``Client.submit``'s path).

Five calls in one script (``submit_run.lua``: create, install version 1, start or wait
for approval, note the roots dispatched), sent in one pipeline (no MULTI: its keys are in
different slots on a cluster) with the global keys' writes, in the order the slow path
wrote them: the reconciler's watch list first (a client that dies after it leaves a run
the reconciler finds), the store's marker, the run, then the run index.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from planner.errors import Conflict
from planner.language.plan import Plan
from planner.store import lost, scripts
from planner.store.base import EVENTS_MAXLEN, StoreBase
from planner.store.keys import ACTIVE_RUNS, RUN_INDEX, RunKeys, owner_runs_key
from planner.store.records import PlanVersion, RunOptions


@dataclass(frozen=True)
class Submitted:
    """What ``submit_run`` did: the run's status now (``running`` or
    ``awaiting_approval``) and the roots it noted dispatched (to publish now)."""

    status: str
    ready: tuple[str, ...]


class RunSubmission(StoreBase):
    """Recording and starting a submitted plan's run at once."""

    _stamp: Any = None

    def submit_run(self, run_id: str, plan: Plan, deps: Mapping[str, Iterable[str]],
                   options: RunOptions, approval: str | None,
                   roots: Sequence[tuple[str, str, str]]) -> Submitted:
        """Record run ``run_id`` with ``plan`` as version 1 and start it, or, with an
        ``approval`` reason, make it wait for approval; ``roots``: (step, queue, task id)
        of the messages the caller publishes next, noted dispatched. :class:`Conflict`
        (and nothing written in the run's keys) if the run id is taken."""
        k = RunKeys(run_id)
        options = options.model_copy(update={"from_plan": True})
        ids = [s.id for s in plan.steps]
        record = PlanVersion(version=1, reason="planned", failed=[], added=ids, kept=[],
                             dropped=[], cancelled=[])
        args = [run_id, plan.goal, options.model_dump_json(), str(self.retention_s),
                plan.model_dump_json(),
                json.dumps({sid: sorted(ups) for sid, ups in deps.items()}),
                record.model_dump_json(), json.dumps({s.id: s.tool for s in plan.steps}),
                approval or "", *[x for root in roots for x in root]]
        if self.cluster:
            reply = self._submit_apart(k, run_id, args)
        else:
            reply = self._submit_pipelined(k, run_id, args)
        if reply[0] == 0:
            raise Conflict(f"run id {run_id!r} is taken; choose another (or none)")
        if options.owner is not None:
            # Each API key lists only its own runs: written once the id is known to be
            # this run's, so a taken id never lands in another key's list.
            key = owner_runs_key(options.owner)
            pipe = self.r.pipeline(transaction=False)
            pipe.zadd(key, {run_id: float(reply[0])})
            pipe.zremrangebyscore(key, 0, float(reply[0]) - self.retention_s)
            pipe.expire(key, self.retention_s)
            pipe.execute()
        return Submitted(str(reply[1]), tuple(str(s) for s in reply[3:]))

    def _submit_apart(self, k: RunKeys, run_id: str, args: list[str]) -> list[Any]:
        """On a cluster: one command per slot, in order (a cluster pipeline does not keep
        the order across nodes)."""
        self._stamp_script()(keys=[ACTIVE_RUNS], args=[run_id, ""])
        lost.mark(self.r, time.time())
        reply: list[Any] = self._run("submit_run", [k.run, k.steps, k.events, k.deps,
                                                    k.dependents, k.plans, k.versions,
                                                    k.unhandled], *args)
        if reply[0] != 0:
            self._stamp_script()(keys=[RUN_INDEX], args=[run_id, str(self.retention_s)])
        return reply

    def _submit_pipelined(self, k: RunKeys, run_id: str, args: list[str]) -> list[Any]:
        """One round trip. By EVALSHA (redis-py's pipelined scripts ask SCRIPT EXISTS
        first, a round trip of its own); a script the server does not hold (restarted)
        is loaded and what did not run is sent again: the watch and index writes are
        idempotent, and the run's script ran whole or not at all."""
        run = self._scripts["submit_run"]
        stamp = self._stamp_script()
        index_args = [run_id, str(self.retention_s)]
        for _ in range(2):
            pipe = self.r.pipeline(transaction=False)
            pipe.evalsha(stamp.sha, 1, ACTIVE_RUNS, run_id, "")
            lost.mark(pipe, time.time())
            pipe.evalsha(run.sha, 8, k.run, k.steps, k.events, k.deps, k.dependents,
                         k.plans, k.versions, k.unhandled, EVENTS_MAXLEN, *args)
            pipe.evalsha(stamp.sha, 1, RUN_INDEX, *index_args)
            replies = pipe.execute(raise_on_error=False)
            if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                break
            self.r.script_load(run.script)
            self.r.script_load(stamp.script)
            if not isinstance(replies[2], redis.exceptions.NoScriptError):
                # The run was recorded: only the watch and index writes are sent again.
                stamp(keys=[ACTIVE_RUNS], args=[run_id, ""])
                stamp(keys=[RUN_INDEX], args=index_args)
                replies = [None, None, replies[2], None]
                break
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return list(replies[2])

    def _stamp_script(self) -> Any:
        if self._stamp is None:
            self._stamp = scripts.register(self.r, "stamp_member")
        return self._stamp
