from typing import Any

import pytest
from pydantic import BaseModel

from planner.errors import ConfigError, PermanentError, TransientError
from planner.tools import Tool, ToolContext, ToolRegistry, load_registry, tool

CTX = ToolContext(run_id="r", step_id="s", attempt=1)


class Hotel(BaseModel):
    name: str
    price: float


@tool(queue="search", max_retries=5, timeout_s=12, transient=(KeyError,),
      permanent=(ConnectionRefusedError,))
def find_hotels(city: str, max_price: float = 200.0, limit: int = 3) -> list[Hotel]:
    """Find hotels in a city.

    More text that is not part of the short description."""
    return [Hotel(name=f"{city}-{i}", price=max_price - i) for i in range(limit)]


@tool(name="whoami")
def who(ctx: ToolContext, greeting: str) -> dict[str, Any]:
    """Say where we are."""
    return {"greeting": greeting, "run": ctx.run_id, "step": ctx.step_id,
            "attempt": ctx.attempt}


def test_schema_derived_from_signature_and_return_annotation():
    assert isinstance(find_hotels, Tool)
    schema = find_hotels.input_schema
    assert schema["required"] == ["city"]
    assert schema["properties"]["max_price"] == {"default": 200.0, "title": "Max Price",
                                                 "type": "number"}
    assert schema["additionalProperties"] is False
    out = find_hotels.output_schema
    assert out["type"] == "array"
    assert out["items"]["$ref"].endswith("/Hotel")
    assert find_hotels.description == "Find hotels in a city."
    assert (find_hotels.queue, find_hotels.max_retries, find_hotels.timeout_s) == \
        ("search", 5, 12)


def test_invoke_validates_and_returns_json_data():
    assert find_hotels.invoke({"city": "Porto", "limit": 1}, CTX) == \
        [{"name": "Porto-0", "price": 200.0}]
    with pytest.raises(PermanentError, match="bad arguments: limit"):
        find_hotels.invoke({"city": "Porto", "limit": "many"}, CTX)
    with pytest.raises(PermanentError, match="stars: Extra inputs"):
        find_hotels.invoke({"city": "Porto", "stars": 5}, CTX)


def test_context_is_injected_not_in_schema():
    assert "ctx" not in who.input_schema["properties"]
    ctx = ToolContext(run_id="r1", step_id="s9", attempt=3)
    assert who.invoke({"greeting": "hi"}, ctx) == {"greeting": "hi", "run": "r1",
                                                    "step": "s9", "attempt": 3}
    assert who.name == "whoami"


def test_error_classification():
    assert find_hotels.classify(KeyError()) is TransientError
    assert find_hotels.classify(TimeoutError()) is TransientError  # default transient
    assert find_hotels.classify(ConnectionRefusedError()) is PermanentError  # declared wins
    assert find_hotels.classify(ValueError()) is PermanentError
    assert who.classify(ConnectionResetError()) is TransientError
    assert who.classify(TransientError("x")) is TransientError
    assert find_hotels.classify(PermanentError("x")) is PermanentError


def test_registration_errors_are_clear():
    with pytest.raises(ConfigError, match="needs a type annotation"):
        tool(lambda x: x)
    with pytest.raises(ConfigError, match="needs a return annotation"):
        def no_return(x: int):
            return x
        tool(no_return)
    with pytest.raises(ConfigError, match="plain named"):
        def star(*xs: int) -> int:
            return 0
        tool(star)


def test_registry_from_modules_and_duplicates():
    reg = load_registry(["planner.tools.testing"])
    assert set(reg) == {"calculate", "llm", "http_request", "agent", "echo", "sleep", "fail",
                        "concat"}
    # testing tools only when named
    assert set(load_registry()) == {"calculate", "llm", "http_request", "agent"}
    other = ToolRegistry([find_hotels])

    @tool(name="find_hotels")
    def impostor(city: str) -> str:
        return city

    with pytest.raises(ConfigError, match="two tools are named 'find_hotels'"):
        other.add(impostor)
    with pytest.raises(ConfigError, match=r"CHORDAL_TOOL_MODULES: cannot import 'no\.such'"):
        load_registry(["no.such"])
    with pytest.raises(ConfigError, match="defines no tools"):
        load_registry(["json"])


def test_testing_tools(tools):
    assert tools["echo"].invoke({"value": {"a": [1]}}, CTX) == {"a": [1]}
    assert tools["sleep"].invoke({"seconds": 0}, CTX) == 0
    assert tools["sleep"].invoke({"seconds": 0.01, "value": "v"}, CTX) == "v"
    assert tools["concat"].invoke({"items": ["a", "b"]}, CTX) == "ab"
    assert tools["concat"].invoke({"items": [[1], [2, 3]]}, CTX) == [1, 2, 3]
    fail = tools["fail"]
    with pytest.raises(TransientError, match="attempt 1"):
        fail.invoke({"times": 2, "value": "ok"}, CTX)
    with pytest.raises(TransientError):
        fail.invoke({"times": 2}, ToolContext("r", "s", 2))
    assert fail.invoke({"times": 2, "value": "ok"}, ToolContext("r", "s", 3)) == "ok"
    with pytest.raises(PermanentError):
        fail.invoke({"times": -1, "kind": "permanent"}, ToolContext("r", "s", 99))
    with pytest.raises(PermanentError, match="bad arguments"):
        fail.invoke({"times": 1, "kind": "sometimes"}, CTX)


def test_calculate_tool(tools):
    assert tools["calculate"].invoke({"expression": "a * 2", "variables": {"a": 21}}, CTX) == 42
    assert tools["calculate"].max_retries == 0
