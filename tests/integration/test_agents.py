"""Agent steps on real workers, their model Claude through the real SDK against the fake
Messages API server (tests/integration/agents_fake.py scripts each conversation): tools
over turns, parallel calls on two workers, errors the model reads, max_turns and replan, a
worker killed mid-agent, budget, cancel, output_schema repair, record and replay."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from planner import RunOptions
from planner.client import Client
from planner.settings import Settings
from planner.store.agent_records import AgentReport
from planner.store.records import RunEvent, RunReport
from planner.tools import load_registry
from tests.fake_anthropic import API_KEY, FakeAnthropic, text, tool_use
from tests.integration.agents_fake import (
    agent,
    conversation,
    final,
    requests_for,
    results,
    tools,
)
from tests.integration.conftest import ROOT, Engine, Worker, base_env, start_worker, wait_for_queues
from tests.integration.probe import counted, tracked_log
from tests.integration.test_reconciler import FAST

FLEET_DB = 22
REPLAY_DB = 23
QUEUES = "--queues=chordal,probe,llm"


def plan(*steps: dict[str, Any]) -> dict[str, Any]:
    return {"goal": "agents", "steps": list(steps)}


def echo(sid: str, value: Any, deps: list[str] | None = None) -> dict[str, Any]:
    return {"id": sid, "tool": "echo", "args": {"value": value}, "depends_on": deps or []}


def conversation_of(report: RunReport, sid: str) -> AgentReport:
    found = report.steps[sid].agent
    assert found is not None, f"step {sid} has no agent report: {report.steps[sid]}"
    return found


def await_event(client: Client, run_id: str, wanted: Callable[[RunEvent], bool],
                timeout: float = 30) -> RunEvent:
    """The first event of the run that ``wanted`` accepts, read from the event stream as
    it comes (no polling of state)."""
    deadline = time.monotonic() + timeout
    cursor = "0-0"
    while time.monotonic() < deadline:
        for event in client.store.events(run_id, cursor, block_ms=500):
            cursor = event.id
            if wanted(event):
                return event
    raise AssertionError(f"no such event in {timeout} s: "
                         f"{[(e.type, e.step, e.status) for e in client.store.events(run_id)]}")


def call_event(status: str, tool: str) -> Callable[[RunEvent], bool]:
    return lambda e: (e.type == "agent.tool_call" and e.status == status
                      and (e.data or {}).get("tool") == tool)


@pytest.fixture
def fake(fake_claude: FakeAnthropic) -> Iterator[FakeAnthropic]:
    """The session's fake server, refusing (400) as the API does any conversation where a
    tool_use is left without its tool_result."""
    fake_claude.check_tool_results = True
    yield fake_claude
    fake_claude.check_tool_results = False


# -- multi-turn tool use ------------------------------------------------------------------

def _double_the_code(body: dict[str, Any]) -> dict[str, Any]:
    [result] = results(body)
    return tools(("echo", {"value": result["value"]["code"] * 6}))


def _say_the_number(body: dict[str, Any]) -> dict[str, Any]:
    [result] = results(body)
    return text(f"the number is {result['value']}")


def test_an_agent_step_calls_tools_over_turns_and_dependents_ref_its_answer(
        model_engine: Engine, fake: FakeAnthropic):
    fake.serve(conversation({"[[multi]]": [
        tools(("echo", {"value": {"code": 7}}), say="First the code."),
        _double_the_code,      # turn 1's arguments come from turn 0's result
        _say_the_number]}))
    report = model_engine.run(plan(
        agent("pick", "[[multi]]", ["echo", "where"], task="find the number"),
        echo("after", {"$ref": "pick"}, ["pick"])))
    assert report.status == "succeeded", report
    assert report.steps["pick"].output == "the number is 42"
    assert report.steps["after"].output == "the number is 42"
    conv = conversation_of(report, "pick")
    assert [t.kind for t in conv.turns] == ["tools", "tools", "final"]
    assert conv.turns[0].text == "First the code."
    first, second = conv.turns[0].calls[0], conv.turns[1].calls[0]
    assert (first.tool, first.args, first.output, first.status) == (
        "echo", {"value": {"code": 7}}, {"code": 7}, "succeeded")
    assert (second.args, second.output) == ({"value": 42}, 42)
    assert first.worker and first.finished_at and first.attempts == 1
    assert report.usage is not None
    assert report.usage.by_role["executor"].calls == 3
    assert report.usage.by_step["pick"].calls == 3
    # What the model was shown: the listed tools, and each result paired with its call.
    bodies = requests_for(fake, "[[multi]]")
    assert len(bodies) == 3
    assert {t["name"] for t in bodies[0]["tools"]} == {"echo", "where"}
    assert bodies[0]["tool_choice"] == {"type": "auto"}
    asked = [b for b in bodies[1]["messages"][-2]["content"] if b["type"] == "tool_use"]
    [shown] = results(bodies[1])
    assert shown["tool_use_id"] == asked[0]["id"] and shown["value"] == {"code": 7}
    events = model_engine.events(report.run_id)
    turns = [e.status for e in events if e.type == "agent.turn" and e.step == "pick"]
    assert turns.count("thinking") == 3 and turns[-1] == "final"
    calls = [e.status for e in events if e.type == "agent.tool_call" and e.step == "pick"]
    assert calls.count("running") == 2 and calls.count("succeeded") == 2


# -- a tool error, and a refused call, the model reads and recovers from ----------------

def _recover(body: dict[str, Any]) -> dict[str, Any]:
    if all(r["is_error"] for r in results(body)):
        return tools(("echo", {"value": "recovered"}))
    return text("I was not told anything went wrong")


def test_a_tool_error_reaches_the_model_as_is_error_and_it_recovers(
        model_engine: Engine, fake: FakeAnthropic):
    fake.serve(conversation({"[[oops]]": [
        tools(("fail", {"times": -1, "kind": "permanent"}), ("sleep", {"seconds": -5})),
        _recover,
        lambda body: text(str(results(body)[0]["value"]))]}))
    report = model_engine.run(plan(agent("pick", "[[oops]]", ["fail", "echo", "sleep"])))
    assert report.status == "succeeded", report
    assert report.steps["pick"].output == "recovered"
    conv = conversation_of(report, "pick")
    failed, refused = conv.turns[0].calls
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.type == "PermanentError"
    assert refused.status == "refused" and refused.attempts == 0  # never ran
    second = requests_for(fake, "[[oops]]")[1]
    error, refusal = results(second)
    assert error["is_error"] and "fails as asked" in error["text"]
    assert refusal["is_error"] and "greater than or equal to 0" in refusal["text"]
    assert conv.turns[1].calls[0].output == "recovered"


# -- max_turns, then the replanner routes around the step ---------------------------------

LOOPING = {"goal": "g", "steps": [
    agent("pick", "[[loop]]", ["echo"], max_turns=2, task="never finishes")]}
AROUND = {"goal": "g", "steps": [echo("instead", "routed")]}


def _plans(role: str, body: dict[str, Any]) -> dict[str, Any]:
    if role == "planner":
        return tool_use("submit_plan", LOOPING)
    if role == "replanner":
        return tool_use("submit_plan", AROUND)
    return text(f"{role} answer")


def test_max_turns_fails_the_step_and_the_replanner_routes_around_it(
        model_engine: Engine, fake: FakeAnthropic):
    fake.serve(conversation({"[[loop]]": [tools(("echo", {"value": "again"}))]}, _plans))
    client = model_engine.client
    report = client.wait(client.submit_goal("loop until told to stop"), 60)
    assert report.status == "succeeded", report
    assert report.replans == 1
    pick = report.steps["pick"]
    assert pick.status == "failed" and pick.error is not None
    assert pick.error.type == "MaxTurns" and not pick.error.transient
    assert "used its 2 turns" in pick.error.message and "echo" in pick.error.message
    assert report.steps["instead"].output == "routed"
    conv = conversation_of(report, "pick")
    assert [t.kind for t in conv.turns] == ["tools", "max_turns"]
    assert conv.turns[1].calls == [] or all(c.attempts == 0 for c in conv.turns[1].calls)
    assert len(requests_for(fake, "[[loop]]")) == 2
    [replan] = fake.of_role("replanner")
    assert "MaxTurns" in json.dumps(replan.body["messages"])


# -- budget and cancel stop the loop at the next turn ------------------------------------

def test_a_budget_crossed_mid_agent_stops_it_at_the_next_turn(
        model_engine: Engine, fake: FakeAnthropic):
    fake.serve(conversation({"[[budget]]": [tools(("echo", {"value": "more"}))]}))
    # Each fake call costs 550 tokens: turn 0 fits in 1,000, turn 1 crosses it.
    run_id = model_engine.client.submit(
        plan(echo("first", 1), agent("pick", "[[budget]]", ["echo"], ["first"])),
        RunOptions(budget_tokens=1000))
    report = model_engine.client.wait(run_id, 60)
    assert report.status == "failed", report
    assert report.error is not None and report.error.type == "BudgetExceeded"
    assert report.partial and report.steps["first"].output == 1
    assert len(requests_for(fake, "[[budget]]")) == 2
    conv = conversation_of(report, "pick")
    assert len(conv.turns) == 2
    assert conv.turns[0].calls[0].status == "succeeded"
    # Turn 1 was recorded, its call never ran: the report shows it cancelled.
    assert [c.status for c in conv.turns[1].calls] == ["cancelled"], conv.turns[1]
    assert report.usage is not None and report.usage.by_role["executor"].calls == 2


def test_cancel_stops_the_agent_at_the_next_turn(model_engine: Engine, fake: FakeAnthropic):
    fake.serve(conversation({"[[cancel]]": [tools(("sleep", {"seconds": 2, "value": "slept"})),
                                            text("should never be asked")]}))
    client = model_engine.client
    run_id = client.submit(plan(agent("pick", "[[cancel]]", ["sleep"])))
    await_event(client, run_id, call_event("running", "sleep"))
    assert client.cancel(run_id)
    # The running call finishes and is recorded; nothing follows from it.
    await_event(client, run_id, call_event("succeeded", "sleep"))
    report = client.report(run_id)
    assert report.status == "cancelled", report
    assert conversation_of(report, "pick").turns[0].calls[0].output == "slept"
    assert len(requests_for(fake, "[[cancel]]")) == 1
    assert report.steps["pick"].status == "cancelled"


# -- output_schema: one repair turn --------------------------------------------------------

HOTEL = {"type": "object", "required": ["hotel", "price"],
         "properties": {"hotel": {"type": "string"}, "price": {"type": "integer"}}}


def test_an_answer_off_its_schema_gets_one_repair_turn(model_engine: Engine,
                                                        fake: FakeAnthropic):
    fake.serve(conversation({"[[schema]]": [
        final({"hotel": "Casa do Largo", "price": "118 EUR"}),
        final({"hotel": "Casa do Largo", "price": 118})]}))
    report = model_engine.run(plan(
        agent("pick", "[[schema]]", ["echo"], output_schema=HOTEL),
        echo("cost", {"$ref": "pick.price"}, ["pick"])))
    assert report.status == "succeeded", report
    assert report.steps["pick"].output == {"hotel": "Casa do Largo", "price": 118}
    assert report.steps["cost"].output == 118
    assert [t.kind for t in conversation_of(report, "pick").turns] == ["repair", "final"]
    first, second = requests_for(fake, "[[schema]]")
    assert "final_answer" in {t["name"] for t in first["tools"]}
    [problem] = results(second)
    assert problem["is_error"] and "'118 EUR' is not of type 'integer'" in problem["text"]


def test_an_answer_off_its_schema_fails_after_the_repair(model_engine: Engine,
                                                          fake: FakeAnthropic):
    fake.serve(conversation({"[[schema-twice]]": [final({"hotel": "Casa do Largo"})]}))
    report = model_engine.run(plan(
        {**agent("pick", "[[schema-twice]]", ["echo"], output_schema=HOTEL),
         "on_failure": "fail"}))
    assert report.status == "failed", report
    error = report.steps["pick"].error
    assert error is not None and error.type == "OutputInvalid"
    assert "after a repair" in error.message and "'price' is a required property" in \
        error.message
    assert [t.kind for t in conversation_of(report, "pick").turns] == ["repair", "invalid"]
    assert len(requests_for(fake, "[[schema-twice]]")) == 2


# -- two workers: parallel calls, and a worker killed mid-agent ---------------------------

@pytest.fixture
def fleet_env(redis_base: str, fake_claude: FakeAnthropic) -> dict[str, str]:
    url = f"{redis_base}/{FLEET_DB}"
    redis.Redis.from_url(url).flushdb()
    os.environ["ANTHROPIC_API_KEY"] = API_KEY
    return base_env(url, **FAST, ANTHROPIC_API_KEY=API_KEY,
                    ANTHROPIC_BASE_URL=fake_claude.url, CHORDAL_LLM_MAX_RETRIES="0",
                    CHORDAL_LLM="anthropic")


def client_for(env: dict[str, str]) -> Client:
    settings = Settings.from_env(env)
    return Client(settings, load_registry(settings.tools.tool_modules))


def _worker(env: dict[str, str], workers: list[Worker], log: Path, name: str,
            concurrency: int = 1) -> Worker:
    worker = start_worker(env, log, f"--concurrency={concurrency}", QUEUES, "-n", name)
    workers.append(worker)
    wait_for_queues(client_for(env), {"chordal", "llm"}, worker)
    return worker


def test_parallel_calls_of_one_turn_run_at_once_on_two_workers(
        fleet_env: dict[str, str], workers: list[Worker], fake: FakeAnthropic,
        tmp_path: Path):
    # Each call waits (up to 20 s) for the other to arrive: both meet only if they run at
    # the same time, which two workers of one process each can do only side by side.
    fake.serve(conversation({"[[parallel]]": [
        tools(("meet", {"n": 2}), ("meet", {"n": 2})), text("both done")]}))
    _worker(fleet_env, workers, tmp_path / "w1.log", "w1@%h")
    _worker(fleet_env, workers, tmp_path / "w2.log", "w2@%h")
    client = client_for(fleet_env)
    report = client.wait(client.submit(plan(agent("pick", "[[parallel]]", ["meet"]))), 60)
    assert report.status == "succeeded", report
    calls = conversation_of(report, "pick").turns[0].calls
    assert [c.status for c in calls] == ["succeeded", "succeeded"]
    assert [c.output["met"] for c in calls] == [True, True], calls
    assert calls[0].output["pid"] != calls[1].output["pid"]
    workers_seen = {c.worker for c in calls}
    assert len(workers_seen) == 2 and all(w and w.split("@")[0] in ("w1", "w2")
                                          for w in workers_seen), workers_seen


@pytest.mark.slow
def test_a_worker_killed_mid_agent_resumes_without_repeating_a_finished_call(
        fleet_env: dict[str, str], workers: list[Worker], fake: FakeAnthropic,
        tmp_path: Path):
    fake.serve(conversation({"[[killed]]": [
        tools(("count", {"name": "once"}), ("tracked", {"seconds": 30, "later_s": 0.2})),
        text("finished")]}))
    first = _worker(fleet_env, workers, tmp_path / "first.log", "first@%h", concurrency=2)
    client = client_for(fleet_env)
    run_id = client.submit(plan(agent("pick", "[[killed]]", ["count", "tracked"])))
    await_event(client, run_id, call_event("succeeded", "count"))
    await_event(client, run_id, call_event("running", "tracked"))
    # The call is noted running as it begins: kill once the tool itself runs.
    deadline = time.monotonic() + 30
    while not tracked_log(run_id, "pick"):
        assert time.monotonic() < deadline, "the tracked call never started its tool"
        time.sleep(0.05)
    first.kill()  # mid-call: no errback, no ack
    _worker(fleet_env, workers, tmp_path / "second.log", "second@%h", concurrency=2)
    report = client.wait(run_id, 90)
    assert report.status == "succeeded", report
    assert report.steps["pick"].output == "finished"
    assert counted(run_id, "pick", "once") == 1  # the finished call never ran again
    counted_call, tracked_call = conversation_of(report, "pick").turns[0].calls
    assert counted_call.attempts == 1 and counted_call.output == 1
    assert tracked_call.attempts == 2 and tracked_call.status == "succeeded"
    assert [e["attempt"] for e in tracked_log(run_id, "pick") if e["event"] == "start"] \
        == [1, 2]
    repaired = [e.data for e in client.store.events(run_id) if e.type == "run.repaired"]
    assert [(r["kind"], r["step"]) for r in repaired] == [("lease_expired", "pick")], \
        "; ".join(f"{r['kind']}: {r['why']}" for r in repaired)
    # Turn 0 was recorded before the worker died: the model was not asked it again.
    assert len(requests_for(fake, "[[killed]]")) == 2


# -- record, then replay offline ----------------------------------------------------------

def test_a_recorded_agent_run_replays_offline(model_engine: Engine, fake: FakeAnthropic,
                                             redis_base: str, workers: list[Worker],
                                             tmp_path: Path):
    fake.serve(conversation({"[[replay]]": [
        tools(("echo", {"value": "a"}), ("echo", {"value": "b"})),
        lambda body: tools(("echo", {"value": [r["value"] for r in results(body)]})),
        lambda body: text(json.dumps(results(body)[0]["value"]))]}))
    recorded_plan = plan(agent("pick", "[[replay]]", ["echo"]),
                         echo("after", {"$ref": "pick"}, ["pick"]))
    original = model_engine.run(recorded_plan)
    assert original.status == "succeeded", original
    cassette = tmp_path / "cassette.json"
    result = subprocess.run([sys.executable, "-m", "planner.cli", "record", original.run_id,
                             "-o", str(cassette)], env=model_engine.env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    responses = json.loads(cassette.read_text())["responses"]
    assert [(r["role"], r.get("step"), r["turn"]) for r in responses] == [
        ("executor", "pick", 0), ("executor", "pick", 1), ("executor", "pick", 2)]
    # Replayed by a worker whose only model is the file, on a database of its own.
    url = f"{redis_base}/{REPLAY_DB}"
    redis.Redis.from_url(url).flushdb()
    env = base_env(url, CHORDAL_LLM=f"scripted:{cassette}")
    worker = start_worker(env, tmp_path / "replay.log", "--concurrency=2", QUEUES)
    workers.append(worker)
    client = client_for(env)
    wait_for_queues(client, {"chordal", "llm"}, worker)
    asked = len(fake.requests)
    again = client.wait(client.submit(recorded_plan), 60)
    assert again.status == "succeeded", again
    assert len(fake.requests) == asked  # offline: the fake server was not asked
    assert again.steps["pick"].output == original.steps["pick"].output == '["a", "b"]'
    assert again.steps["after"].output == original.steps["after"].output

    def calls(report: RunReport) -> list[tuple[str, Any, Any]]:
        return [(c.tool, c.args, c.output) for t in conversation_of(report, "pick").turns
                for c in t.calls]

    assert calls(again) == calls(original) and len(calls(again)) == 3
