"""The README's examples are run, so they stay true."""

import json
import re
from pathlib import Path

from planner.language.validation import validate
from planner.tools import Tool

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_tool_snippet_defines_typed_tools():
    [snippet] = [b for b in blocks("python") if "@tool" in b]
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    hotels = namespace["find_hotels"]
    assert isinstance(hotels, Tool) and hotels.queue == "search"
    assert hotels.input_schema["required"] == ["city"]
    assert namespace["whoami"].context_param == "ctx"


def test_plan_format_example_is_valid(tools):
    [example] = [b for b in blocks("json") if '"goal"' in b and '"steps"' in b]
    valid = validate(json.loads(example), tools)
    assert valid.shape.steps == 3 and valid.shape.critical_path[-1] == "diff"
