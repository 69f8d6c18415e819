"""The reconciler: finds runs that stopped moving and re-drives them.

Messages get lost (a broker restart without persistence, a worker host that dies with
messages reserved), workers die between recording an outcome and publishing what follows
from it, and Redis may come back from a restart with a task's last moments missing. The
run store says what every run is waiting for; the reconciler compares that with what is
alive (leases) and waiting (the broker's queues) and repairs the difference, idempotently:
every repair only re-publishes a message or makes a once-only transition, so two
reconcilers, or a repair racing the worker it thought dead, do no harm.

:func:`diagnose` decides, from one :class:`RunSnapshot`, with no I/O;
:class:`Reconciler` reads the snapshots, writes each repair as a ``run.repaired`` event
(before acting on it) and acts. Every worker runs one (``workers/housekeeping.py``); a
Redis lock makes one of them the active one.

What it repairs, in a run that is running (or pending: not yet started):

- ``lease_expired``: a running step whose lease lapsed. The lost attempt counts; the step
  is retried after its backoff, or its ``on_failure`` policy applies if none is left. An
  agent step is not lost while a tool call of it runs, or its next hop (a call, a turn)
  may still wait in a queue (:mod:`planner.engine.agent_liveness`); its next attempt
  resumes its conversation.
- ``message_lost``: a ready step published that never started, and whose message the
  broker holds nowhere (no queue, no worker) on two looks past its due time and the lost
  grace; or, when the broker cannot say, past the grace with its queue empty: published
  again. A message still in a queue is waiting, never lost.
- ``never_dispatched``: a ready step never published (its publisher died), or a root
  noted by a one-call submit (``s``) of a run where nothing began in the grace, when the
  broker cannot say where its message is (else ``message_lost`` decides): published.
- ``stalled_run``: nothing alive, nothing queued, nothing due, no event for the grace:
  the run's next move is made again (plan, start, the join, a review, a replan whose
  replanner died, the partial answer), as :func:`~planner.engine.outcomes.go_on` does.
- ``unrecoverable``: :data:`MAX_NUDGES` stalled-run repairs in a row changed nothing: the
  run ends ``failed`` with the reason and a partial answer of what it earned.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import LockError, RedisError

from planner.engine.agent_liveness import Look, at_work, calling
from planner.engine.dispatch import plan_message
from planner.engine.outcomes import dispatch, give_up, go_on, resend, retry_delay
from planner.engine.runtime import Runtime
from planner.store.keys import RECONCILER_LOCK
from planner.store.records import EARNED_STEP, ErrorRecord, Repair, RunSnapshot
from planner.vocabulary import RunStatus, StepStatus
from planner.wire import DEFAULT_QUEUE, LLM_QUEUE

log = logging.getLogger("chordal.reconciler")

#: Stalled-run repairs in a row that changed nothing before a run is given up.
MAX_NUDGES = 3
#: Runs of the index a pass sweeps for runs not watched (see Reconciler._backfill).
SWEEP_BATCH = 500
#: Seconds a message must stay missing between two looks before it counts as lost: a
#: worker takes a message out of its queue a moment before it notes it reserved.
CONFIRM_S = 1.0


@dataclass(frozen=True)
class Policy:
    """How patient the reconciler is (from the settings)."""

    grace_s: float
    lease_s: float
    #: False for a while after Redis (or this reconciler) was away: the renewers need a
    #: beat to catch up, so no lease is judged lapsed yet.
    judge_leases: bool = True
    #: Past due by this much, a dispatched step whose message the broker holds nowhere
    #: counts as lost (without waiting for the grace or an empty queue).
    lost_s: float = float("inf")


def lease_until(snap: RunSnapshot, step_id: str, lease_s: float) -> float:
    """When a running step's lease lapses: as recorded, or, for a step begun with none
    (a worker from before leases), a lease's length after its attempt began."""
    if step_id in snap.leases:
        return snap.leases[step_id]
    began = snap.steps[step_id].attempt_started_at
    return (began.timestamp() if began else 0.0) + lease_s


def alive(snap: RunSnapshot, lease_s: float) -> set[str]:
    """The leases held now: run-level tasks at work, and running steps whose lease holds
    (a finished step's lease is left to lapse, and does not count) or that have a tool call
    under a live call lease (an agent step's)."""
    live = {name for name, until in snap.leases.items()
            if until > snap.now and name.startswith("@")}
    calls = calling(snap.leases, snap.now)
    return live | {sid for sid, st in snap.steps.items() if st.status == StepStatus.RUNNING
                   and sid in snap.waiting
                   and (sid in calls or lease_until(snap, sid, lease_s) > snap.now)}


def diagnose(snap: RunSnapshot, policy: Policy, queue_of: Callable[[str], str],
             waiting_in: Callable[[str], int | None],
             missing_since: Callable[[str], float | None] = lambda _sid: None,
             next_queued: Callable[[], bool] = lambda: False,
             is_agent: Callable[[str], bool] = lambda _sid: False,
             look_in: Callable[[str, str], Look] = lambda _sid, _q: Look(None)
             ) -> list[Repair]:
    """What is wrong with one run, if anything. ``queue_of``: a step's queue;
    ``waiting_in``: messages waiting in a queue (None: the broker cannot say);
    ``missing_since``: since when the broker has held no message for a step, in no queue
    and reserved by no worker (None: it holds one, or cannot say); ``next_queued``:
    whether a message making the run's next move waits in a queue; ``is_agent``: whether
    a step is an agent step; ``look_in(step, queue)``: what the broker holds of a step's
    messages in a queue."""
    run, now, grace = snap.run, snap.now, policy.grace_s
    if run.status not in (RunStatus.RUNNING, RunStatus.PENDING):
        return []  # ended, or waiting for a person
    live = alive(snap, policy.lease_s)
    repairs: list[Repair] = []
    maybe_queued = False  # a ready step that may still wait in its queue
    # Nothing begun: the roots a one-call submit noted may never have been published.
    begun = any(st.attempts for st in snap.steps.values())
    if run.status == RunStatus.RUNNING and run.ending is None:
        for sid, deps_left in sorted(snap.waiting.items()):
            st = snap.steps.get(sid)
            if st is None:
                continue
            if st.status == StepStatus.RUNNING and sid not in live:
                if not policy.judge_leases or (is_agent(sid) and at_work(
                        sid, st.calls_due, now, grace, queue_of(sid), waiting_in, look_in,
                        CONFIRM_S)):
                    maybe_queued = True
                    continue
                since = now - lease_until(snap, sid, policy.lease_s)
                repairs.append(Repair(kind="lease_expired", step=sid, why=(
                    f"attempt {st.attempts} on {st.worker or 'a worker'} stopped renewing "
                    f"its lease {since:.0f} s ago (the worker died or lost Redis)"
                    + ("; no turn or tool call of it is at work or waiting"
                       if is_agent(sid) else ""))))
            elif st.status == StepStatus.PENDING and deps_left == 0:
                late = now - (st.due or 0.0)
                if st.submitted and not begun and late >= grace \
                        and look_in(sid, queue_of(sid)).held is None:
                    repairs.append(Repair(kind="never_dispatched", step=sid, why=(
                        f"submitted {late:.0f} s ago, no step of the run has begun: its "
                        "client may have stopped before publishing its first steps")))
                    continue
                gone = missing_since(sid) if st.dispatched and late >= policy.lost_s else None
                if gone is not None and now - gone >= CONFIRM_S:
                    repairs.append(Repair(kind="message_lost", step=sid, why=(
                        f"published {late:.0f} s past its due time and never started, and "
                        f"for {now - gone:.0f} s no queue or worker held its message")))
                elif late < grace:
                    maybe_queued = True  # due soon, or just published
                elif not st.dispatched:
                    repairs.append(Repair(kind="never_dispatched", step=sid, why=(
                        f"ready for {late:.0f} s and never published (its publisher "
                        "stopped between recording an outcome and publishing)")))
                else:
                    queue = queue_of(sid)
                    # Held (queued, or reserved by a worker that has not begun it): waiting.
                    if look_in(sid, queue).held is not True and waiting_in(queue) == 0:
                        repairs.append(Repair(kind="message_lost", step=sid, why=(
                            f"published {late:.0f} s past its due time and never started, "
                            f"and queue {queue!r} is empty: its message was lost")))
                    else:
                        maybe_queued = True  # it may wait behind others
    if repairs or maybe_queued or live:
        return repairs
    quiet = now - (snap.last_event_at or now)
    if quiet < grace or next_queued():
        return []  # busy, or its next move waits behind others: not stalled
    why = f"no event for {quiet:.0f} s, nothing at work; {next_move(snap)}"
    # Making the next move again is harmless (every move is idempotent), so a quiet run
    # is nudged even when its message may wait in a busy queue; it is given up only when
    # the queues are empty and nudges changed nothing.
    if snap.nudges >= MAX_NUDGES and snap.nudged_at == snap.last_event \
            and all(waiting_in(q) == 0 for q in (DEFAULT_QUEUE, LLM_QUEUE)):
        return [Repair(kind="unrecoverable", why=(
            f"{why}; {snap.nudges} repairs in a row changed nothing, so the run cannot "
            "make progress"))]
    return [Repair(kind="stalled_run", why=why)]


def next_move(snap: RunSnapshot) -> str:
    """What a quiet run waits for, in words (the repair makes that move again)."""
    run = snap.run
    if run.status == RunStatus.PENDING:
        return "its plan" if run.version == 0 else "its start"
    if run.ending is not None:
        return "its partial answer"
    held = [sid for sid, st in snap.steps.items() if st.held == run.version]
    if held:
        return f"the review of checkpoint(s) {', '.join(sorted(held))}"
    if snap.unhandled:
        return f"a replan for failed step(s) {', '.join(snap.unhandled)}"
    if run.remaining == 0:
        return "its join and answer"
    open_steps = sorted(sid for sid in snap.waiting
                        if snap.steps.get(sid) is None
                        or snap.steps[sid].status not in EARNED_STEP)
    return f"steps {', '.join(open_steps[:10])} that cannot start"


class Reconciler:
    """One worker's reconciler. :meth:`tick` makes one pass if this reconciler holds the
    lock (taking it when it is free), and returns the repairs it made."""

    def __init__(self, rt: Runtime, lock_s: float, settle_s: float | None = None) -> None:
        self.rt = rt
        self.lock_s = lock_s
        self.lock = rt.store.r.lock(RECONCILER_LOCK, timeout=lock_s, blocking=False,
                                    thread_local=False)
        self.holding = False
        #: After a gap (this reconciler just took over, or Redis was away), leases are
        #: not judged for this long: their holders renew every third of a lease.
        self.settle_s = rt.settings.engine.step_lease_s / 2 if settle_s is None else settle_s
        self._last_pass: float | None = None
        self._trust_after = 0.0
        self._held_at = 0.0
        #: The sweep of the run index for runs not watched: on (from the lock's taking
        #: until it is through) and where its next batch starts.
        self._sweeping = False
        self._sweep: tuple[float, str] | None = None
        #: (run, step) whose message the broker held nowhere at the last pass, and since
        #: when.
        self._missing: dict[tuple[str, str, str], float] = {}

    def tick(self) -> list[tuple[str, Repair]]:
        if not self._hold():
            self._last_pass = None
            return []
        self._backfill()
        return self.reconcile()

    def release(self) -> None:
        if self.holding:
            with contextlib.suppress(LockError, RedisError):
                self.lock.release()
            self.holding = False

    def _hold(self) -> bool:
        try:
            if self.holding:
                self.lock.reacquire()
            else:
                self.holding = bool(self.lock.acquire(blocking=False))
                if self.holding:  # sweep the index afresh, a batch per pass
                    self._sweeping, self._sweep = True, None
        except LockError:
            self.holding = False  # it lapsed and another reconciler took it
        self._held_at = time.monotonic()
        return self.holding

    def _backfill(self) -> None:
        """Watch the runs of one more batch of the index that have not ended (runs created
        before the watch list existed: every run is watched from its creation on), until
        the index is through. A batch per pass, so a pass costs the same however many runs
        the index holds (every run made and not expired)."""
        if not self._sweeping:
            return
        store = self.rt.store
        found, self._sweep = store.unwatched_runs(self._sweep, SWEEP_BATCH)
        for run_id in found:
            store.watch(run_id)
        self._sweeping = self._sweep is not None

    def reconcile(self) -> list[tuple[str, Repair]]:
        """One pass over every run that has not ended."""
        depths: dict[str, int | None] = {}

        def waiting_in(queue: str) -> int | None:
            if queue not in depths:
                depths[queue] = self.rt.publisher.waiting(queue)
            return depths[queue]

        store, settings = self.rt.store, self.rt.settings
        now = store.now()
        if self._last_pass is None or now - self._last_pass > self.lock_s:
            self._trust_after = now + self.settle_s
            self._missing = {}
        policy = Policy(settings.engine.dispatch_grace_s, settings.engine.step_lease_s,
                        judge_leases=now >= self._trust_after,
                        lost_s=min(settings.engine.lost_grace_s, settings.engine.dispatch_grace_s))
        held: dict[str, set[tuple[str, str]] | None] = {}
        queued: list[set[str] | None] = []  # one look per pass, only when needed

        def next_queued(run_id: str) -> bool:
            if not queued:
                queued.append(self.rt.publisher.queued_runs([DEFAULT_QUEUE, LLM_QUEUE]))
            return queued[0] is not None and run_id in queued[0]
        missing: dict[tuple[str, str, str], float] = {}

        def looks(snap: RunSnapshot, queue_of: Callable[[str], str]
                  ) -> tuple[Callable[[str, str], Look], Callable[[str], float | None]]:
            def look(sid: str, queue: str) -> Look:
                if queue not in held:  # one look per queue and pass, only when needed
                    keys = self.rt.publisher.held(queue)
                    # Any version's message: a replan keeps a step that was published.
                    held[queue] = None if keys is None else {k[:2] for k in keys}
                found = held[queue]
                if found is None or (snap.run_id, sid) in found:
                    return Look(None if found is None else True)
                key = (snap.run_id, sid, queue)
                missing[key] = self._missing.get(key, snap.now)
                return Look(False, missing[key])

            def since(sid: str) -> float | None:
                return look(sid, queue_of(sid)).missing_since
            return look, since

        made: list[tuple[str, Repair]] = []
        for run_id, created in store.active_runs():
            if self.holding and time.monotonic() - self._held_at > self.lock_s / 3 \
                    and not self._hold():
                break  # a long pass outlived the lock: another reconciler has it now
            try:
                snap = store.snapshot(run_id)
                if snap is None:
                    if now - created > policy.grace_s:
                        store.forget_active(run_id)  # expired, or never created
                    continue
                if snap.run.ended:
                    store.forget_active(run_id)
                    continue
                queue_of, is_agent = self._queues(snap)
                look, since = looks(snap, queue_of)
                for repair in diagnose(snap, policy, queue_of, waiting_in, since,
                                       functools.partial(next_queued, run_id), is_agent, look):
                    if self.repair(snap, repair):
                        made.append((run_id, repair))
            except Exception as exc:  # one run's trouble must not stop the others' repairs
                log.warning("reconciler: run %s: %s", run_id, exc)
        self._last_pass, self._missing = now, missing
        return made

    def _queues(self, snap: RunSnapshot
                ) -> tuple[Callable[[str], str], Callable[[str], bool]]:
        """A step's queue, and whether it is an agent step."""
        if not snap.run.version:
            return lambda _sid: DEFAULT_QUEUE, lambda _sid: False
        compiled = self.rt.compiled(snap.run_id, snap.run.version)
        return compiled.queue_of, compiled.is_agent

    def repair(self, snap: RunSnapshot, repair: Repair) -> bool:
        """Record ``repair`` and make it; False if there was nothing to do after all."""
        rt, run_id, version = self.rt, snap.run_id, snap.run.version
        if repair.kind == "lease_expired":
            return self._reclaim(snap, repair)
        if not rt.store.record_repair(run_id, repair):
            return False
        log.warning("run %s: %s%s: %s", run_id, repair.kind,
                    f" (step {repair.step})" if repair.step else "", repair.why)
        if repair.kind in ("message_lost", "never_dispatched") and repair.step:
            # A submitted root, under its client's task id (begin_step takes it once).
            dispatch(rt, rt.compiled(run_id, version), run_id, version, [repair.step], False,
                     redrive=not snap.steps[repair.step].submitted)
        elif repair.kind == "stalled_run":
            self._nudge(snap)
        elif repair.kind == "unrecoverable":
            earned = rt.store.outputs(run_id, rt.store.completed(run_id))
            rt.store.finish_run(run_id, RunStatus.FAILED, answer={"partial": earned}, partial=True,
                                error=ErrorRecord(type="Stalled", message=repair.why))
        return True

    def _reclaim(self, snap: RunSnapshot, repair: Repair) -> bool:
        rt, run_id, version = self.rt, snap.run_id, snap.run.version
        step_id = repair.step or ""
        st = snap.steps[step_id]
        compiled = rt.compiled(run_id, version)
        # Attempts count across the run's retries; max_retries bounds those since the last.
        retry = st.tries < compiled.max_attempts(step_id)
        delay = retry_delay(rt.settings, st.tries, None) if retry else 0.0
        error = ErrorRecord(
            type="WorkerLost", transient=True, attempt=st.attempts,
            retry_in_s=round(delay, 3) if retry else None,
            message=f"attempt {st.attempts} ended without a result: {repair.why}")
        if not rt.store.reclaim(run_id, step_id, st.attempts, error, delay):
            return False  # it finished, or a new attempt began, since the snapshot
        rt.store.record_repair(run_id, repair)
        log.warning("run %s: step %s: %s", run_id, step_id, repair.why)
        if retry:
            resend(rt, compiled, run_id, version, step_id, delay)
        else:
            give_up(rt, compiled, run_id, step_id, version, st.worker or "unknown", error)
        return True

    def _nudge(self, snap: RunSnapshot) -> None:
        rt, run_id, run = self.rt, snap.run_id, snap.run
        # A replanner that died keeps its claim; with no live lease, nobody works on it.
        for name in snap.claims:
            if name == f"replan:{run.version}":
                rt.store.release(run_id, name)
        if run.status == RunStatus.PENDING:
            rt.publish([plan_message(run_id)])  # plans, or starts a planned run
            return
        go_on(rt, run_id)

