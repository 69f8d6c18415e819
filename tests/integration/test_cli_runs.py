"""`chordal run`, `status` and `dev`, as a user runs them (subprocesses, real worker)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from planner.cli.embedded import ensure_redis, redis_answers, start_embedded
from planner.store.records import RunReport
from tests.integration.conftest import ROOT, Engine, _free_port, base_env
from tests.travel import travel_services


def chordal(env: dict[str, str], *args: str, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planner.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write(tmp_path: Path, data: dict) -> str:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_run_wait_json_reports_and_exits_0(engine: Engine):
    result = chordal(engine.env, "run", "--plan", "examples/cost-of-living.json", "--wait",
                     "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    # The JSON report keeps its field names, and reads back as the typed report.
    assert set(data["steps"]["compare"]) == {"status", "output", "error", "attempts",
                                             "started_at", "finished_at", "worker",
                                             "history"}
    report = RunReport.model_validate(data)
    assert report.status == "succeeded"
    status = chordal(engine.env, "status", report.run_id, "--json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["answer"] == report.answer
    human = chordal(engine.env, "status", report.run_id)
    assert "succeeded" in human.stdout and "compare" in human.stdout


def test_failed_run_exits_1(engine: Engine, tmp_path: Path):
    plan = {"goal": "g", "steps": [{"id": "x", "tool": "fail", "on_failure": "fail",
                                    "args": {"times": -1, "kind": "permanent"}}]}
    result = chordal(engine.env, "run", "--plan", write(tmp_path, plan), "--wait", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "failed"


def test_timeout_exits_1(engine: Engine, tmp_path: Path):
    plan = {"goal": "g", "steps": [{"id": "x", "tool": "sleep", "args": {"seconds": 3}}]}
    result = chordal(engine.env, "run", "--plan", write(tmp_path, plan), "--wait", "--json",
                     "--timeout", "0.5")
    assert result.returncode == 1
    assert json.loads(result.stdout)["status"] == "running"


def test_run_without_wait_prints_the_run_id(engine: Engine):
    result = chordal(engine.env, "run", "--plan", "examples/weekend-getaway.json", "--json")
    assert result.returncode == 0
    run_id = json.loads(result.stdout)["run_id"]
    assert engine.client.wait(run_id, 30).status == "succeeded"


def test_bad_input_exits_2_with_one_line(engine: Engine, tmp_path: Path):
    bad = chordal(engine.env, "run", "--plan", write(tmp_path, {"goal": "g", "steps": [
        {"id": "x", "tool": "nope"}]}), "--wait")
    assert bad.returncode == 2 and "unknown tool 'nope'" in bad.stderr
    missing = chordal(engine.env, "status", "no-such-run")
    assert missing.returncode == 2
    assert "no run 'no-such-run'" in missing.stderr and "Traceback" not in missing.stderr
    goal = chordal(engine.env, "run", "book a trip")
    assert goal.returncode == 2
    assert "set ANTHROPIC_API_KEY to use Claude, or CHORDAL_LLM=scripted:PATH" in goal.stderr
    assert goal.stderr.count("\n") == 1
    both = chordal(engine.env, "run", "book a trip", "--plan", "examples/cost-of-living.json")
    assert both.returncode == 2 and "not both" in both.stderr


def test_unconsumed_queue_is_reported_not_waited_on_in_silence(engine: Engine,
                                                               tmp_path: Path):
    plan = {"goal": "g", "steps": [{"id": "x", "tool": "orphan", "args": {"value": 1}}]}
    result = chordal(engine.env, "run", "--plan", write(tmp_path, plan), "--wait", "--json",
                     "--timeout", "1")
    assert result.returncode == 1
    assert "no worker consumes queue(s) orphan" in result.stderr
    assert "chordal worker" in result.stderr
    engine.client.cancel(json.loads(result.stdout)["run_id"])


def test_unreachable_redis_is_one_line(tmp_path: Path):
    env = base_env(f"redis://127.0.0.1:{_free_port()}/0")
    result = chordal(env, "run", "--plan", "examples/cost-of-living.json", "--wait")
    assert result.returncode == 2
    assert "cannot reach Redis at CHORDAL_REDIS_URL=" in result.stderr
    assert "Traceback" not in result.stderr


def test_dev_runs_a_plan_end_to_end_and_stops_everything(redis_base: str):
    env = base_env(f"{redis_base}/11")
    redis.Redis.from_url(f"{redis_base}/11").flushdb()
    result = chordal(env, "dev", "--run", "examples/research-digest.json", "--json",
                     "--concurrency=2", timeout=180)
    assert result.returncode == 0, result.stderr
    report = RunReport.model_validate_json(result.stdout)
    assert report.status == "succeeded"
    assert report.steps["issues"].attempts == 2


def test_embedded_redis_starts_and_stops():
    server = start_embedded(port=_free_port())
    try:
        assert redis_answers(server.url)
        r = redis.Redis.from_url(server.url)
        assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert r.config_get("bind")["bind"] == "127.0.0.1"
    finally:
        server.stop()
    assert not redis_answers(server.url)


def test_ensure_redis_respects_configuration():
    assert ensure_redis({"CHORDAL_REDIS_URL": "redis://elsewhere:6379/0"}) is None
    if redis_answers("redis://127.0.0.1:6379/0"):
        assert ensure_redis({}) is None
    else:  # pragma: no cover - only on machines without a Redis
        pytest.skip("no Redis on 6379 to detect")


def _can_unshare_net() -> bool:
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(not _can_unshare_net(), reason="needs `unshare --net` (root)")
def test_dev_on_a_machine_without_redis_starts_an_embedded_one():
    """In a network namespace of its own, nothing answers on 127.0.0.1:6379: `chordal dev`
    must start the embedded Redis and still run the plan end to end."""
    env = base_env("unused")
    del env["CHORDAL_REDIS_URL"]
    script = ("ip link set lo up && "
              f"{sys.executable} -m planner.cli dev --run examples/cost-of-living.json --json")
    result = subprocess.run(["unshare", "--net", "sh", "-c", script], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "started an embedded Redis at redis://127.0.0.1:6379/0" in result.stderr
    assert json.loads(result.stdout)["answer"]["compare"] == pytest.approx(15.0993, rel=1e-4)


def test_dev_goal_with_the_scripted_model(redis_base: str, tmp_path: Path):
    """The README's main command, in essence: plan, run and synthesize offline, with the
    demo's real tools (the travel agency's MCP server, the weather server over HTTP)."""
    redis.Redis.from_url(f"{redis_base}/11").flushdb()
    with travel_services(_free_port()) as travel:
        script = travel.script(tmp_path / "model.json")
        env = base_env(f"{redis_base}/11", CHORDAL_LLM=f"scripted:{script}", **travel.env)
        result = chordal(env, "dev", "--goal", "Plan a weekend in Lisbon for two", "--json",
                         "--concurrency=2", timeout=180)
    assert result.returncode == 0, result.stderr
    report = RunReport.model_validate_json(result.stdout)
    assert report.status == "succeeded"
    assert report.answer.startswith("Your Lisbon weekend fits the budget")
    # What the agency answered, read by $refs: 2 x 106 EUR + 2 nights x 118 EUR.
    assert report.steps["flights"].output["price_eur"] == 212
    assert report.steps["hotels"].output["hotels"][0]["name"] == "Casa do Largo"
    assert report.steps["total"].output == 448
    assert report.steps["packing"].output.startswith("Pack light layers")
    # The adaptive loop: the primary weather service answers 503 (retried once, after its
    # Retry-After), the replanner routes around it to the backup, both versions reported.
    weather = report.steps["weather"]
    assert weather.status == "failed" and weather.attempts == 2
    assert weather.error is not None and "503" in weather.error.message
    assert travel.token not in result.stdout + result.stderr
    backup = report.steps["weather_backup"].output
    assert backup["status"] == 200 and backup["json"]["forecast"] == "sunny, 22C"
    assert report.replans == 1 and report.versions[1].failed == ["weather"]
    # The agent step picked the hotel over 3 turns, with 3 calls of the agency's tools.
    assert report.steps["pick_hotel"].output == {"hotel": "Casa do Largo",
                                                 "price_per_night": 118, "minutes": 25}
    assert report.usage is not None and report.usage.by_step["pick_hotel"].calls == 3
    assert report.usage.by_role["executor"].calls == 4  # and packing's
    # The replanner's second answer is used only when the agent step finished first.
    assert report.usage.by_role["replanner"].calls in (1, 2)
    assert set(report.usage.by_role) == {"planner", "replanner", "executor", "synthesizer"}
    assert report.usage.total.cost_usd > 0


def test_an_llm_step_without_a_model_fails_clearly(engine: Engine):
    report = engine.run({"goal": "g", "steps": [
        {"id": "think", "tool": "llm", "args": {"prompt": "hi"}, "on_failure": "fail"}]})
    assert report.status == "failed"
    think = report.steps["think"]
    assert think.attempts == 1 and think.error is not None
    assert "needs a model in the workers' environment" in think.error.message
    assert "set ANTHROPIC_API_KEY" in think.error.message


def test_dev_stops_its_worker_on_sigterm(redis_base: str, tmp_path: Path):
    from planner.client import Client
    from planner.settings import Settings
    from planner.tools import load_registry

    env = base_env(f"{redis_base}/11")
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("CHORDAL_")})
    client = Client(settings, load_registry(settings.tools.tool_modules))
    dev = subprocess.Popen([sys.executable, "-m", "planner.cli", "dev", "--concurrency=1"],
                           env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while client.missing_queues({"chordal"}, timeout=0.5):
            assert time.monotonic() < deadline and dev.poll() is None, "dev did not start"
        dev.send_signal(signal.SIGTERM)
        assert dev.wait(timeout=40) == 0
        assert client.missing_queues({"chordal"}, timeout=1.0) == {"chordal"}
    finally:
        if dev.poll() is None:
            os.killpg(dev.pid, signal.SIGKILL)


def test_cancel_stops_a_run_between_steps(engine: Engine):
    plan = {"goal": "g", "steps": [
        # Long enough for `chordal cancel` to start on a loaded machine before it ends.
        {"id": "slow", "tool": "sleep", "args": {"seconds": 8.0}},
        {"id": "next", "tool": "echo", "args": {"value": {"$ref": "slow"}}}]}
    run_id = engine.client.submit(plan)
    deadline = time.monotonic() + 20
    while engine.client.report(run_id).steps["slow"].status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    first = chordal(engine.env, "cancel", run_id)
    assert first.returncode == 0 and "cancelled" in first.stdout
    # At once, the report shows nothing running: the run abandoned its steps.
    assert {s.status for s in engine.client.report(run_id).steps.values()} == {"cancelled"}
    while engine.client.report(run_id).steps["slow"].status == "cancelled":
        assert time.monotonic() < deadline + 10  # "slow" runs on; its result is recorded
        time.sleep(0.1)
    time.sleep(0.5)  # "slow" finished: it must not have unlocked "next"
    report = engine.client.report(run_id)
    assert report.status == "cancelled"
    assert report.steps["slow"].status == "succeeded"
    assert report.steps["next"].status == "cancelled"
    assert report.steps["next"].attempts == 0
    again = chordal(engine.env, "cancel", run_id)
    assert again.returncode == 1 and "already ended (cancelled)" in again.stderr


def test_status_exit_codes_and_the_runs_listing(engine: Engine, tmp_path: Path):
    slow = {"goal": "a slow one", "steps": [
        {"id": "nap", "tool": "sleep", "args": {"seconds": 20}}]}
    run_id = engine.client.submit(slow)
    waiting = chordal(engine.env, "status", run_id)
    assert waiting.returncode == 3, waiting.stderr  # not ended yet
    listed = chordal(engine.env, "runs", "--limit", "5", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rows[0]["run_id"] == run_id and rows[0]["goal"] == "a slow one"
    assert len(rows) <= 5
    running = chordal(engine.env, "runs", "--status", "running", "--json")
    assert run_id in running.stdout
    assert chordal(engine.env, "runs", "--status", "sleeping").returncode == 2
    assert chordal(engine.env, "cancel", run_id).returncode == 0
    assert chordal(engine.env, "status", run_id).returncode == 1  # cancelled
    assert chordal(engine.env, "cancel", run_id).returncode == 1  # ended already
    quick = engine.run({"goal": "g", "steps": [{"id": "e", "tool": "echo",
                                                "args": {"value": 1}}]})
    assert chordal(engine.env, "status", quick.run_id).returncode == 0
    failed = {"goal": "g", "steps": [{"id": "x", "tool": "fail", "on_failure": "fail",
                                      "args": {"times": -1, "kind": "permanent"}}]}
    failed_id = engine.client.submit(failed)
    engine.client.wait(failed_id, 30)
    assert chordal(engine.env, "status", failed_id).returncode == 1
    human = chordal(engine.env, "runs")
    assert failed_id in human.stdout and "failed" in human.stdout
    again = chordal(engine.env, "retry", failed_id)
    assert again.returncode == 0 and "running again (x)" in again.stdout, again.stderr
    report = engine.client.wait(failed_id, 30)
    # Attempts keep counting across retries: the report shows both.
    assert report.status == "failed" and report.steps["x"].attempts == 2
    assert [a.status for a in report.steps["x"].history] == ["failed", "failed"]
    assert "run.retried" in [e.type for e in engine.events(failed_id)]
    assert chordal(engine.env, "retry", quick.run_id).returncode == 2  # succeeded: no
