"""Every block the README shows is run or compared with what it claims, so it stays true.

The README is the front door: the two commands, the tour's report and commands, the
starter's commands. Each test below takes one block; `test_every_block_is_checked` makes
a new block fail until a test covers it. The demo itself (`./scripts/demo`, exactly as
written) is run by tests/firstday/test_demo.py, which also compares its report with the
tour's; `./scripts/test` is what CI (`.ci/run`) runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import redis

from tests import redis_server
from tests.firstday.helpers import CHORDAL, ROOT, argv, chordal, user_env
from tests.integration.conftest import _free_port
from tests.travel import travel_services

README = (ROOT / "README.md").read_text("utf-8")


def blocks() -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", README, flags=re.S | re.M)


def block(marker: str) -> str:
    [found] = [b for b in blocks() if marker in b]
    return found


def commands(text: str) -> list[str]:
    """The commands of a block, without their comments."""
    return [line.split("  #", 1)[0].strip() for line in text.splitlines() if line.strip()]


QUICK_START = "./scripts/demo"
TOUR = "plan v2 (1 replan; replaced: weather)"
STEPS = 'chordal plan "Plan a weekend in Lisbon"'
STARTER = "chordal init myagent"
DIAGRAM = "replanner (Claude)"


def test_every_block_is_checked():
    markers = [QUICK_START, TOUR, STEPS, STARTER, DIAGRAM]
    assert sorted(len([m for m in markers if m in b]) for b in blocks()) == [1] * len(markers)


def test_the_two_commands_are_the_scripts_ci_runs():
    assert commands(block(QUICK_START)) == ["./scripts/demo", "./scripts/test"]
    for script in ("scripts/demo", "scripts/test", ".ci/run"):
        assert os.access(ROOT / script, os.X_OK), script
    ci = (ROOT / ".ci" / "run").read_text("utf-8").strip().splitlines()
    # The README's statement: CI runs exactly that command, then the tests it leaves out.
    assert ci[-2:] == ["./scripts/test",
                       "timeout 300 .venv/bin/pytest -m slow -n 2 --dist loadfile"]
    assert "CI (`.ci/run`) runs exactly that command, then the `slow`" in README
    assert "leaving out the tests marked `slow`" in README
    test = (ROOT / "scripts" / "test").read_text("utf-8")
    for tool in ("ruff check .", "mypy", "lint-imports",
                 'pytest -n auto --dist loadfile -m "not slow" "$@"'):
        assert tool in test  # what the README says ./scripts/test runs


def tour_rows(text: str) -> list[tuple[str, str, str]]:
    """(step, status, try) of each row of a report's table."""
    rows = re.findall(r"^(\w+)\s+(pending|running|succeeded|failed|skipped|replaced|"
                      r"cancelled)\s+(\d+)\s", text, flags=re.M)
    return [tuple(row) for row in rows]


def test_the_tour_shows_a_replanned_report():
    tour = block(TOUR)
    assert re.match(r"run [0-9a-f]{20}  succeeded [\d.]+s  plan v2 \(1 replan; replaced: "
                    r"weather\)\n", tour)
    assert tour_rows(tour) == [
        ("flights", "succeeded", "1"), ("hotels", "succeeded", "1"),
        ("pick_hotel", "succeeded", "1"), ("weather", "failed", "2"),
        ("hotel_cost", "succeeded", "1"),
        ("total", "succeeded", "1"), ("packing", "succeeded", "1"),
        ("weather_backup", "succeeded", "1")]
    assert re.search(r"^model: \d+ call\(s\), \d+ tokens", tour, flags=re.M)


#: The tour's database (of the test process's Redis).
DB = 27


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = redis_server.url(DB)
    redis.Redis.from_url(url).flushdb()
    return url


def test_the_tours_commands_run_one_at_a_time(redis_url: str, tmp_path: Path):
    """The block as written, in a second terminal's directory, while `chordal dev` serves
    with the demo's settings: plan, validate, run (replanned as in the tour), status."""
    lines = commands(block(STEPS))
    assert [line.split()[1] for line in lines] == ["plan", "validate", "run", "status"]
    with travel_services(_free_port()) as travel:
        model = travel.script(tmp_path / "model.json")
        env = user_env(CHORDAL_REDIS_URL=redis_url, CHORDAL_LLM=f"scripted:{model}",
                       COLUMNS="120", **travel.env)
        env["CHORDAL_MCP_CONFIG"] = str(ROOT / env["CHORDAL_MCP_CONFIG"])
        dev = subprocess.Popen(argv("chordal dev"), cwd=tmp_path, env=env,
                               stdout=(tmp_path / "dev.log").open("wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
        try:
            out = {}
            for line in lines:
                if "RUN_ID" in line:
                    [last] = chordal(tmp_path, "runs", "--json", "--limit", "1",
                                     env=env).stdout.splitlines()
                    line = line.replace("RUN_ID", json.loads(last)["run_id"])
                shell = line.replace("chordal", shlex.join(CHORDAL), 1)
                done = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=180)
                assert done.returncode == 0, (line, done.stdout, done.stderr)
                out[line.split()[1]] = done.stdout
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dev.pid, signal.SIGINT)
            dev.wait(timeout=60)
    plan = json.loads((tmp_path / "plan.json").read_text("utf-8"))
    assert {step["tool"] for step in plan["steps"]} >= {"travel.flights", "http_request"}
    assert out["validate"].startswith("plan.json: valid: 7 steps")
    assert tour_rows(out["run"]) == tour_rows(block(TOUR))
    report = json.loads(out["status"])
    assert report["status"] == "succeeded" and report["plan_version"] == 2


def test_the_starters_commands_are_what_init_prints(tmp_path: Path):
    """tests/firstday/test_runs.py runs what `chordal init` prints; the README shows the
    same commands."""
    init, *rest = commands(block(STARTER))
    assert init == "chordal init myagent && cd myagent"
    made = chordal(tmp_path, "init", "myagent")
    assert made.returncode == 0, made.stderr
    printed = re.findall(r"^  (chordal [^#]+?)\s+#", made.stdout, flags=re.M)
    assert rest == printed
