"""An agent step on the run page, in real headless Chromium: a sub-lane per tool call under
its lane (a bar coloured by the call's status, a dot for a refused call), ticks where its
turns ended, calls kept out of the "parallel" curve, and the details panel's Turns.

Two seams. A run seeded through the run store's own scripts (begin_turn, record_turn,
begin_call, finish_call: what the engine's tasks call), followed live by the page through
``chordal serve``'s event stream and report. And, for times and layout the scripts cannot
be made to take (they stamp Redis's clock), a real run whose report the browser receives
is a RunReport built here (served through Playwright's routing)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from planner.language.plan import Plan
from planner.options import RunOptions
from planner.store.records import ErrorRecord, RunReport
from planner.store.runs import NewCall, RunStore
from planner.vocabulary import RunStatus
from tests import redis_server
from tests.page.conftest import DB, Served, Tab, until

# Computed fills of app.css's --<status> colours.
GREEN, RED, AMBER = "rgb(5, 150, 105)", "rgb(220, 38, 38)", "rgb(217, 119, 6)"
PURPLE = "rgb(124, 58, 237)"

SEED = {"goal": "A run whose report the test replaces", "steps": [
    {"id": "seed", "tool": "echo", "args": {"value": 1}}]}
PLAN = {"goal": "A weekend in Lisbon", "steps": [
    {"id": "hotels", "tool": "echo", "args": {"value": {"hotels": ["Casa do Largo",
                                                                   "Lx Rooms"]}}},
    {"id": "pick_hotel", "tool": "agent", "description": "Pick the hotel",
     "args": {"task": "pick the hotel that fits the budget",
              "tools": ["travel.availability", "travel.transfer"],
              "context": {"hotels": {"$ref": "hotels.hotels"}}}},
    {"id": "hotel_cost", "tool": "echo", "args": {"value": {"$ref": "pick_hotel"}}},
]}


def _call(index: int, tool: str, status: str, start: datetime | None,
          end: datetime | None, **more: Any) -> dict[str, Any]:
    return {"index": index, "id": f"toolu_{index}", "tool": tool, "status": status,
            "args": {"hotel": ["Casa do Largo", "Lx Rooms", "Nowhere"][index % 3],
                     "nights": 2},
            "attempts": 0 if start is None else 1, "started_at": start, "finished_at": end,
            "worker": None if start is None else "celery@w1", **more}


def agent_report(run_id: str, running: bool) -> dict[str, Any]:
    """An agent run as GET /v1/runs/{id} would give it: ended (3 turns, 4 calls: one
    failed, one refused), or running (turn 2's call running, turn 1's ended)."""
    now = datetime.now(UTC)
    t0 = now - timedelta(seconds=8.6 if running else 20)

    def at(s: float) -> datetime:
        return t0 + timedelta(seconds=s)

    first = {"turn": 0, "kind": "tools", "text": "Checking both candidates.",
             "started_at": at(1), "finished_at": at(2), "tries": 1, "worker": "celery@w1",
             "usage": {"input_tokens": 900, "output_tokens": 60}, "calls": [
                 _call(0, "travel.availability", "succeeded", at(2), at(4),
                       output={"hotel": "Casa do Largo", "available": True,
                               "rooms_left": 3}),
                 _call(1, "travel.availability", "failed", at(2), at(3.5),
                       error={"type": "PermanentError", "message": "no rooms for 2 nights"}),
                 _call(2, "travel.nowhere", "refused", None, at(2),
                       error={"type": "InvalidInput",
                              "message": "no tool 'travel.nowhere' here"})]}
    second = {"turn": 1, "kind": "tools", "text": "Casa do Largo is free.",
              "started_at": at(4), "finished_at": at(5), "tries": 1, "calls": [
                  _call(0, "travel.transfer", "running" if running else "succeeded", at(5),
                        None if running else at(6),
                        **({} if running else {"output": {"minutes": 25}}))]}
    third = {"turn": 2, "kind": "final", "text": '{"hotel": "Casa do Largo"}',
             "started_at": at(6), "finished_at": at(7), "tries": 1, "calls": []}
    agent = {"conversation": 0, "max_turns": 8,
             "turns": [first, second] if running else [first, second, third]}
    steps: dict[str, Any] = {
        "hotels": {"status": "succeeded", "attempts": 1, "started_at": at(0),
                   "finished_at": at(1), "output": {"hotels": ["Casa do Largo"]}},
        "pick_hotel": {"status": "running" if running else "succeeded", "attempts": 1,
                       "started_at": at(1), "finished_at": None if running else at(8),
                       "output": None if running else {"hotel": "Casa do Largo"},
                       "agent": agent},
        "hotel_cost": {"status": "pending" if running else "succeeded",
                       "attempts": 0 if running else 1,
                       "started_at": None if running else at(8.5),
                       "finished_at": None if running else at(9), "output": 1}}
    report = RunReport.model_validate({
        "run_id": run_id, "status": "running" if running else "succeeded",
        "goal": PLAN["goal"], "plan_version": 1, "plan": PLAN, "created_at": t0,
        "finished_at": None if running else at(10), "steps": steps,
        "versions": [{"version": 1, "reason": "planned",
                      "added": ["hotels", "pick_hotel", "hotel_cost"]}]})
    return report.model_dump(mode="json")


def open_agent_run(served: Served, tab: Tab, running: bool) -> None:
    run_id = served.create({"plan": SEED})
    served.wait(run_id)
    body = agent_report(run_id, running)

    def serve(route: Any) -> None:
        route.fulfill(json=body, headers={"Cache-Control": "no-store"})

    tab.page.route(f"{served.url}/v1/runs/{run_id}", serve)
    tab.open(f"/runs/{run_id}")
    tab.enter_key()
    tab.wait_run(body["status"])


@pytest.fixture
def agent_tab(tab: Tab) -> Iterator[Tab]:
    yield tab
    # The page may still ask for the report as the test ends: no answer after the tab.
    tab.page.unroute_all(behavior="ignoreErrors")


def fill(tab: Tab, selector: str) -> str:
    # Found and read in one go: a running run's timeline is redrawn twice a second.
    return str(tab.page.evaluate(
        "sel => getComputedStyle(document.querySelector(sel)).fill", selector))


def test_an_agent_steps_calls_are_sub_lanes_under_its_lane(served: Served, agent_tab: Tab) -> None:
    tab = agent_tab
    open_agent_run(served, tab, running=False)
    page = tab.page
    lanes = page.locator('g.sublane[data-step="pick_hotel"]')
    assert lanes.count() == 4
    labels = lanes.locator("text.sublbl").evaluate_all(
        "els => els.map(e => e.firstChild.textContent)")
    assert labels == ["↳ t1 travel.availability", "↳ t1 travel.availability",
                      "↳ t1 travel.nowhere", "↳ t2 travel.transfer"]
    # Bars by status; the refused call never ran: a dot, no bar.
    call = 'g.sublane[data-turn="{}"][data-call="{}"] {}'
    assert fill(tab, call.format(0, 0, "rect.callbar")) == GREEN
    assert fill(tab, call.format(0, 1, "rect.callbar")) == RED
    assert page.locator(call.format(0, 2, "rect")).count() == 0
    assert fill(tab, call.format(0, 2, "circle.calldot")) == PURPLE
    # The two parallel calls start together; the first ends later (4 s vs 3.5 s).
    box = [page.locator(call.format(0, i, "rect.callbar")).bounding_box() for i in (0, 1)]
    assert box[0] and box[1] and box[0]["x"] == box[1]["x"]
    assert box[0]["width"] > box[1]["width"]
    # The sub-lanes lie between pick_hotel's bar and the next step's.
    bar = page.locator('rect.bar[data-step="pick_hotel"]').bounding_box()
    after = page.locator('rect.bar[data-step="hotel_cost"]').bounding_box()
    subs = [page.locator(call.format(t, i, "")).first.bounding_box()
            for t, i in ((0, 0), (1, 0))]
    assert bar and after and subs[0] and subs[1]
    assert bar["y"] + bar["height"] <= subs[0]["y"] < subs[1]["y"] < after["y"]
    # A tick on the agent's bar where each turn ended, inside the bar.
    ticks = page.locator('g.lane[data-step="pick_hotel"] line.turntick')
    assert ticks.evaluate_all("els => els.map(e => e.dataset.kind)") == [
        "tools", "tools", "final"]
    xs = [t["x"] for t in (ticks.nth(i).bounding_box() for i in range(3)) if t]
    assert bar["x"] < xs[0] < xs[1] < xs[2] < bar["x"] + bar["width"]
    # Calls are not steps: the three steps ran one after the other.
    assert tab.page.text_content("#peak") == "parallel (peak 1)"

    # The details panel: each turn, its text, its calls with args and results or errors.
    page.click('rect.bar[data-step="pick_hotel"]')
    turns = page.locator("#turns > li.turn")
    assert turns.count() == 3
    first = turns.nth(0).inner_text()
    assert "turn 1" in first and "called tools" in first and "Checking both candidates." in first
    assert "960 tokens" in first
    calls = turns.nth(0).locator("li.call")
    assert calls.evaluate_all("els => els.map(e => e.dataset.status)") == [
        "succeeded", "failed", "refused"]
    assert '"rooms_left": 3' in calls.nth(0).inner_text()
    assert calls.nth(0).locator(".callargs").inner_text() == \
        'args {"hotel":"Casa do Largo","nights":2}'
    assert "PermanentError: no rooms for 2 nights" in calls.nth(1).inner_text()
    assert "no tool 'travel.nowhere' here" in calls.nth(2).inner_text()
    assert "answered" in turns.nth(2).inner_text()
    assert page.locator("#step-error").count() == 0  # the step itself has no error
    assert page.locator("#details h2", has_text="Turns").text_content() == \
        "Turns (3 of at most 8 · 4 tool calls)"


def test_a_running_call_is_a_running_bar_that_goes_on(served: Served, agent_tab: Tab) -> None:
    tab = agent_tab
    open_agent_run(served, tab, running=True)
    page = tab.page
    running = 'g.sublane[data-turn="1"][data-call="0"]'
    assert page.locator(running).get_attribute("data-status") == "running"
    assert fill(tab, f"{running} rect.callbar") == AMBER
    assert page.evaluate("sel => document.querySelector(sel).textContent",
                         f"{running} text.subnote").endswith("…")
    # Its bar grows with the clock (the page redraws running bars; nothing is fetched).
    width = f"document.querySelector('{running} rect.callbar').getBBox().width"
    until(page, f"w => {width} > w", page.evaluate(width))
    # Turn 2 has not ended: two ticks, turn 1's calls already settled.
    assert page.locator('g.lane[data-step="pick_hotel"] line.turntick').count() == 2
    assert page.locator('g.sublane[data-status="succeeded"] rect.callbar').count() == 1


def test_a_run_seeded_through_the_store_scripts_is_followed_turn_by_turn(
        served: Served, tab: Tab) -> None:
    store = RunStore.from_url(redis_server.url(DB))
    plan = Plan.model_validate({"goal": PLAN["goal"], "steps": PLAN["steps"][:2]})
    run_id = store.create_run(plan.goal, plan, options=RunOptions(owner="alice"))
    assert store.start_run(run_id)
    assert store.begin_step(run_id, "hotels", 1, "w", 1, task_id="H").state == "run"
    store.finish_step(run_id, "hotels", output={"hotels": ["Casa do Largo"]}, worker="w")
    assert store.begin_step(run_id, "pick_hotel", 1, "w", 3, task_id="S").state == "run"
    agent = (run_id, "pick_hotel", 0)
    # Turn 0: two calls and a refused one; one succeeds, one fails.
    assert store.begin_turn(*agent, 0, "w", task_id="S", attempt=1).state == "run"
    store.record_turn(*agent, 0, "S", kind="tools", text="Checking both candidates.",
                      usage={"input_tokens": 900, "output_tokens": 60}, latency_ms=800,
                      calls=[NewCall(0, "travel.availability", {"hotel": "Casa do Largo"},
                                     id="tu0", queue="io"),
                             NewCall(1, "travel.availability", {"hotel": "Lx Rooms"},
                                     id="tu1", queue="io"),
                             NewCall(2, "travel.nowhere", {}, id="tu2", refused=ErrorRecord(
                                 type="CallRefused", message="no tool 'travel.nowhere' here"))])
    for index in (0, 1):
        assert store.begin_call(*agent, 0, index, f"celery@w{index}", 3,
                                task_id=f"C{index}").state == "run"
    store.finish_call(*agent, 0, 0, outcome="succeeded", attempt=1,
                      output={"available": True, "rooms_left": 3})
    store.finish_call(*agent, 0, 1, outcome="failed", attempt=1,
                      error=ErrorRecord(type="PermanentError", message="no rooms"))
    # Turn 1: one call, still running when the page opens.
    assert store.begin_turn(*agent, 1, "w", task_id="T1").state == "run"
    store.record_turn(*agent, 1, "T1", kind="tools", text="Casa do Largo is free.",
                      calls=[NewCall(0, "travel.transfer", {"hotel": "Casa do Largo"},
                                     id="tu3", queue="io")])
    assert store.begin_call(*agent, 1, 0, "celery@w0", 3, task_id="C3").state == "run"

    tab.open(f"/runs/{run_id}")
    tab.enter_key()
    tab.wait_status("pick_hotel", "running")
    page = tab.page
    page.wait_for_selector('g.sublane[data-turn="1"][data-call="0"][data-status="running"]',
                           state="attached")
    assert page.locator('g.sublane[data-step="pick_hotel"]').count() == 4

    # The call returns, turn 2 answers, the run ends: the page follows the events.
    store.finish_call(*agent, 1, 0, outcome="succeeded", attempt=1, output={"minutes": 25})
    assert store.begin_turn(*agent, 2, "w", task_id="T2").state == "run"
    store.record_turn(*agent, 2, "T2", kind="final", text="Casa do Largo it is.",
                      answer={"hotel": "Casa do Largo"})
    store.finish_step(run_id, "pick_hotel", output={"hotel": "Casa do Largo"}, worker="w")
    assert store.finish_run(run_id, RunStatus.SUCCEEDED, answer="Casa do Largo")
    tab.wait_run("succeeded")
    statuses = page.locator('g.sublane[data-step="pick_hotel"]').evaluate_all(
        "els => els.map(e => e.dataset.status)")
    assert statuses == ["succeeded", "failed", "refused", "succeeded"]
    assert page.locator('g.sublane[data-status="refused"] circle.calldot').count() == 1
    assert page.locator('g.sublane[data-status="failed"] rect.callbar').count() == 1
    assert page.locator('g.lane[data-step="pick_hotel"] line.turntick').evaluate_all(
        "els => els.map(e => e.dataset.kind)") == ["tools", "tools", "final"]
    page.click('rect.bar[data-step="pick_hotel"]')
    turns = page.locator("#turns > li.turn")
    assert turns.count() == 3
    assert "Checking both candidates." in turns.nth(0).inner_text()
    assert "960 tokens" in turns.nth(0).inner_text()
    first = turns.nth(0).locator("li.call")
    assert "PermanentError: no rooms" in first.nth(1).inner_text()
    assert "CallRefused: no tool 'travel.nowhere' here" in first.nth(2).inner_text()
    assert '"minutes": 25' in turns.nth(1).inner_text()
    assert "Casa do Largo it is." in turns.nth(2).inner_text()
