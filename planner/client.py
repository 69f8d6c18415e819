"""Submit plans and goals, follow runs, read reports: what apps, the CLI and the API use.

The client publishes by task name (``planner.wire``); it needs Redis and the broker, and
the tool modules to validate plans, but no worker code.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import redis
from pydantic import ValidationError

from planner import tracing
from planner.engine import human
from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import step_message
from planner.engine.reconcile import alive, next_move
from planner.engine.runtime import Runtime
from planner.engine.start import (
    approval_reason,
    await_approval,
    publish_or_fail,
    request_plan,
    start_run,
)
from planner.errors import InvalidInput, NoWorkerError, Unavailable
from planner.jsonvalue import text_problem
from planner.language.plan import Plan
from planner.language.validation import Limits, validate
from planner.llm import ROLES, make_model, require_model
from planner.llm.roles import role_config
from planner.options import RunOptions, invalid
from planner.settings import Settings
from planner.store.lost import new_run_id
from planner.store.records import (
    TERMINAL_RUN,
    WAITING_RUN,
    RunEvent,
    RunReport,
    RunSummary,
    WorkerInfo,
)
from planner.store.runs import RunStore
from planner.tools.registry import ToolRegistry, load_tools
from planner.usage import summarize
from planner.vocabulary import RunStatus

if TYPE_CHECKING:
    from celery import Celery

    from planner.remote import RemoteClient

EventHandler = Callable[[RunEvent], None]
#: Backoff of Client.wait while Redis does not answer (doubling up to the max).
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.1, 2.0
#: Longest wait for a run's next event before its status is read again.
WAIT_BLOCK_S = 0.5
#: Most events one wait's read takes (a full read: more may follow at once).
WAIT_COUNT = 1_000


def redis_hint(settings: Settings, exc: BaseException) -> str:
    """Redis does not answer: one line saying what to start or to set. `chordal dev` starts
    a Redis only when CHORDAL_REDIS_URL is unset, so it is the advice only then."""
    url = re.sub(r"//[^@/]*@", "//***@", settings.store.redis_url)  # no password on screen
    if "redis_url" in settings.store.model_fields_set:
        return (f"cannot reach Redis at CHORDAL_REDIS_URL={url} ({exc}); start Redis there, "
                "or fix CHORDAL_REDIS_URL (unset, `chordal dev` starts a Redis of its own)")
    return (f"cannot reach Redis at {url} (the default; CHORDAL_REDIS_URL is unset) "
            f"({exc}); run `chordal dev`, which starts one, or set CHORDAL_REDIS_URL to "
            "your Redis")


class Client:
    """A connection to a Chordal deployment (its Redis and its broker)."""

    def __init__(self, settings: Settings | None = None, tools: ToolRegistry | None = None,
                 app: Celery | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.tools = tools if tools is not None else load_tools(self.settings)
        self.store = RunStore.from_url(self.settings.store.redis_url,
                                       self.settings.store.retention_s)
        self._app = app
        self._runtime: Runtime | None = None

    @classmethod
    def from_url(cls, url: str, api_key: str | None = None, *,
                 timeout: float = 30.0) -> RemoteClient:
        """A client of a Chordal server (``chordal serve``) over HTTP: the same methods,
        with neither Redis access nor the tool modules (:mod:`planner.remote`)."""
        from planner.remote import RemoteClient  # loaded only by apps that use HTTP

        return RemoteClient(url, api_key, timeout=timeout)

    @property
    def app(self) -> Celery:
        """A Celery app to publish with (and to ask workers which queues they consume)."""
        if self._app is None:
            # Celery loads on the first publish, not for a client that only reads runs.
            from planner.engine.publisher import producer_app

            self._app = producer_app(self.settings)
        return self._app

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from planner.engine.publisher import CeleryPublisher

            self._runtime = Runtime(self.settings, CeleryPublisher(self.app), self.tools,
                                    self.store, model=None)
        return self._runtime

    def ping(self) -> None:
        """Fail with one clear line if the run store's Redis cannot be reached."""
        try:
            self.store.r.ping()
        except redis.RedisError as exc:
            raise Unavailable(redis_hint(self.settings, exc)) from None

    def compile(self, plan: Plan | Mapping[str, Any]) -> CompiledPlan:
        limits = Limits.from_settings(self.settings)
        return CompiledPlan.build(validate(plan, self.tools, limits).plan, self.tools,
                                  self.settings)

    def submit(self, plan: Plan | Mapping[str, Any] | CompiledPlan,
               options: RunOptions | None = None, *, run_id: str | None = None) -> str:
        """Validate (unless already compiled), record and start a run; return its id.
        ``options`` (:class:`RunOptions`): with ``approve`` it waits in
        ``awaiting_approval`` until :meth:`approve`; ``roles`` overrides models per role
        (its ``llm`` steps, the synthesizer); ``owner`` and ``callback_url`` are recorded
        with it (the HTTP API's tenant and where to POST the final report);
        ``synthesize``: whether the synthesizer model writes the answer (default: the
        plan's ``synthesize``; if it says nothing, no: the answer is the last steps'
        outputs, as for a plan file run by the CLI or over HTTP; a goal's run,
        :meth:`submit_goal`, always has one). Raises ``PlanInvalid`` (and ``InvalidInput``
        for a bad option)."""
        compiled = plan if isinstance(plan, CompiledPlan) else self.compile(plan)
        options = self._checked(options)
        if options.synthesize is None:
            options = options.model_copy(update={"synthesize": bool(compiled.plan.synthesize)})
        # Inside a span, the run joins its trace (tracing.joined_run_id: every door's way).
        run_id = run_id or tracing.joined_run_id(new_run_id())
        with tracing.creating(run_id):
            if not self.settings.engine.one_call_submit:
                self.ping()
                self.store.create_run(compiled.plan.goal, compiled.plan, compiled.deps,
                                      run_id, options)
                if options.approve:
                    # Only the store: a client that waits for a person needs no model.
                    await_approval(self.store, run_id)
                    return run_id
                start_run(self.runtime, run_id)
                return run_id
            self._submit_at_once(compiled, options, run_id)
        return run_id

    def _submit_at_once(self, compiled: CompiledPlan, options: RunOptions,
                        run_id: str) -> None:
        """Record, start and note the roots of a run in one round trip, then publish the
        roots, compiled here (the plan the workers read back compiles the same)."""
        if compiled.checkpoint_all != bool(options.checkpoint_all):
            compiled = replace(compiled, checkpoint_all=bool(options.checkpoint_all))
        # A run waiting for a person needs neither the broker nor a model.
        messages = [] if options.approve else [step_message(compiled, run_id, 1, s)
                                               for s in compiled.roots]
        try:
            done = self.store.submit_run(
                run_id, compiled.plan, compiled.deps, options,
                approval_reason(run_id) if options.approve else None,
                [(m.args[1], m.queue, m.task_id or "") for m in messages])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # No ping first: the first command says Redis is down, in the same words.
            raise Unavailable(redis_hint(self.settings, exc)) from None
        if done.status == RunStatus.RUNNING:
            rt = self.runtime
            ready = set(done.ready)
            publish_or_fail(rt, run_id, lambda: rt.publish(
                [m for m in messages if m.args[1] in ready]))

    def _checked(self, options: RunOptions | None) -> RunOptions:
        """``options`` (none: the defaults), its roles checked against this deployment's
        and its values revalidated (a model's fields may have been assigned since)."""
        if options is None:
            return RunOptions()
        if not isinstance(options, RunOptions):
            raise InvalidInput(f"options: must be a RunOptions, not {type(options).__name__}")
        try:
            options = RunOptions.model_validate(options.model_dump())
        except ValidationError as exc:
            raise invalid(exc) from None
        self._check_roles(options.roles)
        return options

    def _check_roles(self, roles: Mapping[str, Mapping[str, Any]] | None) -> None:
        for role, over in (roles or {}).items():
            if role not in ROLES:
                raise InvalidInput(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
            role_config(self.settings, role, {role: over})

    @property
    def has_model(self) -> bool:
        """Whether a model is configured here (workers are expected to share it)."""
        return make_model(self.settings) is not None

    def check_goal(self, goal: str) -> None:
        """``InvalidInput`` naming ``goal`` unless it is text a run can be made for."""
        if not isinstance(goal, str) or not goal.strip():
            raise InvalidInput("goal: is empty; say what the run is for")
        why = text_problem(goal, self.settings.limits.max_goal_bytes)
        if why is not None:
            raise InvalidInput(f"goal: {why} (CHORDAL_MAX_GOAL_BYTES)")

    def submit_goal(self, goal: str, options: RunOptions | None = None, *,
                    run_id: str | None = None) -> str:
        """Start a run from a goal: the planner model plans it on a worker, then it runs
        (with ``options.approve``, it waits in ``awaiting_approval`` once planned).

        ``options.roles`` overrides model, max_tokens or temperature per role for this
        run, e.g. ``RunOptions(roles={"planner": {"model": "claude-sonnet-5-5"}})``."""
        self.check_goal(goal)
        require_model(self.settings)  # says exactly what to set when there is none
        # A goal's run is answered in words: the synthesizer writes it.
        options = self._checked(options).model_copy(
            update={"synthesize": True, "from_plan": False})
        self.ping()
        run_id = run_id or tracing.joined_run_id(new_run_id())
        with tracing.creating(run_id):
            self.store.create_run(goal, run_id=run_id, options=options)
            request_plan(self.runtime, run_id)
        return run_id

    def report(self, run_id: str) -> RunReport:
        """The run report, with ``usage`` (tokens by role and step, estimated cost)."""
        report, usage = self.store.report_and_usage(run_id)
        report.usage = summarize(usage, self.settings.budget.prices)
        return report

    def wait(self, run_id: str, timeout: float | None = None,
             on_event: EventHandler | None = None) -> RunReport:
        """Block until the run ends or waits for a person (approval, a paused budget), or
        ``timeout`` seconds pass; return its report."""
        deadline = None if timeout is None else time.monotonic() + timeout
        cursor, pause = "0-0", RECONNECT_FIRST_S
        # The run's status as its last run-level event said (each says the status it left
        # the run in, and every change of it writes one): its record is read only when the
        # events cannot tell (none came in a block's length, a reconnect, every block).
        status: str | None = None
        read, looked, full = False, time.monotonic(), True
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            try:
                if read or time.monotonic() - looked >= WAIT_BLOCK_S:
                    looked, full = time.monotonic(), True
                    status = self.store.run_state(run_id).status
                ended = status in TERMINAL_RUN | WAITING_RUN
                if ended or (left is not None and left <= 0):
                    # Hand over what happened since the last read (run.finished included),
                    # unless that read said the run ended and brought all there was.
                    if full or not ended:
                        for event in self.store.events(run_id, cursor, count=100_000):
                            cursor = event.id
                            if on_event:
                                on_event(event)
                    break
                block = int(WAIT_BLOCK_S * 1000)
                block = block if left is None else max(1, min(block, int(left * 1000)))
                events = self.store.events(run_id, cursor, block_ms=block, count=WAIT_COUNT)
                for event in events:
                    cursor = event.id  # resume here after a reconnect: nothing missed
                    if on_event:
                        on_event(event)
                said = [e.status for e in events if e.type.startswith("run.")]
                if said:
                    status, looked = said[-1], time.monotonic()
                read, full = not events or status is None, len(events) >= WAIT_COUNT
                pause = RECONNECT_FIRST_S
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                # Redis restarting or a network blip: wait and resume from the cursor,
                # until the deadline; past it, say so in one line.
                if left is not None and left <= pause:
                    raise Unavailable(f"lost Redis at CHORDAL_REDIS_URL while waiting for "
                                      f"run {run_id!r} ({exc}); it did not come back in "
                                      "time") from None
                time.sleep(pause)
                pause = min(RECONNECT_MAX_S, pause * 2)
                read = True
        return self.report(run_id)

    def runs(self, status: str | None = None, limit: int = 20) -> list[RunSummary]:
        """Runs newest first, optionally only in ``status``."""
        return self.store.runs(status, limit)

    def stuck(self, limit: int = 20, quiet_s: float | None = None) -> list[RunSummary]:
        """Runs that have not ended, have nothing at work (no live lease) and have had no
        event for ``quiet_s`` seconds (default CHORDAL_DISPATCH_GRACE_S), quietest first,
        with what each waits for. Runs waiting for a person (approval, a paused budget)
        are not stuck. The reconciler repairs
        such runs by itself; this is for a person who wants to look."""
        store = self.runtime.store
        after = self.settings.engine.dispatch_grace_s if quiet_s is None else quiet_s
        found: list[RunSummary] = []
        for run_id, _created in store.active_runs():
            snap = store.snapshot(run_id)
            if snap is None or snap.run.status not in (RunStatus.RUNNING, RunStatus.PENDING) \
                    or alive(snap, self.settings.engine.step_lease_s):
                continue
            quiet = snap.now - (snap.last_event_at or snap.now)
            if quiet >= after:
                run = snap.run
                found.append(RunSummary(
                    run_id=run_id, status=run.status, goal=run.goal,
                    created_at=run.created_at, plan_version=run.version,
                    quiet_s=round(quiet, 1), waiting_for=next_move(snap)))
        found.sort(key=lambda r: -(r.quiet_s or 0))
        return found[:limit]

    def cancel(self, run_id: str) -> bool:
        """End a run ``cancelled`` (False if it had ended): steps not started never start;
        running ones finish, their results recorded, but unlock nothing."""
        return self.store.cancel(run_id)

    def approve(self, run_id: str, plan: Plan | Mapping[str, Any] | None = None) -> None:
        """Start a run that waits for approval; ``plan``, an edited plan, is validated
        like any plan and replaces the one it waits with."""
        edited = self.compile(plan).plan if plan is not None else None
        human.approve(self.runtime, run_id, edited)

    def reject(self, run_id: str, reason: str | None = None) -> None:
        """End a run that waits for approval, ``cancelled`` with ``reason``."""
        human.reject(self.runtime, run_id, reason)

    def retry(self, run_id: str, step_id: str | None = None) -> list[str]:
        """Re-drive a failed or cancelled run from where it stopped, keeping what it
        earned (``step_id``: only that step). Returns the steps that run again."""
        return human.retry(self.runtime, run_id, step_id)

    def resume(self, run_id: str, budget_tokens: int | None = None,
               budget_usd: float | None = None) -> None:
        """Go on with a run paused at its budget, with a new budget."""
        RunOptions.checked(budget_tokens=budget_tokens, budget_usd=budget_usd)  # checks them
        human.resume(self.runtime, run_id, budget_tokens, budget_usd)

    def missing_queues(self, queues: set[str], timeout: float = 1.0) -> set[str]:
        """The queues that no running worker consumes (all of them if none answers)."""
        replies = self.app.control.inspect(timeout=timeout).active_queues() or {}
        consumed = {q["name"] for qs in replies.values() for q in qs}
        return queues - consumed

    def workers(self) -> list[WorkerInfo]:
        """The live workers, with their queues and tools (each refreshes its record every
        few seconds)."""
        return self.runtime.store.live_workers()

    def uncovered_steps(self, plan: Plan | Mapping[str, Any] | CompiledPlan) -> list[str]:
        """Why live workers cannot run some of the plan's steps: for each step, if no live
        worker that consumes its queue has its tool, one sentence saying what to start.
        Empty when they all can, or when no worker is up (that is a queue problem)."""
        compiled = plan if isinstance(plan, CompiledPlan) else self.compile(plan)
        workers = self.workers()
        if not workers:
            return []
        problems = []
        for step in compiled.plan.steps:
            # An agent step's tool calls run on their tools' queues: check those too.
            needs = [(step.tool, compiled.queue_of(step.id))] + [
                (t, compiled.tools[t].queue) for t in compiled.agent_tools(step.id)
                if t in compiled.tools]
            for tool, queue in needs:
                on_queue = [w for w in workers if queue in w.queues]
                if on_queue and not any(tool in w.tools for w in on_queue):
                    loaded = sorted({m for w in on_queue for m in w.modules}) or ["none"]
                    problems.append(
                        f"step {step.id!r}: no live worker on queue {queue!r} has tool "
                        f"{tool!r} (they loaded CHORDAL_TOOL_MODULES={','.join(loaded)}); "
                        "start workers with the CHORDAL_TOOL_MODULES that define it")
        return problems

    def require_workers(self, plan: Plan | Mapping[str, Any]) -> None:
        """Raise :class:`NoWorkerError` if no worker consumes a queue the plan needs."""
        self.require_queues(self.compile(plan).queues())

    def require_queues(self, queues: set[str]) -> None:
        """Raise :class:`NoWorkerError`, saying how to start one, for unconsumed queues."""
        missing = self.missing_queues(queues)
        if missing:
            names = ",".join(sorted(missing))
            raise NoWorkerError(f"no worker consumes queue(s) {names}; start one with "
                                f"`chordal worker` (all queues) or `chordal worker "
                                f"--queues {names}`")
