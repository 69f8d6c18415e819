"""Client.submit in one Redis call (CHORDAL_ONE_CALL_SUBMIT, the default) writes the same
records and events, publishes the same messages, and refuses the same requests as the
path of one call per stage (create, install, start or await approval, dispatch marks)."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from planner.client import Client
from planner.engine.dispatch import MemoryPublisher, Message
from planner.engine.reconcile import Reconciler
from planner.errors import Conflict, InvalidInput, PlanInvalid
from planner.store.keys import ACTIVE_RUNS, RUN_INDEX, STORE_MARKER, RunKeys, owner_runs_key
from planner.store.records import RunOptions
from tests.engine.conftest import MakeRuntime, echo, redis_url, sent

#: Fields that differ between any two runs (their moments), compared by presence only.
MOMENTS = ("created_at", ".due", "ts")

PLAN = {"goal": "diamond", "steps": [
    echo("a"), echo("b", 2), echo("c", {"$ref": "a"}),
    echo("d", {"x": {"$ref": "b"}, "y": {"$ref": "c"}})]}


def client(make_rt: MakeRuntime, one_call: bool) -> Client:
    rt = make_rt(CHORDAL_ONE_CALL_SUBMIT=str(one_call).lower())
    c = Client(rt.settings, rt.tools)
    c.store, c._runtime = rt.store, rt
    return c


def _plain(value: Any, run_id: str) -> Any:
    return value.replace(run_id, "RUN") if isinstance(value, str) else value


def written(c: Client, run_id: str) -> dict[str, Any]:
    """Everything the run's keys hold, with its id and the moments made comparable."""
    r: Any = c.store.r
    found: dict[str, Any] = {}
    for key in RunKeys(run_id).all():
        kind = r.type(key)
        name = key.replace(run_id, "RUN")
        if kind == "hash":
            value: Any = {f: _plain(v, run_id) for f, v in r.hgetall(key).items()}
        elif kind == "stream":
            value = [{f: _plain(v, run_id) for f, v in fields.items()}
                     for _, fields in r.xrange(key)]
        elif kind == "set":
            value = sorted(r.smembers(key))
        elif kind == "none":
            continue
        else:
            value = r.dump(key)
        found[name] = _blank_moments(value)
        found[name + " ttl>0"] = r.ttl(key) > 0
    return found


def _blank_moments(value: Any) -> Any:
    if isinstance(value, list):
        return [_blank_moments(v) for v in value]
    if isinstance(value, dict):
        return {k: (bool(v) if any(k.endswith(m) for m in MOMENTS) else v)
                for k, v in value.items()}
    return value


def messages(c: Client, run_id: str) -> list[Message]:
    return [Message(m.task, tuple(_plain(a, run_id) for a in m.args), m.queue,
                    _plain(m.task_id, run_id), shadow=m.shadow)
            for m in sent(c.runtime)]


def global_keys(c: Client, run_id: str, owner: str | None) -> dict[str, Any]:
    r = c.store.r
    return {"active": r.zscore(ACTIVE_RUNS, run_id) is not None,
            "index": r.zscore(RUN_INDEX, run_id) is not None,
            "owner": owner is not None and r.zscore(owner_runs_key(owner), run_id) is not None,
            "marker": r.exists(STORE_MARKER) == 1}


def submitted(make_rt: MakeRuntime, one_call: bool, options: RunOptions | None
              ) -> tuple[dict[str, Any], list[Message], dict[str, Any]]:
    redis.Redis.from_url(redis_url()).flushdb()
    c = client(make_rt, one_call)
    run_id = c.submit(PLAN, options)
    owner = options.owner if options else None
    return written(c, run_id), messages(c, run_id), global_keys(c, run_id, owner)


@pytest.mark.parametrize("options", [
    None, RunOptions(approve=True), RunOptions(owner="tenant-a", checkpoint_all=True),
    RunOptions(synthesize=True, budget_tokens=1000)], ids=["plain", "approve", "owner",
                                                           "budget"])
def test_one_call_writes_what_the_calls_apart_wrote(make_rt: MakeRuntime,
                                                    options: RunOptions | None) -> None:
    fast = submitted(make_rt, True, options)
    slow = submitted(make_rt, False, options)
    # The one difference: the roots are noted 's' (their client is to publish them, and
    # the reconciler does if it died first), where the calls apart note them '1' after
    # the publish.
    steps = "chordal:run:{RUN}:steps"
    marks = {f: v for f, v in fast[0].get(steps, {}).items() if f.endswith(".dispatched")}
    ran = not (options and options.approve)
    assert marks == ({"a.dispatched": "s", "b.dispatched": "s"} if ran else {})
    assert {f: slow[0][steps][f] for f in marks} == {f: "1" for f in marks}
    fast[0][steps].update({f: "1" for f in marks})
    assert fast == slow
    records, sent_messages, globals_ = fast
    events = [e["type"] for e in records["chordal:run:{RUN}:events"]]
    if options and options.approve:
        assert events == ["run.created", "plan.installed", "run.awaiting_approval"]
        assert sent_messages == []
    else:
        assert events == ["run.created", "plan.installed", "run.started"]
        assert sorted(m.args[1] for m in sent_messages) == ["a", "b"]
    assert all(globals_.values()) or (options is None or options.owner is None)


def test_a_taken_run_id_writes_nothing(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    run_id = c.submit(PLAN)
    before, sent_before = written(c, run_id), len(sent(c.runtime))
    with pytest.raises(Conflict, match="is taken"):
        c.submit({"goal": "other", "steps": [echo("z")]}, run_id=run_id)
    with pytest.raises(Conflict, match="is taken"):
        c.submit(PLAN, RunOptions(owner="tenant-b"), run_id=run_id)
    assert written(c, run_id) == before and len(sent(c.runtime)) == sent_before
    assert c.store.r.zscore(owner_runs_key("tenant-b"), run_id) is None


def test_a_rejected_plan_or_option_writes_nothing(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    with pytest.raises(PlanInvalid, match="nope"):
        c.submit({"goal": "g", "steps": [echo("a"), echo("b", {"$ref": "nope"})]})
    with pytest.raises(InvalidInput, match="roles"):
        c.submit(PLAN, RunOptions(roles={"nobody": {}}))
    assert c.store.r.dbsize() == 0 and sent(c.runtime) == []


def test_a_script_the_server_forgot_is_loaded_again(make_rt: MakeRuntime) -> None:
    c = client(make_rt, True)
    first = c.submit(PLAN)
    c.store.r.script_flush()
    second = c.submit(PLAN)
    assert written(c, first) == written(c, second)
    assert c.store.r.zscore(ACTIVE_RUNS, second) and c.store.r.zscore(RUN_INDEX, second)


def test_a_refused_publish_ends_the_run_failed(make_rt: MakeRuntime,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    c = client(make_rt, True)

    def refuse(messages: list[Message]) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(c.runtime.publisher, "publish", refuse)
    with pytest.raises(Exception, match="cannot publish"):
        c.submit(PLAN)
    [run_id] = [m for m, _ in c.store.r.zscan_iter(RUN_INDEX)]
    run = c.store.run_state(run_id)
    assert run.status == "failed"


def test_a_client_that_died_before_publishing_leaves_a_run_the_reconciler_runs(
        make_rt: MakeRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The roots are noted dispatched ('s') before they are published: a client gone in
    between leaves them past due with no message, which the reconciler sends again, under
    the task ids the client would have used, once nothing of the run began in the grace,
    whether or not the broker can say it holds them."""
    c = client(make_rt, True)

    def die(messages: list[Message]) -> None:
        raise SystemExit("the client died")

    monkeypatch.setattr(c.runtime.publisher, "publish", die)
    with pytest.raises(SystemExit):
        c.submit(PLAN)
    monkeypatch.undo()
    [run_id] = [m for m, _ in c.store.r.zscan_iter(RUN_INDEX)]
    assert c.store.run_state(run_id).status == "running"
    for root in ("a", "b"):
        c.store.r.hset(RunKeys(run_id).steps, f"{root}.due", "1")  # due long ago
    rt = c.runtime
    assert isinstance(rt.publisher, MemoryPublisher)
    rt.publisher.depths["chordal"] = 5  # a long queue: no look says the messages are gone
    reconciler = Reconciler(rt, lock_s=10, settle_s=0)
    fixed = [(r.kind, r.step) for _, r in reconciler.reconcile()]
    assert sorted(fixed) == [("never_dispatched", "a"), ("never_dispatched", "b")]
    assert sorted((m.args[1], m.task_id) for m in sent(rt)) == [
        ("a", f"{run_id}.1.a"), ("b", f"{run_id}.1.b")]
    raw = c.store.r.hgetall(RunKeys(run_id).steps)
    assert raw["a.dispatched"] == raw["b.dispatched"] == "1"
    assert reconciler.reconcile() == []  # once: they are noted published now
