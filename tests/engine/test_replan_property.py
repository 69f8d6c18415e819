"""A property of replanning, driven through the engine's own decisions with the in-memory
publisher (messages delivered in a random order, some twice): for a random DAG, a random
step that fails for good and a random replan, the run terminates, no succeeded step runs
again, and the counters end at zero."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.engine import join, replan, start, steps
from planner.engine.dispatch import MemoryPublisher
from planner.engine.runtime import Runtime
from planner.language.plan import Step
from planner.language.validation import validate
from planner.llm.model import ModelRequest, ModelResponse, Usage
from planner.settings import Settings
from planner.store.keys import RunKeys
from planner.store.runs import RunStore
from planner.tools import ToolRegistry
from planner.wire import FINALIZE_TASK, REPLAN_TASK, STEP_TASK, SYNTHESIZE_TASK
from tests import redis_server
from tests.strategies import dag_plans

DB = 1


def _url() -> str:
    return redis_server.url(DB)


class RandomReplanner:
    """A model that answers a replan with random, valid new steps: a replacement for some
    of the steps that can no longer run (reading a random completed step), and some of the
    not-started steps listed again."""

    name = "random-replanner"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def complete(self, request: ModelRequest) -> ModelResponse:
        assert request.role in ("replanner", "synthesizer"), request.role
        if request.role == "synthesizer":
            return ModelResponse([{"type": "text", "text": "partial"}], Usage(), "m")
        content = request.messages[0]["content"]
        ctx = json.loads(content.split("JSON:\n")[1].rsplit("\nSubmit", 1)[0])
        done = [s["id"] for s in ctx["completed_steps"]]
        blocked = set(ctx["cannot_run"])
        new = []
        for sid in ctx["cannot_run"]:
            if self.rng.random() < 0.7:
                value: Any = {"$ref": self.rng.choice(done)} if done else sid
                new.append({"id": f"r{ctx['plan_version']}_{sid}", "tool": "echo",
                            "args": {"value": value}})
        plan = {s["id"]: s for s in ctx["current_plan"]["steps"]}
        # What a re-listed step may wait for: kept steps, and steps listed before it.
        available = set(done) | {s["id"] for s in ctx["running_steps"]} | {
            s["id"] for s in new}
        for sid in ctx["not_started"]:  # in plan order: dependencies come first
            step = plan[sid]
            deps = Step.model_validate(step).dependencies()
            if sid not in blocked and deps <= available and self.rng.random() < 0.5:
                new.append(step)
                available.add(sid)
        if not new:
            new.append({"id": f"r{ctx['plan_version']}_only", "tool": "echo",
                        "args": {"value": 0}})
        data = {"goal": ctx["goal"], "steps": new}
        return ModelResponse([{"type": "tool_use", "id": "t", "name": "submit_plan",
                               "input": data}], Usage(), "m")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(plan=dag_plans(max_steps=12), seed=st.integers(0, 10_000))
def test_random_failures_and_replans_always_terminate(tools: ToolRegistry, plan, seed):
    rng = random.Random(seed)
    for var in ("ANTHROPIC_API_KEY", "CHORDAL_LLM"):
        os.environ.pop(var, None)
    url = _url()
    redis.Redis.from_url(url).flushdb()
    s = Settings.from_env({"CHORDAL_REDIS_URL": url, "CHORDAL_PLAN_REPAIRS": "0",
                           "CHORDAL_MAX_REPLANS": "2"})
    rt = Runtime(s, MemoryPublisher(), tools=tools, store=RunStore.from_url(url),
                 model=RandomReplanner(rng))
    # One random step fails for good (and asks for a replan).
    doomed = rng.choice(plan["steps"])
    doomed.update({"tool": "fail", "args": {"times": -1, "kind": "permanent"},
                   "on_failure": "replan"})
    valid = validate(plan, tools).plan
    run_id = rt.store.create_run(valid.goal, valid)
    start.start_run(rt, run_id)
    pub = rt.publisher
    assert isinstance(pub, MemoryPublisher)
    delivered = 0
    while pub.sent:
        assert delivered < 2_000, "the run does not terminate"
        message = pub.sent.pop(rng.randrange(len(pub.sent)))
        if rng.random() < 0.1:
            pub.sent.append(message)  # at-least-once: this one comes again
        delivered += 1
        if message.task == STEP_TASK:
            steps.run_step(rt, *message.args, worker="w")
        elif message.task == FINALIZE_TASK:
            join.finalize(rt, *message.args)
        elif message.task == REPLAN_TASK:
            replan.replan(rt, *message.args)
        elif message.task == SYNTHESIZE_TASK:
            join.synthesize(rt, *message.args[:2], 0, *message.args[2:])
    report = rt.store.report(run_id)
    assert report.ended, report
    assert report.status in ("succeeded", "failed")
    assert report.steps[doomed["id"]].status == "failed"
    starts: dict[str, int] = {}
    for event in rt.store.events(run_id, count=10_000):
        if event.type == "step.started" and event.step:
            starts[event.step] = starts.get(event.step, 0) + 1
    for sid, step in report.steps.items():
        if step.status == "succeeded":
            assert starts.get(sid) == 1, f"{sid} ran {starts.get(sid)} times"
        assert step.status not in ("running", "pending"), (sid, step.status)
    if report.status == "succeeded":
        keys = RunKeys(run_id)
        counters = {k: int(v) for k, v in rt.store.r.hgetall(keys.deps).items()}
        assert all(v == 0 for v in counters.values()), counters
        assert rt.store.run_state(run_id).remaining == 0
    else:
        assert report.partial and report.error is not None
