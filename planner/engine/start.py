"""Starting a run: one path for a plan file and for a goal the planner model planned.

A run is recorded (``pending``) before anything is published; starting it moves it to
``running`` and publishes its roots, once, however often a start is repeated.
"""

from __future__ import annotations

from collections.abc import Callable

from planner.engine.dispatch import plan_message
from planner.engine.metering import MeteredModel
from planner.engine.outcomes import Retry, dispatch, model_retry
from planner.engine.runtime import Runtime
from planner.engine.streaming import EarlySteps, finish_streamed
from planner.errors import ChordalError, Unavailable
from planner.llm import NO_MODEL
from planner.llm.planning import plan_goal
from planner.store.records import ErrorRecord
from planner.store.runs import RunStore
from planner.vocabulary import RunStatus


def start_run(rt: Runtime, run_id: str) -> None:
    """Start a recorded run and publish its roots not yet published (all of them, unless
    this is a repeat). If the broker refuses, the run ends ``failed`` saying so. A run
    that waits for approval does not start."""
    rt.store.start_run(run_id)
    run = rt.store.run_state(run_id)
    if run.status != RunStatus.RUNNING:
        return  # awaiting approval, or cancelled (or ended) before it started
    version = run.version
    compiled = rt.compiled(run_id, version)
    roots = rt.store.ready_unstarted(run_id, compiled.roots)
    publish_or_fail(rt, run_id, lambda: dispatch(rt, compiled, run_id, version, roots, False))


def request_plan(rt: Runtime, run_id: str) -> None:
    """Ask a worker to plan a recorded goal run (``plan_run`` below, on the llm queue)."""
    publish_or_fail(rt, run_id, lambda: rt.publish([plan_message(run_id)]))


def publish_or_fail(rt: Runtime, run_id: str, publish: Callable[[], None]) -> None:
    """Publish a run's first messages; if the broker refuses, end the run and say so."""
    try:
        publish()
    except Exception as exc:  # the broker refused or is unreachable
        rt.store.finish_run(run_id, RunStatus.FAILED, error=ErrorRecord(
            type="BrokerError", message=f"could not publish the run: {exc}"))
        broker = rt.settings.broker.split("@")[-1]  # no credentials in messages
        raise Unavailable(f"cannot publish to the broker at {broker} ({exc}); check "
                          "CHORDAL_BROKER_URL / CHORDAL_REDIS_URL") from None


def plan_run(rt: Runtime, run_id: str, retries: int) -> Retry | None:
    """goal -> plan by the planner model, then start the run. Runs on the ``llm`` queue, so
    a worker restart redelivers the call instead of losing it; every stage is idempotent."""
    run = rt.store.run_state(run_id)
    if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        return None
    if run.version == 0 and rt.store.options(run_id).from_plan:
        # Recorded with a plan, which its creator died before storing (two writes):
        # planning its goal would run something nobody asked for. Nothing ran.
        rt.store.finish_run(run_id, RunStatus.FAILED, error=ErrorRecord(
            type="PlanLost", message="this run was created from a plan, but its creator "
            "stopped before the plan was stored; nothing ran: submit the plan again"))
        return None
    streamed = run.streaming
    if run.version == 0 or streamed:
        # Unplanned, or planned while streaming by a task that stopped before the end
        # (redelivered): plan again; what the first answer started is reconciled then.
        metered = rt.metered(run_id)
        if metered is None:
            rt.store.finish_run(run_id, RunStatus.FAILED,
                                error=ErrorRecord(type="ConfigError", message=NO_MODEL))
            return None
        early = (EarlySteps(rt, run_id, run.goal, run.version)
                 if streamed or streams(rt, run_id, metered) else None)
        try:
            outcome = plan_goal(metered, rt.settings, rt.tools, run.goal,
                                metered.options.roles,
                                early.call(metered.stream) if early else None)
        except ChordalError as exc:
            retry = model_retry(rt.settings, exc, retries)
            if retry is None:
                rt.store.finish_run(run_id, RunStatus.FAILED, error=ErrorRecord(
                    type=type(exc).__name__, message=f"planner: {exc}"))
                rt.store.set_streaming(run_id, False)  # a retried run must be able to end
            return retry
        if outcome.plan is None:
            rt.store.finish_run(run_id, RunStatus.FAILED,
                                error=ErrorRecord.model_validate(outcome.error()))
            rt.store.set_streaming(run_id, False)
            return None
        if early is not None:
            if early.install_final(outcome.plan):
                finish_streamed(rt, run_id)
            return None
        rt.store.install_plan(run_id, 1, outcome.plan)
        run = rt.store.run_state(run_id)
    # Outside the planning branch, so a redelivery after a crash between the install and
    # this line still waits for approval; "approved" marks a run a person let go.
    if rt.store.options(run_id).approve and run.status == RunStatus.PENDING \
            and run.reason != "approved":
        await_approval(rt.store, run_id)
        return None
    start_run(rt, run_id)
    return None


def streams(rt: Runtime, run_id: str, metered: MeteredModel) -> bool:
    """Whether this run's plan starts while it is written: the setting says so, the model
    streams, and nobody reviews the whole plan first (approval, a checkpoint after every
    step)."""
    options = rt.store.options(run_id)
    return (rt.settings.model.stream_plans and metered.can_stream()
            and not options.approve and not options.checkpoint_all)


def await_approval(store: RunStore, run_id: str) -> None:
    """A pending run's plan waits for a person. The reason names the commands that decide,
    with the run's own id: the CLI, the API and the run page show it as it is."""
    store.set_status(run_id, RunStatus.AWAITING_APPROVAL, approval_reason(run_id),
                     from_=(RunStatus.PENDING,))


def approval_reason(run_id: str) -> str:
    return (f"the plan waits for approval (chordal approve {run_id}, or chordal reject "
            f"{run_id})")
