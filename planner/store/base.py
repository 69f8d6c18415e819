"""The run store's base: the Redis client, the scripts, and what every part of the store
reads or writes alike.

Every transition is one Lua script (``planner/store/lua``), so it is atomic across workers:
a step is marked finished once, and a late duplicate cannot overwrite it. Times come from
Redis's own clock (``TIME``), one clock for every worker, so "b started after a finished"
holds across machines. A run's keys share a hash tag (``{run_id}``), so its scripts touch
one slot. Readers return the typed records of :mod:`planner.store.records`.

The parts of :class:`~planner.store.runs.RunStore` (lifecycle, step transitions,
coordination, views, model calls) are mixins over :class:`StoreBase`; what more than one
of them needs lives here, so none calls into a sibling.
"""

from __future__ import annotations

from typing import Any, Self, cast

import redis

from planner.errors import RunNotFound
from planner.language.plan import Plan
from planner.store import lost, scripts
from planner.store.connect import connect, is_cluster_client
from planner.store.keys import ACTIVE_RUNS, CALLBACK_ATTEMPTS, CALLBACKS_DUE, RunKeys
from planner.store.records import RunOptions, RunState, StepState

#: Most entries kept in a run's events stream (trimmed approximately).
EVENTS_MAXLEN = 100_000


class StoreBase:
    """The client and scripts the run store's parts share. Safe to share between threads
    (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, retention_s: int = 7 * 86_400) -> None:
        self.r = client
        self.retention_s = retention_s
        self._scripts = {name: scripts.register(client, name) for name in scripts.RUN_SCRIPTS}
        #: A Redis Cluster (some commands are read otherwise: see :meth:`run_clock`).
        self.cluster = is_cluster_client(client)
        self._clock = scripts.register(client, "clock")

    @classmethod
    def from_url(cls, url: str, retention_s: int = 7 * 86_400) -> Self:
        return cls(connect(url, decode_responses=True, health_check_interval=30), retention_s)

    def _run(self, name: str, keys: list[str], *args: Any) -> Any:
        """Run a store script; ARGV[1] is always the events stream's length."""
        return self._scripts[name](keys=keys, args=[EVENTS_MAXLEN, *args])

    def now(self) -> float:
        """The Redis clock, epoch seconds."""
        secs, micros = self.r.time()
        return secs + micros / 1e6

    def run_clock(self, run_id: str) -> tuple[int, int] | None:
        """On a cluster, the clock (``TIME``) of the node holding the run's keys, which
        wrote its leases and times: a cluster refuses TIME inside a MULTI, so a reader
        that compares with them asks for it first. None on one Redis (TIME goes in the
        reader's MULTI)."""
        if not self.cluster:
            return None
        secs, micros = self._clock(keys=[RunKeys(run_id).run])
        return int(secs), int(micros)

    # -- the records every part reads ---------------------------------------------------
    def exists(self, run_id: str) -> bool:
        """Whether the run has a record (it was created and has not expired)."""
        return bool(self.r.exists(RunKeys(run_id).run))

    def run_state(self, run_id: str, fields: dict[str, str] | None = None) -> RunState:
        if fields is None:  # not read already (in a snapshot)
            fields = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).run))
        if not fields:
            raise lost.not_found(self.r, run_id, self.retention_s)
        return RunState.from_fields(fields)

    def plan(self, run_id: str, version: int) -> Plan:
        text = cast(str | None, self.r.hget(RunKeys(run_id).plans, str(version)))
        if text is None:
            raise RunNotFound(f"run {run_id!r} has no plan version {version}")
        return Plan.model_validate_json(text)

    def plan_and_options(self, run_id: str, version: int) -> tuple[Plan, RunOptions]:
        """:meth:`plan` and :meth:`options` in one round trip (what compiling a plan
        version needs: a worker's first task of a run reads them before it begins)."""
        k = RunKeys(run_id)
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(k.plans, str(version))
        pipe.hget(k.run, "options")
        text, raw = cast(list[str | None], pipe.execute())
        if text is None:
            raise RunNotFound(f"run {run_id!r} has no plan version {version}")
        return (Plan.model_validate_json(text),
                RunOptions.stored(raw) if raw else RunOptions())

    def options(self, run_id: str) -> RunOptions:
        raw = cast(str | None, self.r.hget(RunKeys(run_id).run, "options"))
        return RunOptions.stored(raw) if raw else RunOptions()

    def step_states(self, run_id: str, raw: dict[str, str] | None = None
                    ) -> dict[str, StepState]:
        raw = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).steps)) \
            if raw is None else raw
        fields: dict[str, dict[str, str]] = {}
        for field, value in raw.items():
            sid, _, name = field.rpartition(".")
            fields.setdefault(sid, {})[name] = value
        return {sid: StepState.from_fields(f) for sid, f in fields.items()}

    # -- shared by the lifecycle and the reconciler -------------------------------------
    def watch(self, run_id: str) -> None:
        """Add a run to the reconciler's watch list (idempotent)."""
        self.r.zadd(ACTIVE_RUNS, {run_id: float(self.r.time()[0])}, nx=True)

    def _queue_callback(self, pipe: redis.client.Pipeline, run_id: str) -> None:
        """An ended run with a ``callback_url``: its callback is due now (the workers'
        housekeeping delivers it). A run that ends again (retried) is queued afresh, and a
        delivery still in flight then counts for nothing."""
        if self.options(run_id).callback_url:
            pipe.zadd(CALLBACKS_DUE, {run_id: 0})
            pipe.hdel(CALLBACK_ATTEMPTS, run_id)
