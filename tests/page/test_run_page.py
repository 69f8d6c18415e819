"""The run page in real headless Chromium against ``chordal serve``, a real worker and
Redis: a running plan's nodes change colour as its steps finish, a failed step shows its
error, a replanned run shows both versions, a dropped event stream resumes where it
stopped, and the key never leaves the Authorization header.

``UPDATE_SCREENSHOT=1 pytest tests/page -k replanned`` rewrites docs/run-page.png."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration.conftest import ROOT, _free_port
from tests.page.conftest import (
    ANSWER,
    KEY,
    OTHER_KEY,
    Served,
    Server,
    Tab,
    check_key_hygiene,
    new_tab,
    until,
)

# Computed fills of app.css's --<status>-fill colours.
PENDING, RUNNING = "rgb(243, 244, 246)", "rgb(254, 243, 199)"
SUCCEEDED, FAILED = "rgb(209, 250, 229)", "rgb(254, 226, 226)"

PARALLEL = {"goal": "Two lookups side by side, then a join", "synthesize": True, "steps": [
    {"id": "slow", "tool": "sleep", "args": {"seconds": 2.5, "value": "slow-done"},
     "description": "The slow lookup"},
    {"id": "fast", "tool": "sleep", "args": {"seconds": 0.8, "value": "fast-done"}},
    {"id": "join", "tool": "echo", "args": {"value": [{"$ref": "slow"}, {"$ref": "fast"}]}},
]}
FAILING = {"goal": "A step that fails for good", "steps": [
    {"id": "ok", "tool": "echo", "args": {"value": 1}},
    {"id": "bad", "tool": "fail", "args": {"times": -1, "kind": "permanent"},
     "depends_on": ["ok"], "on_failure": "fail"},
]}
WEEKEND = ("Plan a weekend in Lisbon for two, under 600 EUR, and say what the weather "
           "will be")
SCREENSHOT = ROOT / "docs" / "run-page.png"


def test_the_shells_and_static_files_need_no_key_and_allow_only_self(served: Served):
    modules = sorted(p.name for p in (ROOT / "planner" / "service" / "page").glob("*.js"))
    for path in ("/", "/runs/anything", "/static/app.css", "/static/vendor/dagre.min.js",
                 "/static/favicon.svg", *(f"/static/{name}" for name in modules)):
        reply = httpx.get(served.url + path)
        assert reply.status_code == 200, path
        csp = reply.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "http" not in csp and "unsafe" not in csp
    shell = httpx.get(served.url + "/runs/x").text
    # The page is ES modules (app.js imports the rest), served as JavaScript.
    assert "<script type=\"module\" src=\"/static/app.js\"" in shell and "<style" not in shell
    for name in modules:
        assert httpx.get(f"{served.url}/static/{name}").headers["content-type"].startswith(
            "text/javascript"), name
    for path in ("/static/../page.py", "/static/%2e%2e/page.py", "/static/index.html",
                 "/static/nothing.js"):
        assert httpx.get(served.url + path).status_code == 404, path
    # The API itself still wants the key.
    assert httpx.get(served.url + "/v1/runs").status_code == 401


def test_a_running_plan_changes_colour_as_its_steps_finish(served: Served, tab: Tab):
    run_id = served.create({"plan": PARALLEL})
    tab.open(f"/runs/{run_id}")
    tab.enter_key()                                   # the page asked: the API said 401
    tab.wait_status("slow", "running")
    assert tab.fill_of("slow") == RUNNING
    # The join waits for both; the fast branch finishes while the slow one still runs.
    tab.wait_status("fast", "succeeded")
    assert tab.attr('g.node[data-step="slow"]', "data-status") == "running"
    assert tab.fill_of("fast") == SUCCEEDED
    assert tab.fill_of("join") == PENDING
    assert tab.page.locator('path.edge[data-from="slow"][data-to="join"]').count() == 1
    tab.wait_status("slow", "succeeded")
    tab.wait_status("join", "succeeded")
    tab.wait_run("succeeded")
    assert tab.fill_of("slow") == SUCCEEDED
    assert tab.page.inner_text("#live") == "ended"
    # The timeline shows the two lookups overlapping.
    assert "peak 2" in tab.page.text_content("#peak")
    assert tab.page.locator("rect.bar.s-succeeded").count() == 3
    assert tab.page.inner_text("#answer-text") == ANSWER
    # Live from one event stream, never polled: one stream, a report per burst of events
    # at most, and nothing at all once the run has ended.
    assert len(tab.requested("/events")) == 1
    events = httpx.get(f"{served.url}/v1/runs/{run_id}/events", timeout=10,
                       headers={"Authorization": f"Bearer {KEY}"}).text.count("\nevent: ")
    reports = [u for u, _ in tab.requested(f"/v1/runs/{run_id}") if "/events" not in u]
    assert 2 <= len(reports) <= events + 2
    before = len(tab.requests)
    time.sleep(1.5)
    assert len(tab.requests) == before


def test_a_failed_step_shows_its_error(served: Served, tab: Tab):
    run_id = served.create({"plan": FAILING})
    assert served.wait(run_id)["status"] == "failed"
    tab.open(f"/runs/{run_id}")
    tab.enter_key()
    tab.wait_run("failed")
    assert tab.fill_of("bad") == FAILED
    assert tab.fill_of("ok") == SUCCEEDED
    message = "fail: attempt 1 of step 'bad' fails as asked (times=-1, kind=permanent)"
    problem = tab.page.inner_text('#problem-list li[data-step="bad"]')
    assert "PermanentError" in problem and message in problem
    assert "1 attempt" in problem
    assert message in tab.page.inner_text("#run-error")
    tab.page.click('g.node[data-step="bad"]')
    assert message in tab.page.inner_text("#step-error")
    assert "(attempt 1, permanent)" in tab.page.inner_text("#step-error")
    assert "#step=bad" in tab.page.url
    # An ended run is drawn from its report; its events are read once (they place the
    # plan versions on the timeline), and nothing is fetched again.
    assert len(tab.requested("/events")) == 1
    reports = [u for u, h in tab.requested(f"/v1/runs/{run_id}")
               if not u.endswith("/events") and "authorization" in h]
    assert len(reports) == 1
    assert tab.page.inner_text("#live") == "ended"
    assert tab.page.locator('.vmark[data-version="1"]').count() == 1


def test_a_replanned_run_shows_both_versions(served: Served, tab: Tab, browser: Any):
    """The README's demo with its scripted model and real tools: the primary weather
    service fails for good, the replanner routes around it, the synthesizer answers."""
    tab.open("/")
    tab.enter_key()
    tab.page.wait_for_selector("#runs")
    run_id = served.create({"goal": WEEKEND})
    tab.open(f"/runs/{run_id}")                       # the key is kept in the tab
    tab.wait_run("succeeded")
    page = tab.page
    # Both versions, with what the replan changed.
    assert page.locator("button.version").count() == 2
    v2 = page.inner_text('button.version[data-version="2"]')
    assert "replan" in v2 and "✗ weather" in v2 and "+weather_backup" in v2
    assert "\u2212weather" in v2 and "current" in v2  # a minus sign: dropped
    # The failed step of v1 stays in the DAG, marked as dropped, with its error.
    node = 'g.node[data-step="weather"]'
    assert tab.attr(node, "data-status") == "failed"
    assert "dropped" in (tab.attr(node, "class") or "")
    assert tab.attr(node, "data-versions") == "1"
    assert tab.attr('g.node[data-step="weather_backup"]', "data-versions") == "2"
    assert tab.attr('g.node[data-step="flights"]', "data-versions") == "1,2"
    assert tab.fill_of("weather") == FAILED
    assert tab.fill_of("weather_backup") == SUCCEEDED
    problem = page.inner_text('#problem-list li[data-step="weather"]')
    assert "503" in problem and "/primary/v1/forecast" in problem
    assert "2 attempts" in problem
    # Showing v1 dims what only v2 has.
    page.click('button.version[data-version="1"]')
    assert "dim" in (tab.attr('g.node[data-step="weather_backup"]', "class") or "")
    assert "dim" not in (tab.attr(node, "class") or "")
    page.click('button.version[data-version="1"]')
    # Tokens and cost by role, and the answer.
    roles = page.locator("#usage-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.role)")
    assert roles == ["executor", "planner", "replanner", "synthesizer", "total"]
    assert "$" in page.inner_text('#usage-table tr[data-role="total"]')
    assert "Your Lisbon weekend fits the budget" in page.inner_text("#answer-text")
    # When each version was installed, on the timeline.
    assert tab.page.locator(".vmark").evaluate_all(
        "marks => marks.map(m => m.dataset.version)") == ["1", "2"]
    # Flights, hotels and the weather service ran side by side.
    assert int(page.text_content("#peak").split("peak ")[1].rstrip(")")) >= 2

    page.click(node)                                  # the picture shows the failure
    page.wait_for_selector("#step-error")
    shot = page.screenshot(full_page=True)
    if os.environ.get("UPDATE_SCREENSHOT"):
        SCREENSHOT.write_bytes(shot)

    dropped_edge = 'path.edge[data-from="flights"][data-to="weather"]'
    assert page.locator(dropped_edge).count() == 1
    # A tab that never saw v1 still shows both versions' steps, and asks the API for v1's
    # plan to draw what the replan dropped with its edges.
    ctx, fresh = new_tab(browser, served.url)
    try:
        fresh.open(f"/runs/{run_id}")
        fresh.enter_key()
        fresh.wait_run("succeeded")
        assert fresh.attr(node, "data-status") == "failed"
        assert fresh.page.locator("button.version").count() == 2
        assert fresh.page.locator("g.node").count() == page.locator("g.node").count()
        fresh.page.wait_for_selector(dropped_edge, state="attached", timeout=10_000)
        assert len(fresh.requested(f"/v1/runs/{run_id}/plans/1")) == 1
        assert not fresh.requested(f"/v1/runs/{run_id}/plans/2")  # the report has v2
    finally:
        ctx.close()
    check_key_hygiene(fresh, KEY)
    assert not fresh.problems


def test_a_waiting_run_names_itself_in_the_commands_it_suggests(served: Served, tab: Tab):
    """Awaiting approval or paused at its budget: the page says how the run goes on with
    its own id, never a RUN_ID placeholder."""
    approval = served.create({"plan": PARALLEL, "approve": True})
    assert "RUN_ID" not in httpx.get(f"{served.url}/runs/{approval}").text  # the shell
    tab.open(f"/runs/{approval}")
    tab.enter_key()
    tab.wait_run("awaiting_approval")
    banner = tab.page.inner_text("#banner")
    assert f"chordal approve {approval}, or chordal reject {approval}" in banner
    assert f"POST /v1/runs/{approval}/approve" in banner
    assert "RUN_ID" not in tab.page.inner_text("body")
    paused = served.create({"goal": WEEKEND, "budget_tokens": 1, "on_budget": "pause"})
    tab.open(f"/runs/{paused}")
    tab.wait_run("paused")
    banner = tab.page.inner_text("#banner")
    assert f"chordal resume {paused} --budget-usd X" in banner
    assert f"chordal resume {paused}` with a new budget" in banner
    assert "RUN_ID" not in tab.page.inner_text("body")
    for rid in (approval, paused):
        httpx.post(f"{served.url}/v1/runs/{rid}/cancel", timeout=10,
                   headers={"Authorization": f"Bearer {KEY}"}).raise_for_status()


def test_a_dropped_event_stream_resumes_with_last_event_id(served: Served, tab: Tab):
    run_id = served.create({"plan": {"goal": "g", "steps": [
        {"id": "first", "tool": "sleep", "args": {"seconds": 0.2}},
        {"id": "long", "tool": "sleep", "args": {"seconds": 3.0}, "depends_on": ["first"]},
        {"id": "last", "tool": "echo", "args": {"value": 1}, "depends_on": ["long"]}]}})
    tab.open(f"/runs/{run_id}")
    tab.enter_key()
    tab.wait_status("long", "running")
    # The page has read the stream up to "long" starting (nothing more comes for 3 s).
    until(tab.page, "() => (e => e && e.type === 'step.started' && e.step === 'long')"
                    "(window.chordalPage.lastEvent)")
    seen = tab.page.evaluate("window.chordalPage.lastEventId")
    served.server.kill()                              # the connection drops mid-stream
    tab.page.wait_for_selector('#live[data-state="retry"]')
    served.server.start()
    served.server.wait_ready(served.worker)
    tab.wait_run("succeeded", timeout=30)
    assert tab.attr('g.node[data-step="last"]', "data-status") == "succeeded"
    streams = [headers for _, headers in tab.requested("/events")]
    assert len(streams) >= 2
    assert "last-event-id" not in streams[0]          # the first read starts at the start
    # Every later one resumes after the last event read: nothing missed, nothing twice.
    assert {h.get("last-event-id") for h in streams[1:]} == {seen}
    events = httpx.get(f"{served.url}/v1/runs/{run_id}/events", timeout=10,
                       headers={"Authorization": f"Bearer {KEY}"}).text
    ids = [line[4:] for line in events.splitlines() if line.startswith("id: ")]
    assert seen in ids and seen != ids[-1]
    assert tab.page.evaluate("window.chordalPage.lastEventId") == ids[-1]


def test_the_key_is_asked_for_refused_and_scoped(served: Served, tab: Tab):
    run_id = served.create({"plan": FAILING}, key=OTHER_KEY)   # bob's run
    tab.open("/")
    tab.page.wait_for_selector("#key-form")
    assert tab.page.get_attribute("#api-key", "type") == "password"
    assert tab.page.get_attribute("#api-key", "name") is None
    tab.enter_key("not-a-key-of-this-server-at-all")
    tab.page.wait_for_selector("text=The server refused that key")
    tab.enter_key()
    tab.page.wait_for_selector("#runs")
    assert tab.page.evaluate("sessionStorage.getItem('chordal.apiKey')") == KEY
    assert run_id not in tab.page.inner_text("#runs")            # alice sees her runs only
    tab.open(f"/runs/{run_id}")
    tab.page.wait_for_selector("#not-found")
    tab.page.click("#forget-key")
    tab.page.wait_for_selector("#key-form")
    assert tab.page.evaluate("sessionStorage.getItem('chordal.apiKey')") is None


def test_without_auth_the_page_asks_for_no_key(served: Served, browser: Any,
                                               tmp_path: Path):
    """``chordal serve --no-auth`` (loopback only): every run is visible, nothing asked."""
    run_id = served.create({"plan": FAILING})
    served.wait(run_id)
    env = {k: v for k, v in served.server.env.items() if k != "CHORDAL_API_KEYS"}
    open_server = Server(env, _free_port(), tmp_path / "server.log", ("--no-auth",))
    open_server.start()
    ctx, tab = new_tab(browser, open_server.url)
    try:
        open_server.wait_ready(served.worker)
        tab.open("/")
        tab.page.wait_for_selector(f'#runs tr[data-run="{run_id}"]')
        tab.page.click(f'#runs tr[data-run="{run_id}"] a')
        tab.wait_run("failed")
        assert tab.page.locator("#key-form").count() == 0
        assert tab.page.inner_text("#keybar") == ""
        assert all("authorization" not in h for _, h in tab.requested("/v1/"))
        assert not tab.problems
    finally:
        ctx.close()
        open_server.stop()
