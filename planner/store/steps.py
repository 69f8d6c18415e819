"""A step's transitions in the run store: an attempt begins, and ends (succeeded, skipped,
failed for good, to be retried, taken for lost), each one Lua script (``planner/store/lua``);
and the leases that say a step (or ``@replan``...) is still held by a live worker.

Fencing by attempt number: every attempt a worker begins gets the next number, and an
outcome it reports carries it. Only the current attempt (the last begun, still running)
changes the step; an outcome from any other one (a later attempt took over, it was taken
for lost, the step was retried or its run ended) is recorded on that attempt's record as
``superseded``, with a ``step.superseded`` event, and changes nothing else. The engine's
own decisions (the reconciler, an errback, a revoke) carry no attempt number.

:class:`StepTransitions` is one of :class:`~planner.store.runs.RunStore`'s parts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from planner import metrics
from planner.store.base import StoreBase
from planner.store.keys import RunKeys
from planner.store.records import DISPATCHED, PUBLISHED, REVOKED, SUBMITTED, ErrorRecord
from planner.vocabulary import AttemptStatus, StepStatus

#: Seconds a step's lease lasts unless renewed (CHORDAL_STEP_LEASE_S sets the engine's).
DEFAULT_LEASE_S = 30.0


@dataclass(frozen=True)
class Begin:
    """What ``begin_step`` decided: run the tool, or why not. ``version`` is the plan
    version that holds the step now (the message may carry an older one); ``tries``: the
    attempts made since the run's last retry, this one included (``max_retries`` bounds
    them), when it runs."""

    state: Literal["run", "done", "waiting", "inactive", "exhausted", "busy"]
    detail: str
    version: int = 0
    tries: int = field(default=0, compare=False)
    #: The outputs of the steps asked for (``reads``), read in the same call, when it runs.
    inputs: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def attempt(self) -> int:
        return int(self.detail)


@dataclass(frozen=True)
class Finish:
    """What ``finish_step`` decided: ``duplicate`` (already finished: do nothing),
    ``superseded`` (reported by an attempt that is not the current one: recorded on it
    only), ``inactive`` (the run is over), or ``ok`` with the dependents now ready."""

    state: Literal["ok", "held", "duplicate", "inactive", "detached", "superseded"]
    remaining: int = -1
    ready: tuple[str, ...] = ()
    version: int = 0
    #: The ready dependents are noted dispatched already (``dispatching``): publish them,
    #: without :meth:`StepTransitions.mark_dispatched`.
    noted: bool = False


def _fence(attempt: int | None) -> str:
    return "" if attempt is None else str(attempt)


def _outcome(error: ErrorRecord) -> AttemptStatus:
    """How an attempt that failed ended, on its record."""
    return AttemptStatus.REVOKED if error.type == REVOKED else AttemptStatus.FAILED


class StepTransitions(StoreBase):
    """A step's attempts, its outcomes, its dispatch, and the leases held on a run."""

    def begin_step(self, run_id: str, step_id: str, version: int, worker: str,
                   max_attempts: int, lease_s: float = DEFAULT_LEASE_S,
                   task_id: str | None = None, reads: Iterable[str] = ()) -> Begin:
        """Count an attempt and mark the step running under a lease of ``lease_s``
        seconds, or say why not (see ``begin_step.lua``). ``task_id``: the Celery task
        that runs the attempt (kept on its record); ``reads``: steps whose outputs to read
        in the same call, when it runs (its inputs: one round trip, not two)."""
        k = RunKeys(run_id)
        reads = sorted(set(reads))
        reply = self._run("begin_step", [k.run, k.steps, k.events, k.deps, k.leases,
                                         k.outputs],
                          step_id, str(version), worker, str(max_attempts), str(lease_s),
                          task_id or "", *reads)
        state, detail, current = reply[:3]
        if state == "run":
            metrics.step_started(reply[4], reply[3])  # once per attempt
            inputs = {sid: json.loads(v) for sid, v in zip(reads, reply[6:], strict=False)
                      if v is not None}
            return Begin(state, detail, int(current), int(reply[5]), inputs)
        return Begin(state, detail or "", int(current or 0))

    def finish_step(self, run_id: str, step_id: str, *, output: Any, worker: str,
                    skipped_error: ErrorRecord | None = None, hold: bool = False,
                    attempt: int | None = None,
                    dispatching: Mapping[str, str] | None = None) -> Finish:
        """Record a success (or, with ``skipped_error``, a skip) and count down the
        dependents the current plan version gives it; with ``hold`` (a checkpoint), hold
        them until :meth:`release` of the review. ``attempt``: the attempt that reports it
        (None: the engine decides); a superseded one changes nothing. ``dispatching``: the
        caller publishes the ready dependents' first messages next (their queues by step,
        as far as it knows them): they are noted dispatched in the same call
        (``Finish.noted``)."""
        k = RunKeys(run_id)
        status = StepStatus.SKIPPED if skipped_error is not None else StepStatus.SUCCEEDED
        outcome = AttemptStatus.SUCCEEDED if skipped_error is None else _outcome(skipped_error)
        reply = self._run("finish_step", [k.run, k.steps, k.events, k.outputs, k.deps,
                                          k.dependents, k.leases],
                          step_id, status, json.dumps(output),
                          skipped_error.to_json() if skipped_error else "", worker,
                          str(self.retention_s), "1" if hold else "0", _fence(attempt),
                          outcome, run_id if dispatching is not None else "",
                          json.dumps(dict(dispatching or {})))
        state = reply[0]
        if state in ("ok", "held"):
            tool, took = reply[3], reply[4]
        elif state in ("recorded", "detached"):
            tool, took = reply[1], reply[2]
        else:
            # Not recorded: a duplicate, a superseded attempt, or the run's record is gone.
            return Finish(state)
        metrics.step_finished(tool, status, took)
        if state not in ("ok", "held"):
            # Recorded while the run is not running: nothing follows from it.
            return Finish("inactive" if state == "recorded" else "detached")
        return Finish(state, int(reply[1]), tuple(reply[5:]), int(reply[2]),
                      noted=dispatching is not None and state == "ok")

    def release_step(self, run_id: str, step_id: str, version: int) -> Finish:
        """Let a held checkpoint's dependents go (its review said go on), once."""
        k = RunKeys(run_id)
        reply = self._run("release_step", [k.run, k.steps, k.events, k.deps, k.dependents],
                          step_id, str(version))
        if reply[0] != "ok":
            return Finish("duplicate")
        return Finish("ok", int(reply[1]), tuple(reply[3:]), int(reply[2]))

    def fail_step(self, run_id: str, step_id: str, error: ErrorRecord, worker: str,
                  attempt: int | None = None) -> bool:
        """Record a step's permanent failure, once (False if it was already final, or if
        ``attempt`` is not the current one)."""
        k = RunKeys(run_id)
        reply = self._run("fail_step", [k.run, k.steps, k.events, k.leases], step_id,
                          error.to_json(), worker, _fence(attempt), _outcome(error))
        if reply:
            metrics.step_finished(reply[0], StepStatus.FAILED, reply[1])
        return bool(reply)

    def record_retry(self, run_id: str, step_id: str, error: ErrorRecord,
                     attempt: int | None = None) -> bool:
        """Record a failed attempt that will be retried; False if the step is already
        final (a duplicate attempt failed after another one finished it: do not retry), or
        if ``attempt`` is not the current one."""
        k = RunKeys(run_id)
        reply = self._run("retry_step", [k.run, k.steps, k.events, k.leases], step_id,
                          error.to_json(), str(error.retry_in_s or 0), _fence(attempt))
        if reply:
            metrics.step_retried(reply[0])
        return bool(reply)

    def reclaim(self, run_id: str, step_id: str, attempt: int, error: ErrorRecord,
                delay_s: float) -> bool:
        """A running step whose lease expired goes back to pending with ``error``, if it
        is still attempt ``attempt`` with no live lease (see ``reclaim_step.lua``); that
        attempt is taken for lost."""
        k = RunKeys(run_id)
        return bool(self._run("reclaim_step", [k.run, k.steps, k.events, k.leases], step_id,
                              str(attempt), error.to_json(), str(delay_s)))

    def mark_dispatched(self, run_id: str, step_ids: Sequence[str],
                        countdown: float = 0.0, queues: Mapping[str, str] | None = None,
                        task_ids: Mapping[str, str] | None = None) -> None:
        """Note that these steps' messages were published, to run after ``countdown``
        seconds (so recovery does not publish them again, and the reconciler knows when
        to expect them), each to its queue in ``queues`` (the metrics count what waits in
        each queue from it), under its task id in ``task_ids`` (the step's live task)."""
        if step_ids:
            k = RunKeys(run_id)
            pairs = [x for s in step_ids
                     for x in (s, (queues or {}).get(s, ""), (task_ids or {}).get(s, ""))]
            self._run("mark_dispatched", [k.run, k.steps], str(countdown), *pairs)

    def note_task(self, run_id: str, step_id: str, task_id: str) -> None:
        """A step's message was published again under ``task_id``: its live task now."""
        k = RunKeys(run_id)
        self._run("live_task", [k.run, k.steps], step_id, task_id)

    def note_stale(self, run_id: str, step_id: str, task_id: str, error: ErrorRecord
                   ) -> int:
        """A task the step no longer runs under was revoked, or failed outside its tool:
        the attempt that ran under it is recorded ``revoked`` (a person stopped it) or
        ``superseded`` (it failed after the step moved on), with ``error``; nothing else
        changes. The attempt noted, or 0."""
        k = RunKeys(run_id)
        outcome = _outcome(error)
        return int(self._run("note_stale", [k.run, k.steps, k.leases], step_id, task_id,
                             AttemptStatus.REVOKED if outcome == AttemptStatus.REVOKED
                             else AttemptStatus.SUPERSEDED, outcome,
                             error.to_json()))

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

    def ready_unstarted(self, run_id: str, step_ids: Sequence[str] | None = None,
                        noted: bool = False) -> list[str]:
        """Of ``step_ids`` (default: every step of the current version), those whose
        dependencies are all finished, that never started and whose message was never
        published (a paused run going on; a plan version installed). With ``noted``, also
        those a finish noted as to be published (``p``): only the redelivered message of
        that finish may republish them (its worker may have died before the publish); for
        anyone else a ``p`` step's message is on its way, and publishing it again would
        make a duplicate whose ``recover`` republishes the ``p`` steps after it in turn.
        A root its run's one-call submit noted (``s``) is the reconciler's to publish again
        (its submitter may have died before the publish), never these callers'."""
        k = RunKeys(run_id)
        if step_ids is None:
            step_ids = sorted(cast(list[str], self.r.hkeys(k.deps)))
        if not step_ids:
            return []
        counts = cast(list[str | None], self.r.hmget(k.deps, list(step_ids)))
        fields = [f"{s}.{name}" for s in step_ids for name in ("status", "dispatched")]
        values = cast(list[str | None], self.r.hmget(k.steps, fields))
        return [s for i, (s, n) in enumerate(zip(step_ids, counts, strict=True))
                if n == "0" and values[2 * i] == StepStatus.PENDING
                and values[2 * i + 1] not in ((PUBLISHED, SUBMITTED) if noted else DISPATCHED)]
