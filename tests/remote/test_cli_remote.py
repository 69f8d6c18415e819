"""The CLI against a Chordal server (CHORDAL_API_URL): no Redis, no tool modules here.

Most commands run in this process (Typer's runner: the real commands, no process start-up
each time); `run --events` and `watch` run as subprocesses, read through a pipe as a user's
script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from click.testing import Result
from typer.testing import CliRunner

from planner.cli import app
from planner.store.records import RunReport
from tests.integration.conftest import ROOT
from tests.remote.conftest import ALICE, ECHO_PLAN, Stack, ndjson, sleep_plan


def cli(env: dict[str, str], *args: str) -> Result:
    """The command as `chordal ARGS` runs it, with exactly the CHORDAL_* variables of env."""
    clear = {k: None for k in os.environ if k.startswith("CHORDAL_")}
    return CliRunner().invoke(app, list(args), env={**clear, **env}, catch_exceptions=False)


def write(tmp_path: Path, data: dict, name: str = "plan.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_run_wait_status_runs_over_http(stack: Stack, tmp_path: Path):
    env = stack.cli_env()
    done = cli(env, "run", "--plan", write(tmp_path, ECHO_PLAN), "--wait", "--json")
    assert done.exit_code == 0, done.stderr
    report = RunReport.model_validate_json(done.stdout)
    assert report.status == "succeeded" and report.answer == {"join": "hello"}
    status = cli(env, "status", report.run_id, "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)["run_id"] == report.run_id
    listed = cli(env, "runs", "--json", "--limit", "200")
    assert report.run_id in {r["run_id"] for r in ndjson(listed.stdout)}
    stuck = cli(env, "runs", "--stuck")
    assert stuck.exit_code == 2 and "needs Redis access" in stuck.stderr


def test_run_events_prints_ndjson_as_it_happens(stack: Stack, tmp_path: Path):
    plan = {"goal": "g", "steps": [
        {"id": "a", "tool": "sleep", "args": {"seconds": 1.5, "value": "x"}},
        {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}}}]}
    proc = subprocess.Popen([sys.executable, "-m", "planner.cli", "run", "--plan",
                             write(tmp_path, plan), "--events", "--json"],
                            env=stack.cli_env(), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    first = json.loads(proc.stdout.readline())  # while the run goes on: live
    first_at = time.monotonic()
    rest = proc.stdout.read()
    ended_at = time.monotonic()
    assert proc.wait(30) == 0, proc.stderr.read()
    lines = [first, *ndjson(rest)]
    events, report = lines[:-1], RunReport.model_validate(lines[-1])
    assert first["type"] == "run.created" and ended_at - first_at > 1.0
    assert events[-1]["type"] == "run.finished" and report.status == "succeeded"
    stored = stack.events(report.run_id)
    assert [e["id"] for e in events] == [e.id for e in stored][:len(events)]
    assert {"id", "type", "step", "status", "at", "data"} <= set(first)


def test_watch_follows_a_run_started_elsewhere(stack: Stack):
    run_id = stack.remote().submit(sleep_plan(1.0, steps=2))
    watched = subprocess.run([sys.executable, "-m", "planner.cli", "watch", run_id],
                             env=stack.cli_env(), cwd=ROOT, capture_output=True, text=True,
                             timeout=60)  # a pipe: JSON lines
    assert watched.returncode == 0, watched.stderr
    events = ndjson(watched.stdout)
    assert events[0]["type"] == "run.created" and events[-1]["type"] == "run.finished"
    assert f"run {run_id}: succeeded" in watched.stderr
    # The same over Redis (no CHORDAL_API_URL), for a run this Redis holds.
    over_redis = cli(stack.env, "watch", run_id, "--json")
    assert over_redis.exit_code == 0, over_redis.stderr
    lines = ndjson(over_redis.stdout)
    assert [e["id"] for e in lines[:-1]] == [e["id"] for e in events]
    assert lines[-1]["run_id"] == run_id and lines[-1]["status"] == "succeeded"


def test_approve_cancel_and_errors_over_http(stack: Stack, tmp_path: Path):
    env = stack.cli_env()
    waiting = cli(env, "run", "--plan", write(tmp_path, ECHO_PLAN), "--approve", "--json")
    assert waiting.exit_code == 0, waiting.stderr
    run_id = json.loads(waiting.stdout)["run_id"]
    assert json.loads(waiting.stdout)["status"] == "awaiting_approval"
    edited = write(tmp_path, {**ECHO_PLAN, "steps": ECHO_PLAN["steps"][:1]}, "edited.json")
    assert cli(env, "approve", run_id, "--plan", edited).exit_code == 0
    watched = cli(env, "watch", run_id, "--events", "--timeout", "30")
    assert watched.exit_code == 0 and ndjson(watched.stdout)[-1]["type"] == "run.finished"
    assert stack.remote().report(run_id).answer == {"a": "hel"}  # the edited plan ran

    slow = cli(env, "run", "--plan", write(tmp_path, sleep_plan(3), "slow.json"), "--json")
    slow_id = json.loads(slow.stdout)["run_id"]
    assert cli(env, "cancel", slow_id).stdout.strip() == f"{slow_id}: cancelled"
    again = cli(env, "cancel", slow_id)
    assert again.exit_code == 1 and "already ended (cancelled)" in again.stderr
    assert cli(env, "retry", slow_id).exit_code == 0
    assert cli(env, "cancel", slow_id).exit_code == 0

    invalid = cli(env, "run", "--plan", write(tmp_path, {"goal": "g", "steps": [
        {"id": "x", "tool": "nope"}]}, "bad.json"), "--wait")
    assert invalid.exit_code == 2
    assert "step 'x', tool" in invalid.stderr and "unknown tool" in invalid.stderr
    missing = cli(env, "status", "no-such-run")
    assert missing.exit_code == 2 and "no run 'no-such-run'" in missing.stderr
    wrong = cli(stack.cli_env(key="wrong-secret-0123456789"), "status", run_id)
    assert wrong.exit_code == 2 and "wrong-secret" not in wrong.stderr + wrong.stdout
    nokey = cli(stack.cli_env(key=None), "runs")
    assert nokey.exit_code == 2 and "CHORDAL_API_KEY" in nokey.stderr
    assert ALICE not in cli(env, "status", run_id).output
