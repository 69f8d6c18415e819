"""The reconciler and agent steps (design §5), on a real Redis with a recording publisher.

Between its hops an agent step's lease lapses by design: it is not lost while (a) a tool
call of it runs under a live call lease, (b) a call published and not begun is within the
dispatch grace of its due time or its message may still wait in its queue, or (c) a
message of it may still wait in its own queue (its next turn behind a backlog). Otherwise
it is ``lease_expired`` as any step. The store is driven by the agent scripts as the
engine drives them (a dead worker's lease is written lapsed); the broker's answers are the
publisher's.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from planner.engine import agent_liveness
from planner.engine.agent_liveness import Look
from planner.engine.broker import held_steps, step_of
from planner.engine.dispatch import MemoryPublisher, Message
from planner.engine.publisher import CeleryPublisher, producer_app
from planner.engine.reconcile import CONFIRM_S, Reconciler
from planner.engine.runtime import Runtime
from planner.language.plan import Plan
from planner.settings import Settings
from planner.store.keys import RunKeys, call_lease
from planner.store.records import ErrorRecord
from planner.store.runs import NewCall
from planner.wire import AGENT_CALL_TASK, AGENT_TURN_TASK
from tests.engine.conftest import MakeRuntime, echo, redis_url, started

#: A grace of 1 s: "past the grace" is a due time written 5 s back.
FAST = {"CHORDAL_DISPATCH_GRACE_S": "1", "CHORDAL_STEP_LEASE_S": "3"}
AGENT = {"id": "pick", "tool": "agent", "args": {"task": "pick one", "tools": ["echo"]}}


@pytest.fixture
def rt(make_rt: MakeRuntime) -> Runtime:
    return make_rt(**FAST)


def publisher(rt: Runtime) -> MemoryPublisher:
    assert isinstance(rt.publisher, MemoryPublisher)
    return rt.publisher


def agent_running(rt: Runtime) -> str:
    """A run whose agent step ``pick`` made turn 0 and asked for one call of ``echo`` on
    queue ``probe``, then handed off: its step lease lapsed, as it does once a hop (the
    calls, then the next turn) outlasts it."""
    plan = Plan.model_validate({"goal": "g", "steps": [AGENT]})
    run = rt.store.create_run("g", plan)
    rt.store.start_run(run)
    rt.store.mark_dispatched(run, ["pick"])
    assert rt.store.begin_step(run, "pick", 1, "w1", 3, lease_s=3, task_id="S").state == "run"
    assert rt.store.begin_turn(run, "pick", 0, 0, "w1", 3, "S", attempt=1).state == "run"
    recorded = rt.store.record_turn(
        run, "pick", 0, 0, "S", kind="tools", handoff_s=3,
        content=[{"type": "tool_use", "id": "tu0", "name": "echo", "input": {"value": 1}}],
        calls=[NewCall(0, "echo", {"value": 1}, id="tu0", queue="probe")])
    assert (recorded.state, recorded.left, recorded.active) == ("ok", 1, True)
    lapse(rt, run, "pick")
    return run


def lapse(rt: Runtime, run: str, name: str) -> None:
    """The lease's holder stopped renewing it long ago."""
    rt.store.r.hset(RunKeys(run).leases, name, "1")


def own_queue(rt: Runtime, run: str) -> str:
    return rt.compiled(run, 1).queue_of("pick")


def call_begun(rt: Runtime, run: str) -> None:
    """A worker began the call (and holds its call lease)."""
    assert rt.store.begin_call(run, "pick", 0, 0, 0, "w2", 3, 3, "C0").state == "run"


def due_in(rt: Runtime, run: str) -> float:
    snap = rt.store.snapshot(run)
    assert snap is not None
    [(queue, due)] = snap.steps["pick"].calls_due.values()
    assert queue == "probe"
    return due - snap.now


def kinds(rec: Reconciler) -> list[tuple[str, str | None]]:
    return [(r.kind, r.step) for _, r in rec.reconcile()]


def test_a_tool_call_under_a_live_call_lease_keeps_its_agent_step(rt: Runtime) -> None:
    run = agent_running(rt)
    call_begun(rt, run)
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    time.sleep(1.1)  # quiet past the grace: not stalled either, a call is at work
    assert kinds(rec) == []
    lapse(rt, run, call_lease("pick", 0, 0))  # the call's worker died too
    assert kinds(rec) == [("lease_expired", "pick")]


def test_a_call_within_the_grace_of_its_due_time_keeps_its_agent_step(rt: Runtime) -> None:
    run = agent_running(rt)
    publisher(rt).holding = set()  # nothing anywhere: only the due time speaks for it
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    assert due_in(rt, run) <= 0
    assert kinds(rec) == []  # just published
    time.sleep(1.1)  # past the grace, and nowhere
    assert kinds(rec) == []  # one look is not enough
    time.sleep(CONFIRM_S + 0.1)
    assert kinds(rec) == [("lease_expired", "pick")]


def test_a_call_waiting_out_a_retry_countdown_keeps_its_agent_step(rt: Runtime) -> None:
    run = agent_running(rt)
    call_begun(rt, run)
    retried = rt.store.finish_call(run, "pick", 0, 0, 0, outcome="retry", attempt=1,
                                   error=ErrorRecord(type="TransientError", message="flaky",
                                                     transient=True),
                                   delay_s=30, queue="probe")
    assert retried.state == "retry" and due_in(rt, run) > 25
    publisher(rt).holding = set()  # a worker holds it for its countdown, or it is lost
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    for _ in range(2):
        time.sleep(CONFIRM_S + 0.1)
        assert kinds(rec) == []


def test_a_call_whose_message_waits_in_its_queue_keeps_its_agent_step(rt: Runtime) -> None:
    run = agent_running(rt)
    time.sleep(1.1)  # past the grace
    publisher(rt).holding = {(run, "pick", 1)}
    publisher(rt).depths["probe"] = 40  # behind others
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    for _ in range(2):
        assert kinds(rec) == []
        time.sleep(CONFIRM_S + 0.1)
    publisher(rt).holding = None  # a broker that cannot say: the queue is not empty
    assert kinds(rec) == []
    publisher(rt).depths["probe"] = 0  # it drained, and the call never began
    assert kinds(rec) == [("lease_expired", "pick")]


def test_a_reserved_message_in_an_empty_queue_does_not_keep_it(rt: Runtime) -> None:
    """A message the broker holds only as a worker's reservation, its queue empty, is a
    dead worker's (or starts now): the step is reclaimed and resumes."""
    run = agent_running(rt)
    time.sleep(1.1)  # past the grace
    publisher(rt).holding = {(run, "pick", 1)}
    assert kinds(Reconciler(rt, lock_s=10, settle_s=0)) == [("lease_expired", "pick")]


def test_its_next_turn_waiting_in_its_own_queue_keeps_its_agent_step(rt: Runtime) -> None:
    run = agent_running(rt)
    call_begun(rt, run)
    last = rt.store.finish_call(run, "pick", 0, 0, 0, outcome="succeeded", attempt=1,
                                output={"value": 1}, handoff_s=3)
    assert last.state == "last"  # the worker publishes turn 1 to the step's queue
    lapse(rt, run, "pick")  # ... where it waits longer than the hop
    queue = own_queue(rt, run)
    publisher(rt).holding = {(run, "pick", 1)}
    publisher(rt).depths[queue] = 40
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    time.sleep(1.1)
    assert kinds(rec) == []  # neither lost nor stalled: it waits behind a backlog
    publisher(rt).holding = set()  # gone from the queue, begun by no one
    assert kinds(rec) == []
    time.sleep(CONFIRM_S + 0.1)
    assert kinds(rec) == [("lease_expired", "pick")]
    [event] = [e.data for e in rt.store.events(run) if e.type == "run.repaired"]
    assert event["kind"] == "lease_expired"
    assert event["why"].endswith("no turn or tool call of it is at work or waiting")


def test_a_step_that_is_not_an_agent_is_reclaimed_whatever_its_queue_holds(
        rt: Runtime) -> None:
    """The agent rules leave other steps alone: its own message is reserved by the worker
    that died (acks are late), however busy its queue."""
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w1", 4, lease_s=3)
    lapse(rt, run, "a")
    publisher(rt).holding = {(run, "a", 1)}
    publisher(rt).depths["chordal"] = 40
    assert kinds(Reconciler(rt, lock_s=10, settle_s=0)) == [("lease_expired", "a")]


def test_a_lapsed_call_lease_and_nothing_waiting_reclaims_it_once(rt: Runtime) -> None:
    run = agent_running(rt)
    call_begun(rt, run)
    lapse(rt, run, call_lease("pick", 0, 0))
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    assert kinds(rec) == [("lease_expired", "pick")]
    state = rt.store.step_state(run, "pick")
    assert state.error is not None and state.error.type == "WorkerLost"
    assert kinds(rec) == []  # reclaimed: no longer running


def test_agent_messages_name_their_step_in_the_broker(make_rt: MakeRuntime) -> None:
    """Real messages, published by a Celery producer to a Redis broker: an agent step's
    turn and call messages are found as its messages, by their first three arguments."""
    rt = make_rt(**FAST)
    run = agent_running(rt)
    url = redis_url()
    app = producer_app(Settings.from_env({"CHORDAL_REDIS_URL": url}))
    pub = CeleryPublisher(app)
    pub.publish([Message(AGENT_CALL_TASK, (run, "pick", 1, 0, 0, 1), "probe",
                         task_id=f"{run}.1.pick.c0t0i1"),
                 Message(AGENT_TURN_TASK, (run, "pick", 1, 0, 1), "llm",
                         task_id=f"{run}.1.pick.c0t1")])
    assert pub.held("probe") == {(run, "pick", 1)}
    assert pub.held("llm") == {(run, "pick", 1)}
    [raw] = redis.Redis.from_url(url).lrange("probe", 0, -1)
    with app.connection_for_read() as conn:
        assert held_steps(conn.default_channel, "probe") == {(run, "pick", 1)}
    assert step_of(raw) == (run, "pick", 1)
    other = json.loads(raw)
    other["headers"]["task"] = "chordal.finalize"
    assert step_of(json.dumps(other)) is None


def test_the_pure_judgement() -> None:
    assert agent_liveness.lease_step("~pick|2|0") == "pick"
    assert agent_liveness.lease_step("pick") is None
    assert agent_liveness.lease_step("@replanner:t1") is None
    leases = {"~a|0|0": 10.0, "~b|1|2": 4.0, "b": 20.0, "@planner": 20.0}
    assert agent_liveness.calling(leases, now=5.0) == {"a"}
    # missing on one look only: may still be between a queue and a worker
    assert agent_liveness.may_wait(Look(False, 4.5), 0, now=5.0, confirm_s=1.0)
    assert not agent_liveness.may_wait(Look(False, 3.0), 40, now=5.0, confirm_s=1.0)
    assert agent_liveness.may_wait(Look(True), 40, now=5.0, confirm_s=1.0)
    assert not agent_liveness.may_wait(Look(True), 0, now=5.0, confirm_s=1.0)
    assert agent_liveness.may_wait(Look(None), None, now=5.0, confirm_s=1.0)
    why = agent_liveness.at_work("a", {"0.1": ("probe", 100.0)}, 100.5, 1.0, "llm",
                                 lambda _q: 0, lambda _s, _q: Look(False, 90.0), 1.0)
    assert why == "its call 0.1 was due 0 s ago"
    why = agent_liveness.at_work("a", {}, 100.0, 1.0, "llm", lambda q: 3 if q == "llm" else 0,
                                 lambda _s, _q: Look(True), 1.0)
    assert why == "its next turn may still wait in queue 'llm'"
    assert agent_liveness.at_work("a", {"0.1": ("probe", 90.0)}, 100.0, 1.0, "llm",
                                  lambda _q: 0, lambda _s, _q: Look(True), 1.0) is None
