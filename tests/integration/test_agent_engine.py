"""An agent step end to end on a real Celery worker (Redis broker, Redis run store) with a
scripted executor model: its turns and tool calls are tasks of their own, and a dependent
step ``$ref``s its answer. (tests/integration/test_agents.py has the full set, through the
real SDK.)"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from planner.usage import summarize
from planner.vocabulary import CallStatus, TurnKind
from tests.integration.conftest import Engine, base_env, start_worker, wait_for_queues

DB = 13

SCRIPT = {"responses": [
    {"role": "executor", "step": "pick", "turn": 0, "content": [
        {"type": "text", "text": "First look."},
        {"type": "tool_use", "name": "echo", "input": {"value": "one"}}]},
    {"role": "executor", "step": "pick", "turn": 1, "content": [
        {"type": "tool_use", "name": "echo", "input": {"value": "two"}}]},
    {"role": "executor", "step": "pick", "turn": 2, "content": [
        {"type": "text", "text": "picked two"}]}]}


@pytest.fixture(scope="module")
def scripted_engine(redis_base: str, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[Engine]:
    tmp = tmp_path_factory.mktemp("agent")
    script = tmp / "agent.json"
    script.write_text(json.dumps(SCRIPT))
    url = f"{redis_base}/{DB}"
    env = base_env(url, CHORDAL_LLM=f"scripted:{script}")
    r = redis.Redis.from_url(url)
    r.flushdb()
    settings = Settings.from_env(env)
    client = Client(settings, load_registry(settings.tools.tool_modules))
    worker = start_worker(env, Path(tmp) / "worker.log", "--concurrency=2",
                          "--queues=chordal,probe,llm")
    try:
        wait_for_queues(client, {"chordal", "probe", "llm"}, worker)
        yield Engine("agent", client, env, r)
    finally:
        worker.stop()


def test_an_agent_step_calls_a_tool_over_two_turns_and_a_dependent_refs_its_answer(
        scripted_engine: Engine) -> None:
    plan = {"goal": "pick", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": "A"}},
        {"id": "pick", "tool": "agent", "args": {
            "task": "echo twice, then say what you picked", "tools": ["echo"],
            "context": {"$ref": "a"}}},
        {"id": "after", "tool": "echo", "args": {"value": {"$ref": "pick"}}}]}
    report = scripted_engine.run(plan, timeout=90)
    assert report.status == "succeeded", report
    assert report.steps["pick"].output == "picked two"
    assert report.steps["after"].output == "picked two"
    store = scripted_engine.client.store
    conv = store.conversation(report.run_id, "pick")
    assert [t.kind for t in conv.turns] == [TurnKind.TOOLS, TurnKind.TOOLS, TurnKind.FINAL]
    assert [(c.tool, c.args, c.status, c.output) for t in conv.turns for c in t.calls] == [
        ("echo", {"value": "one"}, CallStatus.SUCCEEDED, "one"),
        ("echo", {"value": "two"}, CallStatus.SUCCEEDED, "two")]
    usage = summarize(store.usage_fields(report.run_id),
                      scripted_engine.client.runtime.settings.budget.prices)
    assert usage.by_role["executor"].calls == 3
    # Turn 0 ran in the step's own task; turns 1 and 2 and both calls in tasks of their own.
    tasks = Counter(r["task"] for r in scripted_engine.published(report.run_id))
    assert (tasks["chordal.agent_turn"], tasks["chordal.agent_call"]) == (2, 2)
