import pytest
from pydantic import ValidationError

from planner.language.plan import Plan, Step, plan_json_schema


def test_defaults_and_dependencies():
    step = Step(id="s2", tool="echo", args={"value": [{"$ref": "s1.x"}, {"$ref": "s0"}]},
                depends_on=["s9"])
    assert step.on_failure == "replan"
    assert step.max_retries is None and step.timeout_s is None
    assert step.dependencies() == {"s0", "s1", "s9"}


def test_round_trip_through_json():
    plan = Plan(goal="g", steps=[Step(id="a", tool="echo", args={"value": 1},
                                      on_failure="skip", max_retries=2, timeout_s=1.5)])
    assert Plan.model_validate_json(plan.model_dump_json()) == plan


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError):
        Step.model_validate({"id": "a", "tool": "echo", "colour": "red"})


def test_json_schema_is_a_public_contract():
    schema = plan_json_schema()
    assert schema["required"] == ["goal", "steps"]
    step = schema["$defs"]["Step"]
    assert step["required"] == ["id", "tool"]
    assert step["additionalProperties"] is False
    assert step["properties"]["id"]["pattern"].startswith("^[A-Za-z]")
