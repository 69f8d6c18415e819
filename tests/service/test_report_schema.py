"""The run report's shape in /openapi.json (GET /v1/runs/{id}'s response, the models'
serialization schema as FastAPI writes it): an agent step's conversation is described field
by field, down to each call's status, while unset details stay out of the JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from planner.store.agent_records import AgentCall, AgentReport, AgentTurn
from planner.store.records import RunReport, StepReport
from planner.vocabulary import CallStatus, TurnKind


def schema() -> dict[str, Any]:
    return RunReport.model_json_schema(mode="serialization")["$defs"]


def test_the_report_schema_describes_an_agent_steps_turns_and_calls() -> None:
    defs = schema()
    step = defs["StepReport"]["properties"]
    assert {"status", "output", "error", "history", "agent"} <= set(step)
    assert {"$ref": "#/$defs/AgentReport"} in step["agent"]["anyOf"]
    assert set(defs["AgentReport"]["properties"]) == {"conversation", "max_turns", "turns"}
    turn = defs["AgentTurn"]["properties"]
    assert {"turn", "kind", "text", "usage", "started_at", "finished_at", "tries",
            "problems", "calls"} <= set(turn)
    assert "content" not in turn  # the model's blocks stay in the store
    call = defs["AgentCall"]["properties"]
    assert {"index", "id", "tool", "args", "status", "output", "error", "attempts",
            "started_at", "finished_at", "worker", "task"} <= set(call)
    assert defs["CallStatus"]["enum"] == list(CallStatus)
    assert defs["TurnKind"]["enum"] == list(TurnKind)


def test_unset_details_and_a_missing_agent_stay_out_of_the_json() -> None:
    assert "agent" not in StepReport(status="succeeded").model_dump(mode="json")
    call = AgentCall(index=0, tool="travel.availability", args={"hotel": "h"})
    turn = AgentTurn(turn=0, kind="tools", calls=[call], content=[{"type": "text"}])
    dumped = StepReport(status="running", agent=AgentReport(max_turns=8, turns=[turn])
                        ).model_dump(mode="json")["agent"]
    assert dumped == {"conversation": 0, "max_turns": 8, "turns": [
        {"turn": 0, "kind": "tools", "tries": 0, "calls": [
            {"index": 0, "tool": "travel.availability", "args": {"hotel": "h"},
             "status": "pending", "attempts": 0}]}]}


def test_the_agent_step_example_of_docs_api_is_a_step_report() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text("utf-8")
    section = doc.split("## The report", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```json\n(.*?)```", section, flags=re.S)
    example = json.loads(block)
    step = StepReport.model_validate(example)
    assert step.agent is not None and [c.status for c in step.agent.calls] == [
        CallStatus.SUCCEEDED, CallStatus.RUNNING]
    # As the API writes it: the step's unset fields come back (a step's are not left out),
    # the agent's details exactly as in the example, no null added.
    dumped = step.model_dump(mode="json")
    assert dumped.keys() - {"output", "error", "finished_at", "worker", "history"} == \
        example.keys()
    for said, written in zip(example["agent"]["turns"], dumped["agent"]["turns"],
                             strict=True):
        assert said.keys() == written.keys()
        assert [c.keys() for c in said["calls"]] == [c.keys() for c in written["calls"]]
