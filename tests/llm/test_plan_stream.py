"""StepStream (planner/llm/plan_stream.py): a plan's steps read as each one closes, however
the JSON text is cut; and what the final plan contradicts of the early steps
(planner/engine/streaming.py, pure)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from planner.engine.streaming import contradicted
from planner.language.plan import Plan, Step
from planner.llm.plan_stream import StepStream
from planner.store.records import StepState
from planner.vocabulary import StepStatus

PLAN: dict[str, Any] = {
    "goal": 'tricky "[{" goal }]', "max_replans": 1,
    "steps": [
        {"id": "a", "tool": "echo", "args": {"value": '}] \\" {[', "n": [1, {"x": [2]}]}},
        {"id": "b", "tool": "echo", "args": {"value": {"$ref": "a.n"}},
         "description": "steps: [ not a key"},
        {"id": "c", "tool": "echo", "args": {}, "depends_on": ["a", "b"]},
    ],
    "after": {"steps": [{"id": "not a step"}]},
}


def feed_in(text: str, cuts: list[int]) -> list[tuple[int, Any]]:
    """Each step found, with the number of the piece that completed it."""
    stream, found, at = StepStream(), [], 0
    for n, cut in enumerate([*sorted(set(cuts)), len(text)]):
        found += [(n, s) for s in stream.feed(text[at:cut])]
        at = max(at, cut)
    return found


@given(st.lists(st.integers(0, 400), max_size=40), st.booleans())
def test_steps_come_whole_in_order_however_the_text_is_cut(cuts: list[int], indent: bool
                                                           ) -> None:
    text = json.dumps(PLAN, indent=2 if indent else None)
    found = feed_in(text, [c for c in cuts if c <= len(text)])
    assert [s for _, s in found] == PLAN["steps"]


def test_a_step_is_handed_back_by_the_piece_that_closes_it() -> None:
    text = json.dumps(PLAN)
    end_of_a = text.index('"id": "b"')
    found = feed_in(text, [end_of_a])
    assert [(n, s["id"]) for n, s in found] == [(0, "a"), (1, "b"), (1, "c")]


def test_nothing_but_the_top_level_steps_array_counts() -> None:
    stream = StepStream()
    assert stream.feed('{"goal": "g", "other": [{"id": "x"}], "steps": [1, "s", ') == []
    assert stream.feed('{"id": "y"}]}') == [{"id": "y"}]


def step(sid: str, value: Any = 1, *reads: str) -> Step:
    args: dict[str, Any] = {"value": [value, *[{"$ref": r} for r in reads]]}
    return Step(id=sid, tool="echo", args=args)


def test_what_the_final_plan_contradicts() -> None:
    early = {s.id: s for s in [step("keep"), step("gone"), step("changed", 3),
                               step("reader", 1, "changed"), step("late")]}
    final = Plan(goal="g", steps=[step("keep"), step("changed", 30),
                                  step("reader", 1, "changed"), step("late"), step("new")])
    ran = StepState(status=StepStatus.SUCCEEDED, attempts=1)
    states = {"keep": ran, "gone": ran, "changed": ran, "reader": ran,
              "late": StepState(), "new": StepState()}
    # "late" never started: the install itself runs it as the final plan reads it.
    assert contradicted(final, early, states) == {"gone": "drop", "changed": "reset",
                                                 "reader": "reset"}
    published = StepState(dispatched=True)
    assert contradicted(final, early, {**states, "late": published}) == {
        "gone": "drop", "changed": "reset", "reader": "reset"}
    assert contradicted(Plan(goal="g", steps=list(early.values())), early, states) == {}
