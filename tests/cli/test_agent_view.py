"""The live view's line per agent step (``chordal run --follow``, ``chordal status``): built
from hand-made reports, read as a person would at 80 columns and on a narrow terminal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from planner.cli.view import ENDED, render
from planner.store.records import RunReport
from planner.vocabulary import TurnKind

NOW = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``seconds`` after the run was created (it was created 10 s before NOW)."""
    return NOW - timedelta(seconds=10) + timedelta(seconds=seconds)


def call(index: int, status: str, tool: str = "travel.availability",
         start: float | None = None, end: float | None = None, **more: Any) -> dict[str, Any]:
    return {"index": index, "id": f"toolu_{index}", "tool": tool,
            "args": {"hotel": f"h{index}", "nights": 2}, "status": status,
            "started_at": start if start is None else at(start),
            "finished_at": end if end is None else at(end), **more}


def turn(n: int, kind: str, start: float, end: float | None = None,
         calls: list[dict[str, Any]] | None = None, **more: Any) -> dict[str, Any]:
    return {"turn": n, "kind": kind, "started_at": at(start),
            "finished_at": None if end is None else at(end), "calls": calls or [], **more}


def report(status: str, turns: list[dict[str, Any]], step_status: str = "running",
           max_turns: int = 8) -> RunReport:
    return RunReport.model_validate({
        "run_id": "4f1c2a9e0b7d4e21a3c5", "status": status, "goal": "A weekend in Lisbon",
        "created_at": at(0), "plan_version": 1,
        "finished_at": None if status == "running" else at(10),
        "steps": {
            "hotels": {"status": "succeeded", "attempts": 1, "started_at": at(0),
                       "finished_at": at(1), "output": {"hotels": ["Casa do Largo"]}},
            "pick_hotel": {"status": step_status, "attempts": 1, "started_at": at(1),
                           "finished_at": None if step_status == "running" else at(10),
                           "agent": {"conversation": 0, "max_turns": max_turns,
                                     "turns": turns}}}})


def lines(r: RunReport, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(render(r, now=NOW))
    return console.export_text().splitlines()


def agent_line(r: RunReport, width: int = 80) -> str:
    found = [line for line in lines(r, width) if line.startswith("pick_hotel: ")]
    assert len(found) == 1, lines(r, width)
    return found[0]


def test_a_thinking_turn_says_which_turn_of_how_many_and_for_how_long() -> None:
    r = report("running", [
        turn(0, "tools", 1, 2, [call(0, "succeeded", start=2, end=3)]),
        turn(1, "thinking", 8.8)])
    assert agent_line(r) == "pick_hotel: turn 2/8 · thinking… 1.20s"
    r.steps["pick_hotel"].agent.turns[-1].tries = 2  # type: ignore[union-attr]
    assert agent_line(r) == "pick_hotel: turn 2/8 · thinking… 1.20s (try 2)"


def test_parallel_calls_show_as_one_tool_times_n_with_the_longest_running_time() -> None:
    r = report("running", [turn(0, "tools", 1, 2, [
        call(0, "running", start=9.6), call(1, "running", start=9.7),
        call(2, "pending", tool="travel.transfer"),
        call(3, "refused", tool="travel.nowhere", end=2)])])
    assert agent_line(r) == ("pick_hotel: turn 1/8 · travel.availability "
                             "\N{MULTIPLICATION SIGN}2 running 0.40s, 1 waiting, 1 done")


def test_calls_all_settled_wait_for_the_next_turn() -> None:
    r = report("running", [turn(0, "tools", 1, 2, [
        call(0, "succeeded", start=2, end=3), call(1, "failed", start=2, end=4)])])
    assert agent_line(r) == "pick_hotel: turn 1/8 · 2 tool calls done, next turn…"


def test_an_answered_agent_says_its_turns_calls_and_errors() -> None:
    r = report("succeeded", step_status="succeeded", turns=[
        turn(0, "tools", 1, 2, [call(0, "succeeded", start=2, end=3),
                                call(1, "failed", start=2, end=3,
                                     error={"type": "PermanentError", "message": "full"})]),
        turn(1, "tools", 3, 4, [call(0, "succeeded", tool="travel.transfer", start=4,
                                     end=5)]),
        turn(2, "final", 5, 6, text="Casa do Largo")])
    assert agent_line(r) == "pick_hotel: 3 turns · 3 tool calls (1 error) · answered"
    # Under the steps table, after the table's rows.
    shown = lines(r)
    assert shown.index(agent_line(r)) > max(i for i, line in enumerate(shown)
                                            if line.startswith("hotels "))


def test_an_agent_out_of_turns_or_cancelled_says_so() -> None:
    turns = [turn(0, "tools", 1, 2, [call(0, "succeeded", start=2, end=3)]),
             turn(1, "max_turns", 3, 4)]
    assert agent_line(report("failed", turns, step_status="failed", max_turns=2)) == \
        "pick_hotel: 2 turns · 1 tool call · out of turns"
    turns = [turn(0, "tools", 1, 2, [call(0, "succeeded", start=2, end=3),
                                     call(1, "cancelled")])]
    assert agent_line(report("cancelled", turns, step_status="cancelled")) == \
        "pick_hotel: 1 turn · 2 tool calls (1 cancelled) · cancelled"
    turns[0]["calls"].append(call(2, "running", start=2))
    assert agent_line(report("cancelled", turns, step_status="cancelled")) == \
        "pick_hotel: 1 turn · 3 tool calls (1 cancelled, 1 still running) · cancelled"


def test_a_running_agent_with_no_turn_yet_is_starting_and_other_steps_have_no_line() -> None:
    r = report("running", [])
    assert agent_line(r) == "pick_hotel: turn 1/8 · starting…"
    assert not [line for line in lines(r) if line.startswith("hotels: ")]


def test_the_line_is_cut_at_the_terminal_width_never_wrapped() -> None:
    calls = [call(i, "running", tool=f"travel.a_rather_long_tool_name_{i}", start=9)
             for i in range(5)]
    r = report("running", [turn(0, "tools", 1, 2, calls)])
    for width in (80, 50):
        line = agent_line(r, width)
        assert len(line) == width and line.endswith("…")
        assert max(map(len, lines(r, width))) <= width


def test_every_turn_kind_has_words_in_the_view() -> None:
    assert set(TurnKind) <= set(ENDED)
