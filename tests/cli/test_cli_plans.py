"""The plan commands, run as a user runs them: the installed ``chordal`` in a subprocess."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("CHORDAL_")}
ENV["CHORDAL_TOOL_MODULES"] = "planner.tools.testing"


def chordal(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "planner.cli", *args], capture_output=True,
                          text=True, env=env or ENV, cwd=ROOT, timeout=60)


def test_examples_exist():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path):
    result = chordal("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "valid:" in result.stdout and "critical path" in result.stdout


def test_broken_plan_lists_every_problem(tmp_path):
    plan = {"goal": "g", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": {"$ref": "b"}}},
        {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a"}}},
        {"id": "c", "tool": "nope"},
        {"id": "c", "tool": "calculate", "args": {"expr": "1"}},
    ]}
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(plan))
    result = chordal("validate", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for fragment in ["cycle: a -> b -> a", "unknown tool 'nope'", "duplicate id",
                     "args.expression: missing", "args.expr: unexpected argument"]:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("content", "fragment"),
    [(None, "no such file"), ("{not json", "not JSON"), ("[1, 2]", "not a JSON list"),
     ('"plan"', "not a JSON str")],
)
def test_unreadable_plan_is_one_clear_line(tmp_path, content, fragment):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    result = chordal("validate", str(path))
    assert result.returncode == 2
    assert fragment in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_unknown_setting_is_one_line():
    result = chordal("validate", str(EXAMPLES[0]), env={**ENV, "CHORDAL_REDIS_ULR": "x"})
    assert result.returncode == 2
    assert "did you mean CHORDAL_REDIS_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_command_prints_the_plan_schema():
    result = chordal("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert set(schema["properties"]) == {"goal", "steps", "max_replans", "synthesize"}
    step = schema["$defs"]["Step"]
    assert set(step["properties"]) == {"id", "description", "tool", "args", "depends_on",
                                       "on_failure", "max_retries", "timeout_s", "checkpoint"}
    assert step["properties"]["on_failure"]["enum"] == ["replan", "skip", "fail"]


def test_tools_command_lists_schemas():
    result = chordal("tools", "--json")
    assert result.returncode == 0
    listed = {t["name"]: t for t in json.loads(result.stdout)}
    assert set(listed) == {"calculate", "llm", "http_request", "agent", "echo", "sleep", "fail",
                           "concat"}
    assert listed["calculate"]["input_schema"]["required"] == ["expression"]
    human = chordal("tools")
    assert "calculate" in human.stdout and "(expression: string" in human.stdout
