"""Plans built in Python with ``planner.Ref``, run on a real worker: submitted as a Plan, as
a mapping, and written to a file that ``chordal run`` runs. Each ref is resolved."""

from __future__ import annotations

import json
from pathlib import Path

from planner import Plan, Ref, Step
from tests.integration.conftest import Engine
from tests.integration.test_cli_runs import chordal


def python_plan() -> Plan:
    return Plan(goal="refs built in Python", steps=[
        Step(id="a", tool="echo", args={"value": {"hotels": [{"name": "Casa"},
                                                             {"name": "Sol"}]}}),
        Step(id="b", tool="echo", args={"value": {
            "first": Ref("a", ("hotels", 0, "name")),
            "both": [Ref("a.hotels.0.name"), {"second": Ref("a.hotels.1.name")}]}}),
        Step(id="c", tool="concat", args={"items": [Ref("b.first"), "+",
                                                    Ref("a.hotels.1.name")]}),
    ])


EXPECTED_B = {"first": "Casa", "both": ["Casa", {"second": "Sol"}]}


def test_a_plan_built_in_python_runs_with_its_refs_resolved(engine: Engine):
    report = engine.run(python_plan())
    assert report.status == "succeeded", report.model_dump_json(indent=1)
    assert report.steps["b"].output == EXPECTED_B
    assert report.steps["c"].output == "Casa+Sol"
    b, c = report.steps["b"], report.steps["c"]
    assert b.started_at is not None and c.started_at is not None
    assert report.steps["a"].finished_at is not None
    assert report.steps["a"].finished_at <= b.started_at  # the ref made a dependency


def test_a_mapping_with_refs_runs_too(engine: Engine):
    plan = {"goal": "a mapping with Refs", "steps": [
        {"id": "a", "tool": "echo", "args": {"value": [1, 2]}},
        {"id": "b", "tool": "echo", "args": {"value": {"x": Ref("a.1")}}}]}
    report = engine.run(plan)
    assert report.status == "succeeded", report.model_dump_json(indent=1)
    assert report.steps["b"].output == {"x": 2}


def test_a_plan_file_written_from_python_runs_from_the_cli(engine: Engine, tmp_path: Path):
    path = tmp_path / "plan.json"
    path.write_text(python_plan().model_dump_json(indent=2, exclude_none=True))
    result = chordal(engine.env, "run", "--plan", str(path), "--wait", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "succeeded"
    assert report["steps"]["b"]["output"] == EXPECTED_B
