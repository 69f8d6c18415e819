"""Flower, run as docs/operations.md says, shows step tasks with their run and step ids, and only
to someone with the credentials; an agent step's tool calls are rows of their own."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_anthropic import FakeAnthropic, text
from tests.integration.agents_fake import agent, conversation, tools
from tests.integration.conftest import ROOT, Engine, _free_port
from tests.integration.helpers import plan, step

AUTH = ("ops", "s3cret")


def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read()
            return response.status, json.loads(body) if body.startswith(b"{") else body
    except urllib.error.HTTPError as exc:
        return exc.code, None


def _flower(env: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.app", "flower", f"--port={port}",
         "--address=127.0.0.1", f"--basic-auth={AUTH[0]}:{AUTH[1]}"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(f"{url}/healthcheck")
                break
            except OSError:
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.2)
        time.sleep(1.0)  # let it subscribe to worker events
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def flower(engine: Engine) -> Iterator[str]:
    yield from _flower(engine.env)


@pytest.fixture
def model_flower(model_engine: Engine) -> Iterator[str]:
    yield from _flower(model_engine.env)


def tasks_of(flower: str, run_id: str, at_least: int, state: str | None = None
             ) -> dict[str, Any]:
    """Flower's tasks of one run, once it shows ``at_least`` of them (in ``state``, if
    given), or 15 s passed: its events come in as the workers send them."""
    deadline = time.monotonic() + 15
    while True:
        status, tasks = get(f"{flower}/api/tasks", AUTH)
        assert status == 200
        ours = {tid: t for tid, t in tasks.items() if tid.startswith(run_id)}
        enough = [t for t in ours.values() if state is None or t["state"] == state]
        if len(enough) >= at_least or time.monotonic() > deadline:
            return ours
        time.sleep(0.5)


def test_flower_shows_run_and_step_ids_behind_auth(engine: Engine, flower: str):
    report = engine.run(plan(step("alpha"), step("beta", value={"$ref": "alpha"})))
    run_id = report.run_id
    assert get(f"{flower}/api/tasks")[0] == 401
    ours = tasks_of(flower, run_id, 3)
    assert f"{run_id}.1.alpha" in ours and f"{run_id}.1.beta" in ours
    beta = ours[f"{run_id}.1.beta"]
    assert beta["name"] == "chordal.step echo beta"  # shadow name: task, tool, step
    assert run_id in beta["args"] and "beta" in beta["args"]
    assert beta["state"] == "SUCCESS"


def test_agent_calls_are_flower_rows_named_for_step_and_tool(model_engine: Engine,
                                                            model_flower: str,
                                                            fake_claude: FakeAnthropic):
    fake_claude.serve(conversation({"[[flower]]": [
        tools(("echo", {"value": 1}), ("echo", {"value": 2})), text("done")]}))
    report = model_engine.run(plan(agent("pick", "[[flower]]", ["echo"])))
    assert report.status == "succeeded", report
    # The step's own row (turn 0), two call rows, the row of turn 1, the run's finalize.
    ours = tasks_of(model_flower, report.run_id, 5, "SUCCESS")
    rows = sorted((t["name"], t["state"]) for t in ours.values())
    calls = [t for t in ours.values() if t["name"] == "chordal.agent pick → echo"]
    assert len(calls) == 2 and all(t["state"] == "SUCCESS" for t in calls), rows
    assert all(report.run_id in t["args"] and "pick" in t["args"] for t in calls)
    assert ("chordal.agent_turn pick t1", "SUCCESS") in rows, rows
