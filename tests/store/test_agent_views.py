"""What readers see of an agent step in the run store: the reconciler's snapshot (call
leases, calls_due), the lease renewal, the key's expiry, and the report's AgentReport."""

from __future__ import annotations

from planner.engine.reconcile import alive
from planner.language.plan import Plan
from planner.store.keys import RunKeys, call_lease
from tests.store.agent_steps import settle, started, tools_turn

# -- what the reconciler and the report read ----------------------------------------------

def test_call_leases_live_beside_the_steps_and_renew_as_any_lease(store):
    run_id = started(store)
    tools_turn(store, run_id)
    store.begin_call(run_id, "pick", 0, 0, 0, "w", 3, lease_s=5)
    name = call_lease("pick", 0, 0)
    assert name == "~pick|0|0"
    assert store.renew_leases(run_id, [name, call_lease("pick", 0, 1)], 100) == 1
    snap = store.snapshot(run_id)
    assert snap is not None and snap.leases[name] > snap.now + 90
    assert "pick" in alive(snap, 30) and name not in snap.steps
    assert set(snap.steps["pick"].calls_due) == {"0.1"}


def test_the_agent_key_expires_with_its_run(store):
    run_id = started(store)
    tools_turn(store, run_id)
    k = RunKeys(run_id)
    assert k.agent in k.all() and k.agent == f"chordal:run:{{{run_id}}}:agent"
    # Made beside the run's record, it expires with it (never outlives it).
    assert 0 < store.r.ttl(k.agent) <= store.r.ttl(k.run)
    store.r.expire(k.run, 50)
    store.r.expire(k.agent, 50)
    store.cancel(run_id)  # ended: every key kept for the retention again
    assert store.retention_s - 60 < store.r.ttl(k.agent) <= store.retention_s


def test_the_report_shows_each_agent_steps_conversation_and_its_turn_limit(store):
    run_id = started(store, max_turns=6)
    tools_turn(store, run_id)
    settle(store, run_id, 0)
    report = store.report(run_id)
    assert report.steps["after"].agent is None
    agent = report.steps["pick"].agent
    assert agent is not None and (agent.conversation, agent.max_turns) == (0, 6)
    (turn,) = agent.turns
    assert (turn.turn, turn.kind, turn.text, turn.tries) == (0, "tools", "Checking both.", 1)
    assert [(c.index, c.tool, c.status) for c in turn.calls] == [
        (0, "echo", "succeeded"), (1, "echo", "pending"), (2, "nope", "refused")]
    assert agent.calls[0].output == {"i": 0} and agent.running_calls == []
    as_json = report.model_dump(mode="json")
    assert "agent" not in as_json["steps"]["after"]
    shown = as_json["steps"]["pick"]["agent"]["turns"][0]
    assert "content" not in shown and shown["usage"]["input_tokens"] == 550
    assert "output" not in shown["calls"][1]  # absent details stay absent
    # A pending agent step (another run): no turns yet, its default limit.
    other = store.create_run("g", Plan.model_validate({"goal": "g", "steps": [
        {"id": "pick", "tool": "agent", "args": {"task": "t", "tools": ["echo"]}}]}))
    empty = store.report(other).steps["pick"].agent
    assert empty is not None and (empty.max_turns, empty.turns) == (8, [])
