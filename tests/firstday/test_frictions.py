"""A tool author's first day, without Redis: tool modules from the working directory,
undocumented tools, the tools table, .env settings, Redis hints, the live view's layout
and the scripted model's mismatch report."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from planner.cli.view import render
from planner.client import redis_hint
from planner.errors import ConfigError, PermanentError
from planner.llm.model import ModelRequest, ModelResponse, RoleConfig, Usage
from planner.llm.scripted import ScriptedModel, cassette, exchange
from planner.settings import Settings, envfile
from planner.store.records import PlanVersion, RunReport, StepReport
from tests.firstday.helpers import chordal, user_env

MYTOOLS = '''
from planner import tool

@tool
def greet(name: str, times: int = 1) -> str:
    """Greet someone by name."""
    return " ".join([f"hello {name}"] * times)

@tool
def nameless(x: int) -> int:
    return x
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_tool_module_in_the_working_directory_loads_with_no_pythonpath(tmp_path: Path):
    (tmp_path / "mytools.py").write_text(MYTOOLS)
    result = chordal(tmp_path, "tools", env=user_env(CHORDAL_TOOL_MODULES="mytools",
                                                     COLUMNS="80"))
    assert result.returncode == 0, result.stderr
    # The table: name, queue, retries, timeout, the docstring's line, arguments and types.
    row = next(line for line in result.stdout.splitlines() if line.startswith("greet"))
    assert re.match(r"greet\s+chordal\s+3\s+300s\s+Greet someone by name\.", row), row
    assert "(name: string, times: integer = 1) -> string" in " ".join(result.stdout.split())
    assert max(map(len, result.stdout.splitlines())) <= 80
    # No docstring: the planner model would see nothing. Said at registration, and shown.
    assert "tool 'nameless'" in result.stderr and "no docstring" in result.stderr
    assert "(no docstring" in result.stdout
    as_json = chordal(tmp_path, "tools", "--json",
                      env=user_env(CHORDAL_TOOL_MODULES="mytools"))
    greet = next(t for t in json.loads(as_json.stdout) if t["name"] == "greet")
    assert greet["input_schema"]["required"] == ["name"]


def test_a_missing_tool_module_says_where_it_looked(tmp_path: Path):
    result = chordal(tmp_path, "tools", env=user_env(CHORDAL_TOOL_MODULES="nosuchtools"))
    assert result.returncode == 2
    assert "CHORDAL_TOOL_MODULES: cannot import 'nosuchtools'" in result.stderr
    assert str(tmp_path) in result.stderr and "Traceback" not in result.stderr


def test_settings_come_from_a_dotenv_file_and_the_environment_wins(tmp_path: Path):
    (tmp_path / "mytools.py").write_text(MYTOOLS)
    (tmp_path / ".env").write_text("# mine\nCHORDAL_TOOL_MODULES=mytools\n")
    listed = chordal(tmp_path, "tools", "--json")
    assert "greet" in {t["name"] for t in json.loads(listed.stdout)}
    env = user_env(CHORDAL_TOOL_MODULES="planner.tools.testing")
    names = {t["name"] for t in json.loads(chordal(tmp_path, "tools", "--json",
                                                   env=env).stdout)}
    assert "echo" in names and "greet" not in names
    # A typo in the file is named with the file it is in.
    (tmp_path / ".env").write_text("CHORDAL_TOOL_MODULE=mytools\n")
    typo = chordal(tmp_path, "tools")
    assert typo.returncode == 2
    assert "CHORDAL_TOOL_MODULE (from .env) (did you mean CHORDAL_TOOL_MODULES?)" \
        in typo.stderr


def test_worker_and_dev_with_an_unreachable_redis_exit_with_one_line(tmp_path: Path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    for command in ("worker", "dev"):
        result = chordal(tmp_path, command, env=user_env(CHORDAL_REDIS_URL=url), timeout=30)
        assert result.returncode == 2, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert f"cannot reach Redis at CHORDAL_REDIS_URL={url}" in line
        assert "start Redis there, or fix CHORDAL_REDIS_URL" in line


def test_the_redis_hint_fits_whether_the_url_is_set():
    refused = ConnectionRefusedError("refused")
    unset = redis_hint(Settings.from_env({}), refused)
    assert "run `chordal dev`, which starts one" in unset
    given = redis_hint(Settings.from_env({"CHORDAL_REDIS_URL": "redis://:pw@h:1/0"}),
                       refused)
    assert "chordal dev`, which starts" not in given and "pw" not in given
    assert "start Redis there, or fix CHORDAL_REDIS_URL" in given


def test_dotenv_loading_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHORDAL_MAX_STEPS", "7")
    (tmp_path / ".env").write_text("CHORDAL_MAX_STEPS=9\nCHORDAL_RETENTION_S=120\n"
                                   "CHORDAL_MAX_GOAL_BYTES=lots\n")
    # What the file loads into os.environ is undone after the test (set, then removed,
    # so monkeypatch restores "absent"), and so is the note of where it came from.
    for var in ("CHORDAL_RETENTION_S", "CHORDAL_MAX_GOAL_BYTES"):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(envfile, "_FROM_FILE", {})
    with pytest.raises(ConfigError, match=r"CHORDAL_MAX_GOAL_BYTES \(from \.env\)"):
        Settings.from_env()
    monkeypatch.setenv("CHORDAL_MAX_GOAL_BYTES", "100")
    s = Settings.from_env()
    assert (s.limits.max_steps, s.store.retention_s) == (7, 120)  # the environment wins


def _report(now: datetime) -> RunReport:
    t0 = now - timedelta(seconds=10)
    wide = {"rows": [{"name": f"item {i}", "detail": "x" * 40} for i in range(30)]}
    return RunReport.model_validate({
        "run_id": "run-1", "status": "running", "created_at": t0,
        "goal": "Compare the monthly cost of living in Lisbon and Berlin, and say which "
                "is cheaper for a family of four with two cars and a dog",
        "plan_version": 2, "replans": 1,
        "versions": [PlanVersion(version=1, reason="planned"),
                     PlanVersion(version=2, reason="replan", failed=["weather"],
                                 dropped=["old"])],
        "steps": {
            "lisbon": StepReport(status="succeeded", output=wide, attempts=1,
                                 started_at=t0, finished_at=t0 + timedelta(seconds=4)),
            "berlin": StepReport(status="succeeded", output=[1, 2], attempts=1,
                                 started_at=t0, finished_at=t0 + timedelta(seconds=5)),
            "weather": StepReport(status="failed", attempts=2, started_at=t0,
                                  finished_at=t0 + timedelta(seconds=2),
                                  error={"type": "TransientError", "message": "down\n" * 9}),
            "compare": StepReport(status="running", attempts=1,
                                  started_at=t0 + timedelta(seconds=5)),
        }})


def test_the_live_view_reads_at_80_columns():
    now = datetime.now(UTC)
    console = Console(width=80, record=True, color_system=None)
    console.print(render(_report(now), {"compare": ["berlin", "lisbon"]}, now=now))
    lines = console.export_text().splitlines()
    assert max(map(len, lines)) <= 80
    assert lines[0].startswith("Compare the monthly cost")  # the goal on top
    assert "running 10.0s  plan v2 (1 replan; replaced: old)" in lines[1]
    rows = {line.split()[0]: line for line in lines[3:7]}
    assert set(rows) == {"lisbon", "berlin", "weather", "compare"}  # one line each
    assert "5.00s" in rows["compare"]  # a running step's elapsed time
    # Timeline bars: lisbon and berlin overlap from the start; compare starts after.
    bar = {sid: line.index("━") for sid, line in rows.items()}
    assert bar["lisbon"] == bar["berlin"] < bar["compare"]
    assert '{"rows"' in rows["lisbon"] and rows["lisbon"].endswith("…")


@pytest.mark.parametrize(("change", "phase"), [
    ({"plan_version": 0, "status": "pending", "steps": {}, "versions": []}, "planning…"),
    ({"versions": [PlanVersion(version=1, reason="planned")]}, "replanning…"),
])
def test_the_live_view_shows_the_phase(change, phase):
    now = datetime.now(UTC)
    report = _report(now).model_copy(update=change)
    console = Console(width=80, record=True, color_system=None)
    console.print(render(report, now=now))
    assert phase in console.export_text()


def test_the_live_view_says_when_the_answer_is_being_written():
    now = datetime.now(UTC)
    report = _report(now)
    report.steps["compare"] = StepReport(status="succeeded", output=1, attempts=1)
    console = Console(width=80, record=True, color_system=None)
    console.print(render(report, now=now))
    assert "writing the answer…" in console.export_text()


def _request(role: str, text: str) -> ModelRequest:
    return ModelRequest(role, RoleConfig("m", 100), [{"type": "text", "text": "sys"}],  # type: ignore[arg-type]
                        [{"role": "user", "content": text}])


def test_a_cassette_matches_each_call_by_a_line_only_it_has():
    calls = [("executor", 'Write a haiku about "Lisbon"\nmaterial'),
             ("executor", "Write a haiku about Berlin\nmaterial"),
             ("synthesizer", "Goal: trip")]
    exchanges = [exchange(_request(role, text), ModelResponse(
        [{"type": "text", "text": f"answer {i}"}], Usage(1, 2), "m"), None)
        for i, (role, text) in enumerate(calls)]
    data = cassette([*exchanges, exchanges[0]])  # a call made twice is kept once
    assert [r.get("match") for r in data["responses"]] == [
        'Write a haiku about "Lisbon"', "Write a haiku about Berlin", "Goal: trip"]
    model = ScriptedModel(data["responses"])
    for i, (role, text) in enumerate(calls):
        assert model.complete(_request(role, text)).text() == f"answer {i}"
    with pytest.raises(PermanentError) as failed:
        model.complete(_request("executor", "Write a limerick"))
    message = str(failed.value)
    assert "no response for role 'executor' fits this request" in message
    assert "it begins 'Write a limerick'" in message
    assert "responses[0]: its match 'Write a haiku about \"Lisbon\"' is not in the request" \
        in message and "responses[1]" in message and "responses[2]" not in message
