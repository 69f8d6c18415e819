"""Model roles through the real anthropic SDK against a local Messages API server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from planner.errors import (
    ConfigError,
    ModelAuthError,
    ModelTransientError,
    PermanentError,
    TransientError,
)
from planner.language.plan import Plan, plan_json_schema
from planner.llm import AnthropicModel, ScriptedModel, make_model
from planner.llm.model import ModelRequest, RoleConfig
from planner.llm.planning import OUTPUT_PREVIEW_CHARS, plan_goal, preview, replan
from planner.llm.roles import PLAN_TOOL, role_config, synthesize_request
from planner.settings import Settings
from tests.fake_anthropic import (
    API_KEY,
    FakeAnthropic,
    overloaded,
    rate_limited,
    text,
    tool_use,
)

SETTINGS = Settings.from_env({})
GOOD = {"goal": "double two", "steps": [
    {"id": "two", "tool": "calculate", "args": {"expression": "1 + 1"}},
    {"id": "double", "tool": "calculate",
     "args": {"expression": "x * 2", "variables": {"x": {"$ref": "two"}}}},
]}
BAD = {"goal": "double two", "steps": [
    {"id": "two", "tool": "abacus", "args": {}},
    {"id": "double", "tool": "calculate", "args": {"expression": "1"}, "depends_on": ["zz"]},
]}


class Script:
    """Planner answers in order; other roles answer text."""

    def __init__(self, *plans: Any) -> None:
        self.plans = list(plans)

    def __call__(self, role: str, body: dict[str, Any]) -> dict[str, Any]:
        if role in ("planner", "replanner"):
            plan = self.plans.pop(0) if len(self.plans) > 1 else self.plans[0]
            return text(plan) if isinstance(plan, str) else tool_use(PLAN_TOOL, plan)
        return text(f"{role} says hi")


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(Script(GOOD))
    yield server
    server.close()


def claude(fake: FakeAnthropic, timeout_s: float = 10, max_retries: int = 2) -> AnthropicModel:
    return AnthropicModel(timeout_s=timeout_s, max_retries=max_retries, api_key=API_KEY,
                          base_url=fake.url)


def test_plan_comes_back_as_structured_output(fake, tools):
    outcome = plan_goal(claude(fake), SETTINGS, tools, "double two")
    assert outcome.plan == Plan.model_validate(GOOD)
    assert outcome.attempts == 1
    [seen] = fake.requests
    body = seen.body
    assert body["tool_choice"] == {"type": "tool", "name": PLAN_TOOL}
    assert body["tools"][0]["input_schema"] == plan_json_schema()
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    system = body["system"][0]["text"]
    assert '"name": "calculate"' in system and "$ref" in system and "depends_on" in system
    assert body["model"] == SETTINGS.model.planner_model
    assert body["messages"] == [{"role": "user", "content": "Goal: double two"}]


def test_invalid_plan_is_repaired_in_the_same_conversation(tools):
    fake = FakeAnthropic(Script(BAD, GOOD))
    try:
        outcome = plan_goal(claude(fake), SETTINGS, tools, "double two")
    finally:
        fake.close()
    assert outcome.plan is not None and outcome.attempts == 2
    second = fake.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    result = second[2]["content"][0]
    assert result["type"] == "tool_result" and result["is_error"] is True
    assert result["tool_use_id"] == second[1]["content"][0]["id"]
    assert "unknown tool 'abacus'" in result["content"]
    assert "no step has id 'zz'" in result["content"]


def test_repair_exhausted_reports_the_last_plan_and_its_problems(tools):
    fake = FakeAnthropic(Script(BAD))
    try:
        outcome = plan_goal(claude(fake), SETTINGS, tools, "double two")
    finally:
        fake.close()
    assert outcome.plan is None
    assert outcome.attempts == SETTINGS.model.plan_repairs + 1 == len(fake.requests)
    report = outcome.error()
    assert report["type"] == "PlanInvalid" and report["plan"] == BAD
    assert any("unknown tool 'abacus'" in p for p in report["problems"])


def test_prose_instead_of_a_tool_call_is_sent_back(tools):
    fake = FakeAnthropic(Script("Here is my plan: do the thing.", GOOD))
    try:
        outcome = plan_goal(claude(fake), SETTINGS, tools, "double two")
    finally:
        fake.close()
    assert outcome.plan is not None and outcome.attempts == 2
    assert "did not call submit_plan" in json.dumps(fake.requests[1].body["messages"][-1])


def test_429_with_retry_after_then_success(fake, tools):
    fake.inject("planner", status=429, headers={"retry-after": "1"}, body=rate_limited())
    outcome = plan_goal(claude(fake, max_retries=2), SETTINGS, tools, "double two")
    assert outcome.plan is not None
    first, second = fake.requests
    assert first.status == 429 and second.status == 200
    assert second.at - first.at >= 0.9  # the SDK honoured retry-after
    assert second.headers.get("x-stainless-retry-count") == "1"


def test_429_past_the_sdk_retries_is_transient_with_retry_after(fake, tools):
    fake.inject("planner", status=429, headers={"retry-after": "7"}, body=rate_limited())
    with pytest.raises(ModelTransientError) as info:
        plan_goal(claude(fake, max_retries=0), SETTINGS, tools, "double two")
    assert info.value.retry_after_s == 7
    assert isinstance(info.value, TransientError)


def test_529_overloaded(fake, tools):
    fake.inject("planner", status=529, body=overloaded())
    with pytest.raises(ModelTransientError, match="529"):
        plan_goal(claude(fake, max_retries=0), SETTINGS, tools, "double two")
    fake.inject("planner", status=529, body=overloaded(), headers={"retry-after": "0"})
    assert plan_goal(claude(fake, max_retries=1), SETTINGS, tools, "g").plan is not None


def test_malformed_json_body_is_transient(fake, tools):
    fake.inject("planner", status=200, body='{"id": "msg_1", "content": [')
    with pytest.raises(ModelTransientError, match="malformed response from the model service"):
        plan_goal(claude(fake, max_retries=0), SETTINGS, tools, "double two")


def test_a_call_that_times_out(fake, tools):
    fake.inject("planner", delay_s=2.0)
    t0 = time.monotonic()
    with pytest.raises(ModelTransientError, match="no answer within"):
        plan_goal(claude(fake, timeout_s=0.5, max_retries=0), SETTINGS, tools, "g")
    assert time.monotonic() - t0 < 2.0


def test_missing_and_invalid_keys_say_what_to_set(fake, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"set ANTHROPIC_API_KEY .* or CHORDAL_LLM=scripted"):
        AnthropicModel()
    assert make_model(Settings.from_env({})) is None
    bad = AnthropicModel(api_key="wrong", base_url=fake.url, max_retries=0)
    request = ModelRequest("executor", RoleConfig("m", 10, 0), [], [{"role": "user",
                                                                     "content": "hi"}])
    with pytest.raises(ModelAuthError, match="refused ANTHROPIC_API_KEY"):
        bad.complete(request)
    assert isinstance(ModelAuthError("x"), PermanentError)


def test_base_url_comes_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
    model = make_model(Settings.from_env({}))
    assert isinstance(model, AnthropicModel)
    reply = model.complete(synthesize_request(SETTINGS, "g", {"a": 1}, {"a": "step a"}))
    assert reply.text() == "synthesizer says hi"
    assert reply.usage.cache_creation_input_tokens == 400
    again = model.complete(synthesize_request(SETTINGS, "g", {"a": 2}, {}))
    assert again.usage.cache_read_input_tokens == 400  # same system prompt: cached


def test_role_config_and_overrides():
    assert role_config(SETTINGS, "planner").model == SETTINGS.model.planner_model
    over = role_config(SETTINGS, "executor", {"executor": {"model": "claude-sonnet-5-5",
                                                           "temperature": 0.9}})
    assert (over.model, over.temperature) == ("claude-sonnet-5-5", 0.9)
    # strong plans, fast executes
    assert SETTINGS.model.planner_model != SETTINGS.model.executor_model
    with pytest.raises(ConfigError, match="unknown option"):
        role_config(SETTINGS, "planner", {"planner": {"modle": "x"}})


def test_replanner_keeps_earned_results_and_checks_new_steps(tools):
    plan = Plan.model_validate({"goal": "g", "steps": [
        {"id": "a", "tool": "calculate", "args": {"expression": "2"}},
        {"id": "b", "tool": "fail", "args": {"times": -1}},
        {"id": "c", "tool": "calculate", "args": {"expression": "3"}, "depends_on": ["b"]},
    ]})
    context = {"goal": "g", "completed_steps": [{"id": "a", "output": 2}],
               "failed_steps": [{"id": "b", "error": {"message": "boom"}}],
               "not_started": ["c"]}
    new = {"goal": "g", "steps": [
        {"id": "b2", "tool": "calculate", "args": {"expression": "x + 1",
                                                   "variables": {"x": {"$ref": "a"}}}}]}
    clash = {"goal": "g", "steps": [{"id": "a", "tool": "calculate",
                                     "args": {"expression": "1"}},
                                    {"id": "b", "tool": "calculate",
                                     "args": {"expression": "1"}}]}
    fake = FakeAnthropic(Script(clash, new))
    try:
        outcome = replan(claude(fake), SETTINGS, tools, "g", context, [plan.step("a")],
                         {"b": "failed"})
    finally:
        fake.close()
    assert outcome.plan is not None and outcome.attempts == 2
    assert [s.id for s in outcome.plan.steps] == ["a", "b2"]  # a kept as it was
    first = json.loads(fake.requests[0].body["messages"][0]["content"].split("JSON:\n")[1]
                       .rsplit("\nSubmit", 1)[0])
    assert first == context
    repair = json.dumps(fake.requests[1].body["messages"][-1])
    assert "is a completed or running step, kept as it is" in repair
    assert "is the id of a failed step" in repair
    assert "You are the replanner" in fake.requests[0].body["system"][0]["text"]


def test_long_outputs_are_cut_for_the_replanner_with_a_marker():
    assert preview({"a": 1}) == {"a": 1}
    cut = preview("x" * 10_000)
    assert cut["truncated"] is True and cut["chars"] == 10_002
    assert cut["preview"].endswith("…") and len(cut["preview"]) == OUTPUT_PREVIEW_CHARS + 1


def test_scripted_model_answers_by_role_match_and_turn(tmp_path):
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"responses": [
        {"role": "planner", "match": "weekend", "turn": 1, "content": [
            {"type": "text", "text": "second"}]},
        {"role": "planner", "match": "weekend", "content": [
            {"type": "text", "text": "first"}], "usage": {"input_tokens": 7}},
        {"role": "synthesizer", "content": [{"type": "text", "text": "done"}]},
    ]}))
    model = ScriptedModel.from_file(path)
    cfg = RoleConfig("claude-haiku-5-5", 100, 0)
    ask = ModelRequest("planner", cfg, [], [{"role": "user", "content": "a weekend"}])
    reply = model.complete(ask)
    assert reply.text() == "first" and reply.usage.input_tokens == 7
    again = ModelRequest("planner", cfg, [], [*ask.messages, {"role": "assistant",
                                                              "content": "x"},
                                              {"role": "user", "content": "fix"}])
    assert model.complete(again).text() == "second"
    with pytest.raises(PermanentError, match="no response for role 'planner'"):
        model.complete(ModelRequest("planner", cfg, [], [{"role": "user", "content": "x"}]))
    with pytest.raises(ConfigError, match="does not exist"):
        ScriptedModel.from_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"responses": [{"role": "boss", "content": []}]}')
    with pytest.raises(ConfigError, match=r"responses\[0\].role"):
        ScriptedModel.from_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="CHORDAL_LLM must be"):
        make_model(Settings.from_env({"CHORDAL_LLM": "gpt"}))
