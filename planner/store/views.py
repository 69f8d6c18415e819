"""Read views of the run store: the run list (paged per owner), a run's report, the
reconciler's snapshot, outputs, plan versions and the events stream."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from planner.errors import RunNotFound
from planner.language.plan import Plan, Step
from planner.store import lost
from planner.store.agent_records import AgentReport
from planner.store.base import StoreBase
from planner.store.conversation import Conversation
from planner.store.keys import RUN_INDEX, RunKeys, owner_runs_key
from planner.store.records import (
    REPLAN_REASONS,
    WAITING_RUN,
    PlanVersion,
    RunEvent,
    RunOptions,
    RunReport,
    RunSnapshot,
    RunState,
    RunSummary,
    StepReport,
    StepState,
)
from planner.tools.agent import AGENT_TOOL, DEFAULT_MAX_TURNS
from planner.vocabulary import StepStatus

#: The fields of a step the join reads: its status and its span (for the makespan metric).
JOIN_FIELDS = ("status", "started_at", "finished_at")


@dataclass(frozen=True)
class JoinSteps:
    """The steps of a plan version as the join sees them: each one's status, and the
    (start, end) epoch seconds of those that ran (Redis clock)."""

    statuses: dict[str, str]
    spans: dict[str, tuple[float, float]]


class RunViews(StoreBase):
    """What readers see: lists, reports, snapshots, events."""

    # -- the run list -------------------------------------------------------------------
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
        return RunOptions.stored(raw).owner if raw else None

    # -- one run ------------------------------------------------------------------------
    def report(self, run_id: str) -> RunReport:
        """The run report (without ``usage``, which needs prices: the client adds it)."""
        return self.report_and_usage(run_id)[0]

    def report_and_usage(self, run_id: str) -> tuple[RunReport, dict[str, str]]:
        """The run report and its raw usage counters, in one round trip. Its steps are
        those of every plan version, in the order they first appeared. The run, its
        steps, plans, outputs and versions are read at one instant (MULTI): a plan
        installed meanwhile cannot make a report of "plan v1 (1 replan)"."""
        k = RunKeys(run_id)
        pipe = self.r.pipeline(transaction=True)
        for key in (k.run, k.steps, k.versions, k.agent, k.plans, k.outputs, k.usage):
            pipe.hgetall(key)
        fields, steps_raw, versions_raw, agent_raw, plans_raw, outputs_raw, usage = \
            pipe.execute()
        run = self.run_state(run_id, fields)

        def plan_of(version: int) -> Plan:
            text = plans_raw.get(str(version))
            if text is None:
                raise RunNotFound(f"run {run_id!r} has no plan version {version}")
            return Plan.model_validate_json(text)

        plan = plan_of(run.version) if run.version else None
        states = self.step_states(run_id, steps_raw)
        step_ids: list[str] = []
        defined: dict[str, Step] = {}  # each step as the newest version holding it says
        for version in range(1, run.version + 1):
            older = plan_of(version) if version != run.version or plan is None else plan
            step_ids.extend(s.id for s in older.steps if s.id not in step_ids)
            defined.update((s.id, s) for s in older.steps)
        outputs = {sid: json.loads(outputs_raw[sid]) for sid in step_ids if sid in outputs_raw}
        steps: dict[str, StepReport] = {}
        for sid in step_ids:
            st = states.get(sid, StepState())
            steps[sid] = StepReport(
                status=st.status, output=outputs.get(sid), error=st.error,
                attempts=st.attempts, started_at=st.started_at,
                finished_at=st.finished_at, worker=st.worker, history=st.history,
                agent=_agent(defined[sid], st, agent_raw))
        versions = self.versions(run_id, versions_raw)
        return RunReport(run_id=run_id, status=run.status, goal=run.goal, answer=run.answer,
                         error=run.error, plan_version=run.version,
                         created_at=run.created_at, finished_at=run.finished_at,
                         steps=steps, plan=plan, partial=run.partial,
                         reason=run.reason if run.status in WAITING_RUN else None,
                         versions=versions,
                         replans=sum(1 for v in versions if v.reason in REPLAN_REASONS)
                         ), usage

    def versions(self, run_id: str, raw: dict[str, str] | None = None) -> list[PlanVersion]:
        raw = cast(dict[str, str], self.r.hgetall(RunKeys(run_id).versions)) \
            if raw is None else raw
        return sorted((PlanVersion.model_validate_json(v) for v in raw.values()),
                      key=lambda v: v.version)

    def outputs(self, run_id: str, step_ids: Iterable[str]) -> dict[str, Any]:
        ids = sorted(set(step_ids))
        if not ids:
            return {}
        values = cast(list[str | None], self.r.hmget(RunKeys(run_id).outputs, ids))
        return {sid: json.loads(v) for sid, v in zip(ids, values, strict=True)
                if v is not None}

    def step_state(self, run_id: str, step_id: str) -> StepState:
        return self.step_states(run_id).get(step_id, StepState())

    def join_view(self, run_id: str, step_ids: Iterable[str], sinks: Iterable[str]
                  ) -> tuple[RunState, JoinSteps, dict[str, Any]]:
        """What the join reads, in one round trip: the run, the status and span of each of
        ``step_ids`` (its version's steps: three fields each, not every step's whole
        record, which a wide plan makes the bulk of its last step's work) and the outputs
        of ``sinks``."""
        k, ids, steps = RunKeys(run_id), sorted(set(sinks)), list(step_ids)
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(k.run)
        if steps:
            pipe.hmget(k.steps, [f"{s}.{f}" for s in steps for f in JOIN_FIELDS])
        if ids:
            pipe.hmget(k.outputs, ids)
        replies = pipe.execute()
        raw = cast(list[str | None], replies[1] if steps else [])
        values = cast(list[str | None], replies[-1] if ids else [])
        statuses: dict[str, str] = {}
        spans: dict[str, tuple[float, float]] = {}
        for i, sid in enumerate(steps):
            status, started, finished = raw[3 * i:3 * i + 3]
            statuses[sid] = status or StepStatus.PENDING
            if started and finished:
                spans[sid] = (float(started), float(finished))
        return (self.run_state(run_id, replies[0]), JoinSteps(statuses, spans),
                {sid: json.loads(v) for sid, v in zip(ids, values, strict=True)
                 if v is not None})

    def completed(self, run_id: str) -> list[str]:
        """The steps that succeeded, sorted."""
        return sorted(s for s, st in self.step_states(run_id).items()
                      if st.status == StepStatus.SUCCEEDED)

    def step_times(self, run_id: str) -> dict[str, tuple[float | None, float | None]]:
        """``(started, finished)`` epoch seconds per step, for tests and benchmarks."""
        def epoch(moment: datetime | None) -> float | None:
            return moment.timestamp() if moment else None

        return {sid: (epoch(st.started_at), epoch(st.finished_at))
                for sid, st in self.step_states(run_id).items()}

    def snapshot(self, run_id: str) -> RunSnapshot | None:
        """One run as the reconciler sees it, read in one round trip; None if it has no
        record (expired, or not created yet)."""
        k = RunKeys(run_id)
        # On a cluster the clock comes first, out of the MULTI: a moment early, so a lease
        # or an event written meanwhile only looks younger (no repair made too soon).
        clock = self.run_clock(run_id)
        pipe = self.r.pipeline(transaction=True)
        if clock is None:
            pipe.time()
        pipe.hgetall(k.run)
        pipe.hgetall(k.steps)
        pipe.hgetall(k.deps)
        pipe.hgetall(k.leases)
        pipe.hgetall(k.claims)
        pipe.smembers(k.unhandled)
        pipe.xrevrange(k.events, count=1)
        replies = pipe.execute()
        if clock is None:
            clock, *replies = replies
        run, steps, deps, leases, claims, unhandled, last = replies
        if not run:
            return None
        fields: dict[str, dict[str, str]] = {}
        for field, value in steps.items():
            sid, _, name = field.rpartition(".")
            fields.setdefault(sid, {})[name] = value
        last_id, last_at = None, None
        if last:
            last_id, entry = last[0]
            if isinstance(entry, list):  # a cluster's MULTI leaves an entry's fields flat
                entry = dict(zip(entry[::2], entry[1::2], strict=True))
            last_at = float(entry.get("ts") or 0) or None
        return RunSnapshot(
            run_id=run_id, now=clock[0] + clock[1] / 1e6, run=RunState.from_fields(run),
            steps={sid: StepState.from_fields(f) for sid, f in fields.items()},
            waiting={sid: int(n) for sid, n in deps.items()},
            leases={name: float(t) for name, t in leases.items()},
            claims=claims, unhandled=sorted(unhandled), last_event=last_id,
            last_event_at=last_at, nudges=int(run.get("nudges") or 0),
            nudged_at=run.get("nudged_at") or None)

    def events(self, run_id: str, after: str = "0-0", block_ms: int | None = None,
               count: int = 1_000) -> list[RunEvent]:
        """Events after the stream id ``after``, waiting up to ``block_ms`` for one."""
        reply: Any = self.r.xread({RunKeys(run_id).events: after}, count=count,
                                  block=block_ms)
        if not reply:
            return []
        return [RunEvent.from_stream(i, f) for i, f in reply[0][1]]


def _agent(step: Step, st: StepState, raw: dict[str, str]) -> AgentReport | None:
    """An agent step's current conversation (its ``base``), as the report shows it."""
    if step.tool != AGENT_TOOL:
        return None
    limit = step.args.get("max_turns", DEFAULT_MAX_TURNS)
    ended = st.final or st.status == StepStatus.CANCELLED
    return Conversation.of(step.id, st.base, raw).report(
        limit if isinstance(limit, int) else DEFAULT_MAX_TURNS, ended)
