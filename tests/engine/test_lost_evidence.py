"""A lost message is told from a waiting one by looking for it in the broker: a step whose
message no queue and no worker holds, on two looks, is re-sent after the short lost grace
(not the long dispatch grace); one whose message still waits in a queue never is.

The decisions run on a recording publisher told what the broker holds; the broker reader
itself runs against real Redis lists written by a real Celery producer.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from planner.engine.broker import RUN_TASKS, held_steps, step_of, task_of
from planner.engine.dispatch import MemoryPublisher, finalize_message, step_message
from planner.engine.publisher import CeleryPublisher, producer_app
from planner.engine.reconcile import CONFIRM_S, Reconciler
from planner.engine.runtime import Runtime
from planner.settings import Settings
from planner.store.keys import RunKeys
from planner.wire import DEFAULT_QUEUE, LLM_QUEUE
from tests.engine.conftest import MakeRuntime, echo, redis_url, sent, started

#: The defaults but for the lost grace: the dispatch grace stays a minute long.
SLOW_GRACE = {"CHORDAL_DISPATCH_GRACE_S": "60", "CHORDAL_LOST_GRACE_S": "1"}


@pytest.fixture
def rt(make_rt: MakeRuntime) -> Runtime:
    return make_rt(**SLOW_GRACE)


def overdue(rt: Runtime, run: str, step: str, by: float = 5.0) -> None:
    """The step was due ``by`` seconds ago (past the lost grace, inside the grace)."""
    rt.store.r.hset(RunKeys(run).steps, f"{step}.due", str(rt.store.now() - by))


def publisher(rt: Runtime) -> MemoryPublisher:
    assert isinstance(rt.publisher, MemoryPublisher)
    return rt.publisher


def kinds(made: list[tuple[str, object]]) -> list[tuple[str, str | None]]:
    return [(r.kind, r.step) for _, r in made]  # type: ignore[attr-defined]


def test_a_message_no_broker_holds_is_sent_again_after_the_lost_grace(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    overdue(rt, run, "a")
    publisher(rt).holding = set()  # in no queue, reserved by no worker
    publisher(rt).depths[DEFAULT_QUEUE] = 7  # others wait in its queue: no matter
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    assert rec.reconcile() == []  # one look is not enough: it may be between two places
    time.sleep(CONFIRM_S + 0.1)
    assert kinds(rec.reconcile()) == [("message_lost", "a")]
    [message] = sent(rt)
    assert message.args == (run, "a", 1)
    [event] = [e.data for e in rt.store.events(run) if e.type == "run.repaired"]
    assert "no queue or worker held its message" in event["why"]


def test_a_message_waiting_in_its_queue_is_never_taken_for_lost(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    overdue(rt, run, "a", by=3_600)  # far past every grace
    publisher(rt).holding = {(run, "a", 1)}
    publisher(rt).depths[DEFAULT_QUEUE] = 200
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    for _ in range(3):
        assert rec.reconcile() == []
        time.sleep(CONFIRM_S / 2)
    # Published under an older plan version that a replan kept it in: still its message.
    publisher(rt).holding = {(run, "a", 0)}
    for _ in range(2):
        assert rec.reconcile() == []
        time.sleep(CONFIRM_S + 0.1)
    assert sent(rt) == []


def test_a_message_seen_again_starts_the_count_again(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    overdue(rt, run, "a")
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    publisher(rt).holding = set()
    assert rec.reconcile() == []
    time.sleep(CONFIRM_S + 0.1)
    publisher(rt).holding = {(run, "a", 1)}  # it was in flight to a worker after all
    assert rec.reconcile() == []
    publisher(rt).holding = set()
    assert rec.reconcile() == []  # missing again: a first look again
    assert sent(rt) == []


def test_inside_the_lost_grace_or_when_the_broker_cannot_say_nothing_is_repaired(
        rt: Runtime) -> None:
    run = started(rt, echo("a"))
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    publisher(rt).holding = set()
    overdue(rt, run, "a", by=0.2)  # just published
    assert rec.reconcile() == []
    time.sleep(CONFIRM_S + 0.1)
    assert rec.reconcile() == []
    overdue(rt, run, "a")
    publisher(rt).holding = None  # e.g. RabbitMQ: the dispatch grace and an empty queue
    publisher(rt).depths[DEFAULT_QUEUE] = 0
    for _ in range(2):
        assert rec.reconcile() == []
        time.sleep(CONFIRM_S + 0.1)
    assert sent(rt) == []


def test_the_broker_reader_finds_queued_and_reserved_step_messages(rt: Runtime) -> None:
    """Real messages, published by a Celery producer to a Redis broker: the reader finds
    a step's message in its queue list or in the ``unacked`` hash, and not once removed."""
    url = redis_url()
    settings = Settings.from_env({"CHORDAL_REDIS_URL": url})  # the broker too
    app = producer_app(settings)
    pub = CeleryPublisher(app)
    run = started(rt, echo("a"), echo("b"), echo("c"))
    compiled = rt.compiled(run, 1)
    pub.publish([step_message(compiled, run, 1, s) for s in ("a", "b", "c")])
    assert pub.held(DEFAULT_QUEUE) == {(run, "a", 1), (run, "b", 1), (run, "c", 1)}
    r = redis.Redis.from_url(url)
    raws = r.lrange(DEFAULT_QUEUE, 0, -1)
    by_step = {step_of(raw): raw for raw in raws}
    # b: a worker took it and noted it reserved (kombu's [message, exchange, routing key]).
    r.lrem(DEFAULT_QUEUE, 1, by_step[(run, "b", 1)])
    r.hset("unacked", "tag-b", json.dumps([json.loads(by_step[(run, "b", 1)]), "", "chordal"]))
    # c: lost.
    r.lrem(DEFAULT_QUEUE, 1, by_step[(run, "c", 1)])
    assert pub.held(DEFAULT_QUEUE) == {(run, "a", 1), (run, "b", 1)}
    assert pub.held("other") == {(run, "b", 1)}  # reserved counts whatever the queue
    with app.connection_for_read() as conn:
        assert held_steps(conn.default_channel, DEFAULT_QUEUE, limit=1) is None  # too many


def test_a_quiet_run_whose_next_move_waits_in_a_queue_is_not_stalled(
        make_rt: MakeRuntime) -> None:
    rt = make_rt(CHORDAL_DISPATCH_GRACE_S="1")
    run = started(rt, echo("a"))
    rt.store.begin_step(run, "a", 1, "w1", 4, lease_s=3)
    rt.store.finish_step(run, "a", output=1, worker="w1")  # its join is published...
    rt.store.r.hdel(RunKeys(run).leases, "a")
    time.sleep(1.1)  # ...and waits behind others for longer than the grace
    publisher(rt).queued = {run}
    rec = Reconciler(rt, lock_s=10, settle_s=0)
    assert rec.reconcile() == []
    publisher(rt).queued = set()  # gone from the queue and nothing happened: stalled
    assert kinds(rec.reconcile()) == [("stalled_run", None)]


def test_the_broker_reader_finds_queued_run_level_messages(rt: Runtime) -> None:
    url = redis_url()
    pub = CeleryPublisher(producer_app(Settings.from_env({"CHORDAL_REDIS_URL": url})))
    run, other = started(rt, echo("a")), started(rt, echo("a"))
    pub.publish([finalize_message(run, 1), step_message(rt.compiled(other, 1), other, 1, "a")])
    assert pub.queued_runs([DEFAULT_QUEUE, LLM_QUEUE]) == {run}  # a step is not a move
    assert pub.queued_runs([LLM_QUEUE]) == set()


def test_a_run_level_message_a_worker_just_took_still_counts_as_its_next_move(
        rt: Runtime) -> None:
    """Between a worker's BRPOP and the task's first event the message is in neither the
    queue nor the run's events: reserved recently, it counts; reserved long ago (perhaps
    by a worker that died), it does not."""
    url = redis_url()
    pub = CeleryPublisher(producer_app(Settings.from_env({"CHORDAL_REDIS_URL": url})))
    run, old = started(rt, echo("a")), started(rt, echo("a"))
    pub.publish([finalize_message(run, 1), finalize_message(old, 1)])
    r = redis.Redis.from_url(url)
    for raw in r.lrange(DEFAULT_QUEUE, 0, -1):  # a worker takes both and notes them
        args = task_of(raw, RUN_TASKS)
        assert args is not None
        tag = f"tag-{args[0]}"
        r.lrem(DEFAULT_QUEUE, 1, raw)
        r.hset("unacked", tag, json.dumps([json.loads(raw), "", "chordal"]))
        r.zadd("unacked_index", {tag: time.time() - (0 if args[0] == run else 3600)})
    assert pub.queued_runs([DEFAULT_QUEUE, LLM_QUEUE]) == {run}
    r.hdel("unacked", f"tag-{run}")  # acked between the index read and the hash read
    assert pub.queued_runs([DEFAULT_QUEUE, LLM_QUEUE]) == set()
