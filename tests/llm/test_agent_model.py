"""An agent step's model side: its requests through the real anthropic SDK against the
local Messages API, the messages rebuilt from stored turns, the answer read back, and
scripted agent conversations (design §7, §8)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from planner.errors import ConfigError, PermanentError
from planner.llm import AnthropicModel, ScriptedModel
from planner.llm.agent_answer import read_response
from planner.llm.agent_messages import (
    NOT_RUN,
    AgentTask,
    CallResult,
    Turn,
    tool_names,
)
from planner.llm.model import ModelResponse, Usage
from planner.llm.roles import agent_request, prompt
from planner.llm.scripted import cassette, exchange
from planner.settings import Settings
from planner.store.agent_records import AgentCall, AgentTurn
from planner.store.failure import ErrorRecord
from planner.tools.tool import Tool, ToolContext, tool
from tests.fake_anthropic import (
    API_KEY,
    FakeAnthropic,
    text,
    tool_result_problems,
    tool_results,
    tool_use,
    tool_uses,
    turn_of,
)

SETTINGS = Settings.from_env({})
SCHEMA = {"type": "object", "properties": {"hotel": {"type": "string"},
                                           "price": {"type": "number"}},
          "required": ["hotel", "price"]}


@tool(name="travel.availability")
def availability(hotel: str, nights: int = 1) -> dict[str, Any]:
    """Whether a hotel has rooms, and their price."""
    return {"hotel": hotel, "rooms_left": 2, "price_total": 120.0 * nights}


@tool(name="travel.transfer")
def transfer(hotel: str) -> dict[str, Any]:
    """Minutes from the airport to a hotel."""
    return {"hotel": hotel, "minutes": 25}


TOOLS: dict[str, Tool] = {t.name: t for t in (availability, transfer)}
SPEC = AgentTask(task="pick the cheaper free hotel", context={"hotels": ["A", "B"]},
                 tools=["travel.transfer", "travel.availability"], output_schema=SCHEMA)


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(lambda role, body: text("unused"), check_tool_results=True)
    yield server
    server.close()


def claude(fake: FakeAnthropic) -> AnthropicModel:
    return AnthropicModel(timeout_s=10, max_retries=0, api_key=API_KEY, base_url=fake.url)


def run_tools(response: ModelResponse, kind: str = "tools") -> Turn:
    """The engine's part, played here: run each call and record the turn."""
    reading = read_response(response, tool_names(SPEC), SPEC.output_schema)
    calls = []
    for call in reading.calls:
        try:
            output = TOOLS[call.tool].invoke(call.args, ToolContext("run", "pick", 1))
            calls.append(CallResult(call.id, "succeeded", output=output))
        except Exception as exc:  # the model sees any tool error
            calls.append(CallResult(call.id, "failed", error=f"{type(exc).__name__}: {exc}"))
    return Turn(kind, response.content, calls, list(reading.problems) or None)


def test_the_request_carries_the_tools_sorted_and_the_task(fake):
    request = agent_request(SETTINGS, SPEC, [], TOOLS, None, step="pick")
    assert (request.role, request.step, request.tool_choice) == ("executor", "pick",
                                                                 {"type": "auto"})
    assert [t["name"] for t in request.tools] == ["travel_availability", "travel_transfer",
                                                  "final_answer"]
    assert [("cache_control" in t) for t in request.tools] == [False, False, True]
    assert request.tools[-1]["input_schema"]["properties"]["answer"] == SCHEMA
    assert request.system[0]["text"] == prompt("agent")
    [first] = request.messages
    [block] = first["content"]
    assert block["text"].startswith("Task: pick the cheaper free hotel\n\nContext (JSON):")
    assert '"required": [\n  "hotel",' in block["text"]  # the answer's schema is shown
    assert block["cache_control"] == {"type": "ephemeral"}
    fake.serve(lambda role, body: text("fine"))
    assert claude(fake).complete(request).text() == "fine"
    [seen] = fake.requests
    assert seen.status == 200 and seen.role == "executor"
    assert seen.body["tools"] == request.tools and "step" not in seen.body
    assert seen.body["tool_choice"] == {"type": "auto"}


def test_the_fake_refuses_what_the_api_refuses(fake):
    request = agent_request(SETTINGS, SPEC, [], TOOLS)
    bad = [{**request.tools[0], "name": "travel.availability"}, *request.tools[1:]]
    with pytest.raises(PermanentError, match="String should match pattern"):
        claude(fake).complete(type(request)(request.role, request.config, request.system,
                                            request.messages, bad, request.tool_choice))
    with pytest.raises(ConfigError, match=r"travel\.flights are not registered"):
        agent_request(SETTINGS, AgentTask("t", tools=["travel.flights"]), [], TOOLS)


def test_parallel_tool_uses_come_back_as_calls_under_the_tools_names(fake):
    fake.serve(lambda role, body: tool_uses(("travel_availability", {"hotel": "A"}),
                                            ("travel_availability", {"hotel": "B"}),
                                            ("travel_transfer", {"hotel": "A"})))
    response = claude(fake).complete(agent_request(SETTINGS, SPEC, [], TOOLS))
    assert response.stop_reason == "tool_use"
    reading = read_response(response, tool_names(SPEC), SCHEMA)
    assert not reading.answered
    assert [(c.index, c.tool, c.args) for c in reading.calls] == [
        (0, "travel.availability", {"hotel": "A"}), (1, "travel.availability", {"hotel": "B"}),
        (2, "travel.transfer", {"hotel": "A"})]
    assert len({c.id for c in reading.calls}) == 3 and all(c.id for c in reading.calls)


def test_a_conversation_round_trips_errors_and_a_repair_with_every_tool_use_answered(fake):
    """Turn 0 asks for three calls (one fails); turn 1 answers off its schema together with
    another call; turn 2 repairs. The fake refuses any unanswered tool_use (strict)."""
    answers = {
        0: tool_uses(("travel_availability", {"hotel": "A", "nights": 2}),
                     ("travel_availability", {"hotel": "B", "nights": "many"}),
                     ("travel_transfer", {"hotel": "A"})),
        1: tool_uses(("travel_transfer", {"hotel": "B"}),
                     ("final_answer", {"answer": {"hotel": "A", "price": "cheap"}})),
        2: tool_use("final_answer", {"answer": {"hotel": "A", "price": 240.0}}),
    }
    fake.serve(lambda role, body: answers[turn_of(body)])
    model, turns = claude(fake), []
    turn0 = model.complete(agent_request(SETTINGS, SPEC, turns, TOOLS, step="pick"))
    turns.append(run_tools(turn0))
    assert [c.status for c in turns[0].calls] == ["succeeded", "failed", "succeeded"]
    turn1 = model.complete(agent_request(SETTINGS, SPEC, turns, TOOLS, step="pick"))
    reading = read_response(turn1, tool_names(SPEC), SCHEMA)
    assert reading.answered and reading.problems == ("answer.price: 'cheap' is not of type "
                                                     "'number'",)
    turns.append(Turn("repair", turn1.content, [], list(reading.problems)))
    turn2 = model.complete(agent_request(SETTINGS, SPEC, turns, TOOLS, step="pick"))
    final = read_response(turn2, tool_names(SPEC), SCHEMA)
    assert (final.answered, final.answer, final.problems) == (
        True, {"hotel": "A", "price": 240.0}, ())

    assert [r.status for r in fake.requests] == [200, 200, 200]
    for seen in fake.requests:
        assert tool_result_problems(seen.body["messages"]) == []
    results1 = tool_results(fake.requests[1].body)
    ids0 = [b["id"] for b in turn0.content]
    assert [r["tool_use_id"] for r in results1] == ids0
    assert json.loads(results1[0]["content"]) == {"hotel": "A", "rooms_left": 2,
                                                  "price_total": 240.0}
    assert results1[1]["is_error"] is True and results1[1]["content"].startswith(
        "PermanentError: travel.availability: bad arguments:")
    assert "is_error" not in results1[0] and "is_error" not in results1[2]
    assert results1[-1]["cache_control"] == {"type": "ephemeral"}
    results2 = tool_results(fake.requests[2].body)
    assert results2[0]["content"] == NOT_RUN and results2[0]["is_error"] is True
    assert results2[1]["is_error"] is True
    assert "- answer.price: 'cheap' is not of type 'number'" in results2[1]["content"]
    # Only the newest user message is a cache breakpoint; the assistant blocks are verbatim.
    messages = fake.requests[2].body["messages"]
    marked = [n for n, m in enumerate(messages) for b in m["content"] if "cache_control" in b]
    assert marked == [len(messages) - 1]
    assert messages[1]["content"] == turn0.content and messages[3]["content"] == turn1.content


def test_the_store_s_turns_fit_as_they_are_refused_calls_included():
    content = [{"type": "text", "text": "two lookups"},
               {"type": "tool_use", "id": "u1", "name": "travel_availability",
                "input": {"hotel": "A"}},
               {"type": "tool_use", "id": "u2", "name": "travel_flights", "input": {}}]
    turn = AgentTurn(turn=0, kind="refused", content=content, calls=[
        AgentCall(index=0, id="u1", tool="travel.availability", status="succeeded",
                  output="ok"),
        AgentCall(index=1, id="u2", tool="travel_flights", status="refused",
                  error=ErrorRecord(type="InvalidCall", message="no tool 'travel_flights' "
                                    "here; this step may call: travel.availability"))])
    thinking = AgentTurn(turn=1)
    messages = agent_request(SETTINGS, SPEC, [turn, thinking], TOOLS).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert tool_result_problems(messages) == []
    assert messages[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "u1", "content": '"ok"'},
        {"type": "tool_result", "tool_use_id": "u2", "is_error": True,
         "content": "InvalidCall: no tool 'travel_flights' here; this step may call: "
                    "travel.availability", "cache_control": {"type": "ephemeral"}}]


def test_a_long_result_is_cut_saying_how_much():
    settings = Settings.from_env({"CHORDAL_AGENT_RESULT_CHARS": "200"})
    use = {"type": "tool_use", "id": "u1", "name": "travel_availability", "input": {}}
    big = {"rows": ["x" * 50] * 20}
    whole = json.dumps(big)
    turn = Turn("tools", [use], [CallResult("u1", "succeeded", output=big)])
    [result] = agent_request(settings, SPEC, [turn], TOOLS).messages[-1]["content"]
    assert result["content"] == f"{whole[:200]}… [cut: 200 of {len(whole)} characters]"
    short = Turn("tools", [use], [CallResult("u1", "succeeded", output={"a": 1})])
    assert agent_request(settings, SPEC, [short], TOOLS).messages[-1]["content"][0][
        "content"] == '{"a": 1}'


def test_a_repair_of_a_text_answer_is_a_user_text_naming_the_problems():
    said = [{"type": "text", "text": "It is hotel A."}]
    response = ModelResponse(said, Usage(), "m")
    reading = read_response(response, tool_names(SPEC), SCHEMA)
    assert reading.answered and reading.answer is None
    assert reading.problems[0].startswith("the answer is not JSON (Expecting value")
    turn = Turn("repair", said, [], list(reading.problems))
    messages = agent_request(SETTINGS, SPEC, [turn], TOOLS).messages
    assert messages[1] == {"role": "assistant", "content": said}
    [block] = messages[2]["content"]
    assert block["type"] == "text" and "- the answer is not JSON" in block["text"]
    assert "Call `final_answer` once more" in block["text"]


@pytest.mark.parametrize(("said", "answer"), [
    ('```json\n{"hotel": "A", "price": 1}\n```', {"hotel": "A", "price": 1}),
    ('Here it is:\n```\n{"hotel": "B", "price": 2.5}\n```\nDone.', {"hotel": "B", "price": 2.5}),
    ('{"hotel": "C", "price": 3}', {"hotel": "C", "price": 3}),
])
def test_an_answer_given_as_text_is_read_as_json_when_there_is_a_schema(said, answer):
    response = ModelResponse([{"type": "text", "text": said}], Usage(), "m")
    reading = read_response(response, tool_names(SPEC), SCHEMA)
    assert (reading.answered, reading.answer, reading.problems) == (True, answer, ())


def test_without_a_schema_the_answer_is_the_text_of_a_response_without_tool_use():
    spec = AgentTask("t", tools=["travel.transfer"])
    assert "final_answer" not in tool_names(spec)
    answer = read_response(ModelResponse([{"type": "text", "text": "A, 25 min"}], Usage(), "m"),
                           tool_names(spec), None)
    assert (answer.answered, answer.answer) == (True, "A, 25 min")
    asked = read_response(ModelResponse(
        [{"type": "text", "text": "checking"},
         {"type": "tool_use", "id": "u", "name": "final_answer", "input": {}}], Usage(), "m"),
        tool_names(spec), None)
    assert not asked.answered and [c.tool for c in asked.calls] == ["final_answer"]


def test_the_pairing_check_catches_an_unanswered_tool_use():
    use = {"type": "tool_use", "id": "u1", "name": "x", "input": {}}
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": [use]},
                {"role": "user", "content": [{"type": "text", "text": "well?"}]}]
    assert tool_result_problems(messages) == [
        "messages.2: tool_use ids ['u1'] need one tool_result each, first in the message; "
        "it starts with []"]


def test_usage_from_body_counts_what_was_sent():
    server = FakeAnthropic(lambda role, body: text("ok"), usage_from_body=True)
    try:
        response = claude(server).complete(agent_request(SETTINGS, SPEC, [], TOOLS))
        body = server.requests[0].body
        sent = [body.get("system"), body.get("tools"), body.get("messages")]
        assert response.usage.input_tokens == len(json.dumps(sent)) // 4 > 100
    finally:
        server.close()


AGENT_FILE = {"responses": [
    {"role": "executor", "step": "pick_hotel", "turn": 0, "content": [
        {"type": "text", "text": "Checking both."},
        {"type": "tool_use", "name": "travel_availability", "input": {"hotel": "A"}},
        {"type": "tool_use", "name": "travel_availability", "input": {"hotel": "B"}}]},
    {"role": "executor", "step": "pick_hotel", "turn": 1, "match": "rooms_left",
     "content": [{"type": "tool_use", "name": "final_answer",
                  "input": {"answer": {"hotel": "A", "price": 120.0}}}]},
    {"role": "executor", "content": [{"type": "text", "text": "any step, any turn"}]}]}


def test_a_scripted_agent_conversation_by_step_and_turn(tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(AGENT_FILE))
    model = ScriptedModel.from_file(path)
    turn0 = model.complete(agent_request(SETTINGS, SPEC, [], TOOLS, step="pick_hotel"))
    assert turn0.stop_reason == "tool_use"
    assert [b.get("id") for b in turn0.content] == [None, "toolu_pick_hotel_0_0",
                                                    "toolu_pick_hotel_0_1"]
    assert "id" not in AGENT_FILE["responses"][0]["content"][1]  # the file stays as read
    turns = [run_tools(turn0)]
    turn1 = model.complete(agent_request(SETTINGS, SPEC, turns, TOOLS, step="pick_hotel"))
    assert turn1.stop_reason == "tool_use" and turn1.content[0]["id"] == "toolu_pick_hotel_1_0"
    assert read_response(turn1, tool_names(SPEC), SCHEMA).answer == {"hotel": "A",
                                                                     "price": 120.0}
    # Another step gets only the response without a step; a file without steps as before.
    other = model.complete(agent_request(SETTINGS, SPEC, [], TOOLS, step="other"))
    assert (other.text(), other.stop_reason) == ("any step, any turn", "end_turn")
    strict = ScriptedModel(AGENT_FILE["responses"][:2])
    with pytest.raises(PermanentError, match=r"request \(step 'other', turn 0; .*responses"
                                              r"\[0\]: it answers step 'pick_hotel'"):
        strict.complete(agent_request(SETTINGS, SPEC, [], TOOLS, step="other"))


def test_a_cassette_keeps_each_step_s_answers_apart():
    def call(step: str, answer: str) -> dict[str, Any]:
        request = agent_request(SETTINGS, SPEC, [], TOOLS, step=step)
        return exchange(request, ModelResponse(
            [{"type": "tool_use", "id": f"id_{step}", "name": "travel_transfer",
              "input": {"hotel": answer}}], Usage(1, 1), "m", "tool_use"), step)

    exchanges = [call("north", "A"), call("south", "B"), call("north", "A")]
    data = cassette(exchanges)
    assert [(r["step"], r["turn"]) for r in data["responses"]] == [("north", 0), ("south", 0)]
    model = ScriptedModel(data["responses"])
    for step, hotel in [("south", "B"), ("north", "A")]:
        response = model.complete(agent_request(SETTINGS, SPEC, [], TOOLS, step=step))
        assert response.content[0]["input"] == {"hotel": hotel}
        assert response.content[0]["id"] == f"id_{step}" and response.stop_reason == "tool_use"


_STATUSES = ["succeeded", "failed", "refused", "pending", "cancelled", None]


@st.composite
def conversations(draw: st.DrawFn) -> list[Turn]:
    """Done turns of any shape: text and tool_use blocks in any order, calls with any
    status or none recorded, repair turns with or without a final_answer block."""
    turns = []
    for t in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["tools", "refused", "repair", "thinking"]))
        content: list[dict[str, Any]] = []
        calls = []
        for i in range(draw(st.integers(0, 4))):
            if draw(st.booleans()):
                content.append({"type": "text", "text": f"note {i}"})
            name = draw(st.sampled_from(["travel_transfer", "final_answer", "nope"]))
            use_id = f"toolu_{t}_{i}"
            content.append({"type": "tool_use", "id": use_id, "name": name, "input": {}})
            status = draw(st.sampled_from(_STATUSES))
            if status is not None:
                calls.append(CallResult(use_id, status, output={"i": i},
                                        error=None if status == "succeeded" else "E: no"))
        turns.append(Turn(kind, content, calls, ["p"] if kind == "repair" else None))
    return turns


@given(conversations())
@hsettings(max_examples=200, deadline=None)
def test_every_tool_use_is_answered_whatever_the_turns(turns):
    messages = agent_request(SETTINGS, SPEC, turns, TOOLS).messages
    assert tool_result_problems(messages) == []
    done = [t for t in turns if t.kind != "thinking"]
    assert [m["role"] for m in messages] == ["user"] + ["assistant", "user"] * len(done)
    assert all(m["content"] for m in messages)
    marked = [n for n, m in enumerate(messages) for b in m["content"] if "cache_control" in b]
    assert marked == [len(messages) - 1]
