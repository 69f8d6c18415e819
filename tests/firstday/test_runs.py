"""The first day with Redis and real workers: `chordal init`'s printed commands run as
written, a plan file is synthesized only when it asks, a wait that stops says the run goes
on, and a recorded run replays offline."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from tests import redis_server
from tests.firstday.helpers import argv, chordal, user_env
from tests.integration.conftest import Worker, start_worker, wait_for_queues

DB = 21
GOAL = "Is Lisbon cheaper than Berlin?"
PLAN = {"goal": GOAL, "steps": [
    {"id": "lisbon", "tool": "echo", "args": {"value": {"rent": 1150}}},
    {"id": "berlin", "tool": "echo", "args": {"value": {"rent": 1300}}},
    {"id": "diff", "tool": "calculate",
     "args": {"expression": "b - l", "variables": {"b": {"$ref": "berlin.rent"},
                                                   "l": {"$ref": "lisbon.rent"}}}},
    {"id": "note", "tool": "llm", "args": {"prompt": ["Say which city is cheaper, by how "
                                                      "much", {"$ref": "diff"}]}}]}
ANSWER = "Lisbon is cheaper than Berlin by 150 a month."
SCRIPT = {"responses": [
    {"role": "planner", "match": "cheaper", "content": [
        {"type": "tool_use", "id": "toolu_1", "name": "submit_plan", "input": PLAN}],
     "usage": {"input_tokens": 900, "output_tokens": 200}},
    {"role": "executor", "content": [{"type": "text", "text": "Lisbon, by 150."}],
     "usage": {"input_tokens": 50, "output_tokens": 6}},
    {"role": "synthesizer", "content": [{"type": "text", "text": ANSWER}],
     "usage": {"input_tokens": 300, "output_tokens": 12}}]}


@pytest.fixture(scope="module")
def redis_url() -> str:
    """Databases of this module's own (the first is its main one), flushed."""
    for db in range(DB, DB + 3):
        redis.Redis.from_url(redis_server.url(db)).flushdb()
    return redis_server.url(DB)


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    return user_env(CHORDAL_REDIS_URL=redis_url, CHORDAL_TOOL_MODULES="planner.tools.testing",
                    CHORDAL_RETRY_BACKOFF_S="0.05", CHORDAL_RETRY_BACKOFF_MAX_S="0.1",
                    **extra)


def started(env: dict[str, str], log: Path) -> Worker:
    # Threads: light on a small machine; these steps need no time limits.
    worker = start_worker(env, log, "--pool=threads", "--concurrency=4")
    wait_for_queues(Client(Settings.from_env(env)), {"chordal", "llm"}, worker)
    return worker


@pytest.fixture(scope="module")
def model_env(redis_url: str, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[dict[str, str]]:
    """A worker whose model is a scripted one; the env a CLI in front of it uses."""
    tmp = tmp_path_factory.mktemp("model")
    script = tmp / "script.json"
    script.write_text(json.dumps(SCRIPT))
    env = worker_env(redis_url, CHORDAL_LLM=f"scripted:{script}")
    worker = started(env, tmp / "worker.log")
    yield env
    worker.stop()


def test_init_prints_commands_that_run_as_written(redis_url: str,
                                                  tmp_path: Path):
    made = chordal(tmp_path, "init", "starter")
    assert made.returncode == 0, made.stderr
    starter = tmp_path / "starter"
    assert {p.name for p in starter.iterdir()} >= {"mytools.py", "plan.json", ".env"}
    commands = re.findall(r"^  (chordal [^#]+?)\s+#", made.stdout, flags=re.M)
    assert commands == ["chordal dev", "chordal run --plan plan.json --wait"], made.stdout
    assert "(cd starter)" in made.stdout
    # As a user would: in the starter's directory, no CHORDAL_TOOL_MODULES exported (the
    # .env says it), the Redis given by the one variable a user may have set.
    env = user_env(CHORDAL_REDIS_URL=redis_url)
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(argv(commands[0]), cwd=starter, env=env, stdout=log,
                           stderr=subprocess.STDOUT)
    try:
        run = subprocess.run(argv(commands[1]), cwd=starter, env=env, capture_output=True,
                             text=True, timeout=90)
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "succeeded" in run.stdout
    assert '"INDEPENDENT INDEPENDENT"' in run.stdout and "5.5" in run.stdout
    assert "chordal dev" not in run.stderr  # no warning: the worker was found
    # And again refuses to overwrite.
    again = chordal(tmp_path, "init", "starter")
    assert again.returncode == 2 and "--force" in again.stderr


def test_a_plan_file_is_synthesized_only_when_it_asks(model_env: dict[str, str],
                                                      tmp_path: Path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    plain = chordal(tmp_path, "run", "--plan", str(plan), "--wait", "--json", env=model_env)
    assert plain.returncode == 0, plain.stderr
    # The workers have a model, yet the answer is the last step's output.
    assert json.loads(plain.stdout)["answer"] == {"note": "Lisbon, by 150."}
    forced = chordal(tmp_path, "run", "--plan", str(plan), "--wait", "--json",
                     "--synthesize", env=model_env)
    assert json.loads(forced.stdout)["answer"] == ANSWER


def test_a_wait_that_stops_says_the_run_goes_on(model_env: dict[str, str], tmp_path: Path):
    plan = tmp_path / "slow.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "nap", "tool": "sleep", "args": {"seconds": 30}}]}))
    timed = chordal(tmp_path, "run", "--plan", str(plan), "--wait", "--timeout", "0.5",
                    env=model_env)
    assert timed.returncode == 1
    [run_id] = re.findall(r"timed out waiting; run (\S+) goes on", timed.stderr)
    assert f"`chordal cancel {run_id}` cancels it" in timed.stderr
    waiting = subprocess.Popen(argv(f"chordal run --plan {plan} --wait"), cwd=tmp_path,
                               env=model_env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    client = Client(Settings.from_env(model_env))
    deadline = time.monotonic() + 30
    while not [r for r in client.runs(status="running") if r.run_id != run_id]:
        assert time.monotonic() < deadline, "the second run was never submitted"
        time.sleep(0.1)
    time.sleep(0.5)  # submitted: now it waits
    waiting.send_signal(signal.SIGINT)
    _, stderr = waiting.communicate(timeout=30)
    assert waiting.returncode == 130, stderr
    [second] = re.findall(r"stopped waiting; run (\S+) goes on", stderr)
    assert f"`chordal watch {second}` follows it again" in stderr
    for rid in (run_id, second):
        assert chordal(tmp_path, "cancel", rid, env=model_env).returncode == 0


def test_a_recorded_run_replays_offline(model_env: dict[str, str], redis_url: str,
                                        tmp_path: Path):
    first = chordal(tmp_path, "run", GOAL, "--wait", "--json", env=model_env)
    assert first.returncode == 0, first.stderr
    original = json.loads(first.stdout)
    assert original["answer"] == ANSWER
    cassette = tmp_path / "cassette.json"
    recorded = chordal(tmp_path, "record", original["run_id"], "-o", str(cassette),
                       env=model_env)
    assert recorded.returncode == 0, recorded.stderr
    assert "3 model exchange(s)" in recorded.stderr
    responses = json.loads(cassette.read_text())["responses"]
    assert [r["role"] for r in responses] == ["planner", "executor", "synthesizer"]
    assert responses[0]["match"] == f"Goal: {GOAL}"
    # Replayed by a worker whose only model is the cassette, on a Redis database of its own.
    env = worker_env(redis_server.url(DB + 1),
                     CHORDAL_LLM=f"scripted:{cassette}")
    worker = started(env, tmp_path / "replay.log")
    try:
        again = json.loads(chordal(tmp_path, "run", GOAL, "--wait", "--json", env=env).stdout)
        drifted = json.loads(chordal(tmp_path, "run", "Is Paris cheaper than Rome?", "--wait",
                                     "--json", env=env).stdout)
    finally:
        worker.stop()
    assert again["status"] == "succeeded" and again["answer"] == original["answer"]
    assert again["plan"] == original["plan"]
    assert again["steps"]["note"]["output"] == original["steps"]["note"]["output"]
    # A run that drifted from the recording fails, saying which response did not match.
    assert drifted["status"] == "failed"
    message = drifted["error"]["message"]
    assert "no response for role 'planner' fits this request" in message
    assert f"responses[0]: its match 'Goal: {GOAL}' is not in the request" in message


def test_dev_says_its_run_stops_with_it(redis_url: str, tmp_path: Path):
    """`dev --run` stops its worker when it stops waiting: it never says the run goes on."""
    plan = tmp_path / "slow.json"
    plan.write_text(json.dumps({"goal": "g", "steps": [
        {"id": "nap", "tool": "sleep", "args": {"seconds": 4}}]}))  # a warm shutdown waits
    env = worker_env(redis_server.url(DB + 2))
    timed = chordal(tmp_path, "dev", "--run", str(plan), "--timeout", "1", env=env,
                    timeout=120)
    assert timed.returncode == 1, timed.stderr
    [run_id] = re.findall(r"dev: timed out waiting; run (\S+) is left unfinished", timed.stderr)
    assert "`chordal dev` stops its worker" in timed.stderr and " goes on" not in timed.stderr
    assert f"`chordal cancel {run_id}` ends it" in timed.stderr
    waiting = subprocess.Popen(argv(f"chordal dev --run {plan}"), cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = Client(Settings.from_env(env))
    deadline = time.monotonic() + 60
    while not [r for r in client.runs(status="running") if r.run_id != run_id]:
        assert time.monotonic() < deadline, "the second run was never submitted"
        time.sleep(0.1)
    # As the message says, the worker started later carries the first run on.
    while client.report(run_id).status != "succeeded":
        assert time.monotonic() < deadline, client.report(run_id)
        time.sleep(0.1)
    time.sleep(1)  # submitted, and now waiting for it
    waiting.send_signal(signal.SIGINT)
    _, stderr = waiting.communicate(timeout=60)
    assert waiting.returncode == 130, stderr
    assert re.search(r"stopped waiting; run \S+ is left unfinished", stderr), stderr
    assert " goes on" not in stderr
