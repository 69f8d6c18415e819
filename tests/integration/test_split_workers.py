"""A deployment split as deploy/k8s splits it: a tool worker with no model consuming the
tools' queue, an llm worker with the model (Claude through the real SDK, against the fake
Messages API) on ``llm``. Whether a run's answer is the synthesizer's is the run's to say,
not the model of whichever worker ends it (issue #20): the inline join runs in the last
step's task, here always on the tool worker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from planner import RunOptions
from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests.fake_anthropic import API_KEY, FakeAnthropic, text, tool_use
from tests.integration.conftest import Worker, base_env, start_worker, wait_for_queues
from tests.integration.helpers import plan, step

DB = 30
ANSWER = "Both cities were looked up; Lisbon first."
PLAN = plan(step("lisbon", value={"city": "Lisbon"}),
            step("both", deps=["lisbon"], value=[{"$ref": "lisbon"}, "Berlin"]))


def answer(role: str, body: dict[str, Any]) -> dict[str, Any]:
    if role == "planner":
        return tool_use("submit_plan", PLAN)
    return text(ANSWER)


@pytest.fixture
def fake(fake_claude: FakeAnthropic) -> FakeAnthropic:
    return fake_claude.serve(answer)


@pytest.fixture(scope="module")
def split(redis_base: str, tmp_path_factory: pytest.TempPathFactory,
          fake_claude: FakeAnthropic) -> Iterator[Client]:
    """The client, once both workers are up (for the module: starting them is slow)."""
    url = f"{redis_base}/{DB}"
    redis.Redis.from_url(url).flushdb()
    tools_env = base_env(url)  # no ANTHROPIC_API_KEY, no CHORDAL_LLM: no model
    llm_env = base_env(url, ANTHROPIC_API_KEY=API_KEY, ANTHROPIC_BASE_URL=fake_claude.url,
                       CHORDAL_LLM="anthropic", CHORDAL_LLM_MAX_RETRIES="0")
    # The client checks that a model is configured before it submits a goal (as the
    # model_engine fixture does; base_env keeps it from the tool worker).
    os.environ["ANTHROPIC_API_KEY"] = API_KEY
    settings = Settings.from_env(llm_env)
    client = Client(settings, load_registry(settings.tools.tool_modules))
    logs = tmp_path_factory.mktemp("split")
    workers: list[Worker] = []
    try:
        workers.append(start_worker(tools_env, logs / "tools.log", "--concurrency=2",
                                    "--queues=chordal", "--hostname=tools@%h"))
        workers.append(start_worker(llm_env, logs / "llm.log", "--concurrency=2",
                                    "--queues=llm", "--hostname=llm@%h"))
        for worker, queue in zip(workers, ("chordal", "llm"), strict=True):
            wait_for_queues(client, {queue}, worker)
        yield client
    finally:
        for worker in workers:
            worker.stop()


def test_a_goal_s_run_ended_on_the_model_less_worker_gets_the_synthesizer_s_answer(
        split: Client, fake: FakeAnthropic) -> None:
    run_id = split.submit_goal("look up Lisbon, then both cities")
    report = split.wait(run_id, 60)
    assert report.status == "succeeded", report
    both = report.steps["both"]
    assert both.worker is not None and both.worker.startswith("tools@"), both.worker
    assert report.answer == ANSWER  # not the sinks' outputs, {"both": [...]}
    [call] = fake.of_role("synthesizer")
    assert "Berlin" in json.dumps(call.body["messages"])


def test_a_plan_s_run_that_does_not_ask_is_answered_with_its_sinks_outputs(
        split: Client, fake: FakeAnthropic) -> None:
    for options in (None, RunOptions(synthesize=False)):
        run_id = split.submit(PLAN, options)
        report = split.wait(run_id, 60)
        assert report.status == "succeeded", report
        assert report.answer == {"both": [{"city": "Lisbon"}, "Berlin"]}
    assert fake.of_role("synthesizer") == []


def test_a_plan_s_run_that_asks_is_synthesized_though_its_last_worker_has_no_model(
        split: Client, fake: FakeAnthropic) -> None:
    run_id = split.submit({**PLAN, "synthesize": True})
    report = split.wait(run_id, 60)
    assert report.status == "succeeded", report
    assert report.steps["both"].worker is not None
    assert report.steps["both"].worker.startswith("tools@")
    assert report.answer == ANSWER
