"""A run that waits for a person (a paused budget, a plan awaiting approval), followed by
the CLI as a user does (subprocesses, a real worker, Claude through the real SDK against
the fake Messages API): every way of waiting exits 3, as `chordal status` does, every
suggested command names the real run id, and the live view's last frame is the report
the wait ended with."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from typing import Any

import pytest

from planner.store.records import RunReport
from tests.fake_anthropic import FakeAnthropic, text, tool_use
from tests.integration.conftest import ROOT, Engine

THINK = {"goal": "g", "steps": [
    {"id": "think1", "tool": "llm", "args": {"prompt": "first thought"}},
    {"id": "think2", "tool": "llm", "args": {"prompt": ["second", {"$ref": "think1"}]}}]}
#: A budget the planner's call crosses: the run pauses before its first step's call.
PAUSED = ("--budget-tokens", "1", "--on-budget", "pause")


def responder(role: str, body: dict[str, Any]) -> dict[str, Any]:
    if role == "planner":
        return tool_use("submit_plan", THINK)
    return text("a thought")


@pytest.fixture
def fake(fake_claude: FakeAnthropic) -> FakeAnthropic:
    return fake_claude.serve(responder)


def chordal(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planner.cli", *args], env=engine.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def no_placeholder(*outputs: str) -> None:
    for output in outputs:
        assert "RUN_ID" not in output, output


def test_run_wait_exits_3_when_the_run_pauses_at_its_budget(model_engine: Engine, fake):
    result = chordal(model_engine, "run", "two thoughts", "--wait", "--json", *PAUSED)
    assert result.returncode == 3, result.stderr
    report = RunReport.model_validate_json(result.stdout)
    assert report.status == "paused"
    assert f"chordal resume {report.run_id} " in (report.reason or "")
    no_placeholder(result.stdout, result.stderr)
    # As `chordal status` says of the same run.
    status = chordal(model_engine, "status", report.run_id)
    assert status.returncode == 3
    assert f"chordal resume {report.run_id}" in " ".join(status.stdout.split())
    no_placeholder(status.stdout)
    # --events: JSON lines, then the status and why it waits on stderr; exit 3 too.
    events = chordal(model_engine, "run", "two thoughts", "--events", *PAUSED)
    assert events.returncode == 3, events.stderr
    assert all(json.loads(line)["type"] for line in events.stdout.splitlines())
    found = re.search(r"run (\S+): paused", events.stderr)
    assert found, events.stderr
    run_id = found[1]
    assert re.search(rf"run {run_id}: paused \(budget exceeded: .*chordal resume {run_id} ",
                     events.stderr), events.stderr
    no_placeholder(events.stdout, events.stderr)
    # Following it again, from anywhere.
    watched = chordal(model_engine, "watch", run_id, "--json", "--timeout", "30")
    assert watched.returncode == 3, watched.stderr
    assert model_engine.client.cancel(report.run_id) and model_engine.client.cancel(run_id)


def test_approve_and_wait_exits_3_and_names_the_run(model_engine: Engine, fake):
    # Without --wait, --approve did what was asked: exit 0.
    planned = chordal(model_engine, "run", "two thoughts, approved", "--approve", "--json")
    assert planned.returncode == 0, planned.stderr
    shown = json.loads(planned.stdout)
    run_id = shown["run_id"]
    waited = chordal(model_engine, "run", "two thoughts, approved", "--approve", "--wait")
    assert waited.returncode == 3, waited.stderr
    waited_id = re.search(r"run (\S+) awaits approval: chordal approve (\S+) ",
                          waited.stderr)
    assert waited_id and waited_id[1] == waited_id[2], waited.stderr
    for rid in (run_id, waited_id[1]):
        report = model_engine.client.report(rid)
        assert report.status == "awaiting_approval"
        assert report.reason == (f"the plan waits for approval (chordal approve {rid}, "
                                 f"or chordal reject {rid})")
        status = chordal(model_engine, "status", rid)
        assert status.returncode == 3 and f"chordal approve {rid}" in status.stdout
        no_placeholder(status.stdout)
        assert chordal(model_engine, "watch", rid, "--json").returncode == 3
        assert chordal(model_engine, "reject", rid).returncode == 0
    no_placeholder(planned.stdout, planned.stderr, waited.stdout, waited.stderr)


def on_a_terminal(engine: Engine, *args: str, timeout: float = 120) -> tuple[int, str]:
    """`chordal ARGS` on a pseudo-terminal (the live view): its exit status and what it
    drew, escape sequences removed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI, its stdout and stderr the terminal
        os.chdir(ROOT)
        env = {**engine.env, "COLUMNS": "100", "LINES": "60", "TERM": "xterm"}
        os.execve(sys.executable, [sys.executable, "-m", "planner.cli", *args], env)
    drawn = b""
    while True:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # the terminal closed: the CLI exited
            break
        if not chunk:
            break
        drawn += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode("utf-8", "replace"))
    return os.waitstatus_to_exitcode(status), plain


def test_the_live_views_last_frame_is_the_final_state(model_engine: Engine, fake):
    code, drawn = on_a_terminal(model_engine, "run", "two thoughts", "--wait", *PAUSED)
    assert code == 3, drawn
    run_id = re.findall(r"run ([0-9a-f]{20})  ", drawn)[-1]
    last = drawn[drawn.rindex(f"run {run_id}  "):]
    report = model_engine.client.report(run_id)
    assert report.status == "paused"
    title = last.splitlines()[0]
    assert "paused" in title and f"plan v{report.plan_version}" in title
    assert "replan" not in title  # none was made
    assert f"chordal resume {run_id}" in " ".join(last.split())
    no_placeholder(drawn)
    assert model_engine.client.cancel(run_id)
