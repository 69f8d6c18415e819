"""An agent step end to end on a real Celery worker (Redis broker, Redis run store) with a
scripted executor model: its turns and tool calls are tasks of their own, and a dependent
step ``$ref``s its answer. (tests/integration/test_agents.py has the full set, through the
real SDK.)"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from planner.usage import summarize
from planner.vocabulary import CallStatus, TurnKind
from tests.fake_anthropic import (
    API_KEY,
    FakeAnthropic,
    overloaded,
    tool_results,
    tool_uses,
    turn_of,
)
from tests.integration.conftest import Engine, base_env, start_worker, wait_for_queues

# 29, 30, 31: numbers no other suite uses (a session fixture's workers on the same
# database would take these tests' messages).
DB = 29

SCRIPT = {"responses": [
    {"role": "executor", "step": "pick", "turn": 0, "content": [
        {"type": "text", "text": "First look."},
        {"type": "tool_use", "name": "echo", "input": {"value": "one"}}]},
    {"role": "executor", "step": "pick", "turn": 1, "content": [
        {"type": "tool_use", "name": "echo", "input": {"value": "two"}}]},
    {"role": "executor", "step": "pick", "turn": 2, "content": [
        {"type": "text", "text": "picked two"}]},
    {"role": "executor", "step": "stop", "turn": 0, "content": [
        {"type": "tool_use", "name": "sleep", "input": {"seconds": 30}}]},
    {"role": "executor", "step": "stop", "turn": 1, "match": "Revoked", "content": [
        {"type": "text", "text": "it was stopped"}]}]}


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


def test_a_call_terminated_in_flower_is_a_revoked_result_the_model_reads(
        scripted_engine: Engine) -> None:
    client = scripted_engine.client
    run_id = client.submit({"goal": "stop", "steps": [
        {"id": "stop", "tool": "agent", "args": {"task": "wait", "tools": ["sleep"]}}]})
    deadline = time.monotonic() + 30
    while True:
        turns = client.store.conversation(run_id, "stop").turns
        if turns and turns[0].calls and turns[0].calls[0].status == CallStatus.RUNNING:
            break
        assert time.monotonic() < deadline, turns
        time.sleep(0.05)
    client.app.control.revoke(f"{run_id}.1.stop.c0t0i0", terminate=True)
    report = client.wait(run_id, 60)
    assert report.status == "succeeded", report
    assert report.steps["stop"].output == "it was stopped"
    (call,) = client.store.conversation(run_id, "stop").turns[0].calls
    assert call.status == CallStatus.FAILED
    assert call.error is not None and call.error.type == "Revoked"


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def _agent_answers(role: str, body: dict[str, Any]) -> dict[str, Any]:
    """Turn 0: four calls at once (one runs, one fails, two are refused); turn 1: an answer
    off the schema; turn 2 (the repair): a good one."""
    turn = turn_of(body)
    if turn == 0:
        return tool_uses(("echo", {"value": 1}), ("fail", {"times": -1, "kind": "permanent"}),
                         ("nope", {"x": 1}), ("echo", {}))
    if turn == 1:
        return tool_uses(("final_answer", {"answer": {"n": "one"}}))
    return tool_uses(("final_answer", {"answer": {"n": 1}}))


@pytest.fixture(scope="module")
def sdk_engine(redis_base: str, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Engine, FakeAnthropic]]:
    fake = FakeAnthropic(_agent_answers, check_tool_results=True)
    tmp = tmp_path_factory.mktemp("agent-sdk")
    url = f"{redis_base}/{DB + 1}"
    env = base_env(url, ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=fake.url,
                   CHORDAL_LLM_MAX_RETRIES="0", CHORDAL_LLM="anthropic")
    r = redis.Redis.from_url(url)
    r.flushdb()
    # The client submits a plan: it needs no model (the workers have one).
    settings = Settings.from_env(base_env(url))
    client = Client(settings, load_registry(settings.tools.tool_modules))
    worker = start_worker(env, Path(tmp) / "worker.log", "--concurrency=2",
                          "--queues=chordal,probe,llm")
    try:
        wait_for_queues(client, {"chordal", "probe", "llm"}, worker)
        yield Engine("agent-sdk", client, env, r), fake
    finally:
        worker.stop()
        fake.close()


def test_through_the_sdk_every_tool_use_gets_its_result_and_a_529_is_retried(
        sdk_engine: tuple[Engine, FakeAnthropic]) -> None:
    engine, fake = sdk_engine
    fake.inject("executor", status=529, body=overloaded())
    plan = {"goal": "n", "steps": [
        {"id": "pick", "tool": "agent", "args": {
            "task": "find n", "tools": ["echo", "fail"], "output_schema": SCHEMA}},
        {"id": "after", "tool": "echo", "args": {"value": {"$ref": "pick.n"}}}]}
    report = engine.run(plan, timeout=90)
    assert report.status == "succeeded", report
    assert report.steps["after"].output == 1
    seen = fake.of_role("executor")
    # The 529, then three turns; the fake refused no conversation (check_tool_results).
    assert [s.status for s in seen] == [529, 200, 200, 200]
    results = tool_results(seen[2].body)
    assert [bool(r.get("is_error")) for r in results] == [False, True, True, True]
    assert "PermanentError" in json.dumps(results[1])
    assert "no tool 'nope' here" in json.dumps(results[2])
    repair = tool_results(seen[3].body)
    assert len(repair) == 1 and repair[0]["is_error"]
    assert "is not of type 'integer'" in json.dumps(repair)
    conv = engine.client.store.conversation(report.run_id, "pick")
    assert [t.kind for t in conv.turns] == [TurnKind.TOOLS, TurnKind.REPAIR, TurnKind.FINAL]
    assert [c.status for c in conv.turns[0].calls] == [
        CallStatus.SUCCEEDED, CallStatus.FAILED, CallStatus.REFUSED, CallStatus.REFUSED]


FAST = {"CHORDAL_STEP_LEASE_S": "2", "CHORDAL_RECONCILE_INTERVAL_S": "0.5",
        "CHORDAL_DISPATCH_GRACE_S": "2"}

KILL_SCRIPT = {"responses": [
    {"role": "executor", "step": "pick", "turn": 0, "content": [
        {"type": "tool_use", "name": "echo", "input": {"value": "quick"}},
        {"type": "tool_use", "name": "sleep", "input": {"seconds": 3, "value": "slow"}}]},
    {"role": "executor", "step": "pick", "turn": 1, "content": [
        {"type": "text", "text": "both back"}]}]}


def test_a_worker_killed_mid_call_resumes_without_running_a_finished_call_again(
        redis_base: str, tmp_path: Path) -> None:
    script = tmp_path / "kill.json"
    script.write_text(json.dumps(KILL_SCRIPT))
    url = f"{redis_base}/{DB + 2}"
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, CHORDAL_LLM=f"scripted:{script}", **FAST)
    settings = Settings.from_env(base_env(url, **FAST))
    client = Client(settings, load_registry(settings.tools.tool_modules))
    first = start_worker(env, tmp_path / "first.log", "--concurrency=2",
                         "--queues=chordal,llm")
    second = None
    try:
        wait_for_queues(client, {"chordal", "llm"}, first)
        run_id = client.submit({"goal": "g", "steps": [
            {"id": "pick", "tool": "agent", "args": {"task": "t", "tools": ["echo", "sleep"]}},
            {"id": "after", "tool": "echo", "args": {"value": {"$ref": "pick"}}}]})

        def calls() -> list[Any]:
            turns = client.store.conversation(run_id, "pick").turns
            return list(turns[0].calls) if turns else []

        deadline = time.monotonic() + 30
        while [c.status for c in calls()] != [CallStatus.SUCCEEDED, CallStatus.RUNNING]:
            assert time.monotonic() < deadline, calls()
            time.sleep(0.05)
        first.kill()  # no ack, no errback: the call's lease lapses
        second = start_worker(env, tmp_path / "second.log", "--concurrency=2",
                              "--queues=chordal,llm")
        report = client.wait(run_id, timeout=60)
        assert report.status == "succeeded", report
        assert report.steps["after"].output == "both back"
        echo_call, sleep_call = calls()
        assert (echo_call.attempts, echo_call.output) == (1, "quick")
        assert (sleep_call.attempts, sleep_call.output) == (2, "slow")
    finally:
        first.stop()
        if second is not None:
            second.stop()
