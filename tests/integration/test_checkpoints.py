"""Checkpoints on real workers: after a checkpoint step succeeds the replanner reviews the
plan; only the checkpoint's descendants wait for the verdict."""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import pytest
import redis

from planner import RunOptions
from planner.store.records import RunReport
from tests.fake_anthropic import FakeAnthropic, text, tool_use
from tests.integration.conftest import Engine, base_env
from tests.integration.helpers import started_counts
from tests.integration.test_cli_runs import chordal

SCOUT = {"goal": "g", "steps": [
    {"id": "scout", "tool": "sleep", "checkpoint": True,
     "args": {"seconds": 0.2, "value": {"found": "path-b"}}},
    {"id": "follow", "tool": "echo", "args": {"value": {"$ref": "scout.found"}}},
    {"id": "elsewhere", "tool": "sleep", "args": {"seconds": 1.5, "value": "done"}}]}
REVISED = {"goal": "g", "steps": [
    {"id": "follow_b", "tool": "echo", "args": {"value": ["b", {"$ref": "scout.found"}]}}]}


class Review:
    """What the review saw: whether the independent branch had started while the
    checkpoint's verdict was still being asked for. The review waits (bounded) for it, so
    a loaded machine that picks the branch up late cannot make the test race."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.run_id: str | None = None
        self.saw_elsewhere_running = False

    def wait_for_elsewhere(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.run_id is not None:
                started = self.engine.client.store.step_times(self.run_id).get("elsewhere")
                if started and started[0] is not None:
                    self.saw_elsewhere_running = True
                    return
            time.sleep(0.05)


def responder(review: Review, role: str, body: dict[str, Any]) -> dict[str, Any]:
    shown = json.dumps(body["messages"])
    if role == "planner":
        return tool_use("submit_plan", SCOUT)
    if role == "replanner":
        # Only the checkpoint's descendants wait for the verdict: the other branch must be
        # running while the review is asked (if it waited too, it would never start here).
        review.wait_for_elsewhere()
        assert body["tool_choice"] == {"type": "any"}
        names = {t["name"] for t in body["tools"]}
        assert names == {"continue_plan", "submit_plan"}
        if "keep going" in shown:
            return tool_use("continue_plan", {})
        return tool_use("submit_plan", REVISED)
    return text("done")


@pytest.fixture
def review(model_engine: Engine) -> Review:
    return Review(model_engine)


@pytest.fixture
def fake(fake_claude: FakeAnthropic, review: Review) -> FakeAnthropic:
    return fake_claude.serve(functools.partial(responder, review))


def test_a_checkpoint_that_continues(model_engine: Engine, fake, review: Review):
    fake.inject("replanner", delay_s=0.6)  # the review takes a while
    client = model_engine.client
    review.run_id = client.submit_goal("keep going after the scout")
    report = client.wait(review.run_id, 60)
    assert report.status == "succeeded", report
    assert report.versions[-1].version == 1 and report.replans == 0
    assert report.steps["follow"].output == "path-b"
    times = client.store.step_times(report.run_id)
    asked = fake.of_role("replanner")[0]
    assert len(fake.of_role("replanner")) == 1
    shown = json.loads(asked.body["messages"][0]["content"].split("JSON:\n")[1]
                       .rsplit("\nA checkpoint", 1)[0])
    assert shown["checkpoint"]["output"] == {"found": "path-b"}
    # The descendant waited for the verdict (>= 0.6 s of review); the other branch did not.
    assert times["follow"][0] - times["scout"][1] >= 0.5
    assert review.saw_elsewhere_running
    assert times["elsewhere"][0] < times["follow"][0]
    assert "step.released" in [e.type for e in model_engine.events(report.run_id)]


def test_a_checkpoint_that_revises_the_plan(model_engine: Engine, fake, review: Review):
    client = model_engine.client
    review.run_id = client.submit_goal("revise after the scout")
    report = client.wait(review.run_id, 60)
    assert review.saw_elsewhere_running
    assert report.status == "succeeded", report
    assert report.replans == 1 and report.versions[1].reason == "checkpoint"
    assert report.steps["follow"].status == "replaced"
    assert report.steps["follow_b"].output == ["b", "path-b"]
    assert report.steps["elsewhere"].output == "done"  # running: kept, ran once
    assert started_counts(model_engine.events(report.run_id))["elsewhere"] == 1


def test_every_step_a_checkpoint(model_engine: Engine, fake, review: Review):
    client = model_engine.client
    run_id = review.run_id = client.submit_goal("keep going, checking every step",
                                                RunOptions(checkpoint_all=True))
    report = client.wait(run_id, 60)
    assert report.status == "succeeded", report
    # Reviews only where something waits: scout has a dependent, the others none.
    assert len(fake.of_role("replanner")) == 1


def test_the_scripted_checkpoint_scenario(redis_base: str):
    env = base_env(f"{redis_base}/11", CHORDAL_LLM="scripted:examples/scripted/checkpoint.json")
    redis.Redis.from_url(f"{redis_base}/11").flushdb()
    result = chordal(env, "dev", "--goal", "Book a table for four in Lisbon on Friday evening",
                     "--json", "--concurrency=2", timeout=180)
    assert result.returncode == 0, result.stderr
    report = RunReport.model_validate_json(result.stdout)
    assert report.status == "succeeded"
    assert report.steps["book"].status == "replaced"
    assert report.steps["book_alternative"].output == {"booked": "Cervejaria Baixa"}
    assert report.versions[1].reason == "checkpoint"
    assert report.answer.startswith("Taberna da Rua is full")
