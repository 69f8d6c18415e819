"""Every documented way to start a worker runs MCP steps and plain steps, with
CHORDAL_MCP_CONFIG set: `chordal worker` with and without --queues/--pool, `celery -A
workers.app worker`, and the exact commands of deploy/k8s/*.yaml and docker-compose.yml
(whose image's entrypoint is `chordal`). Celery replaces sys.stderr with a logging proxy
in some of these (no file descriptor): the stdio MCP server must start all the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from planner.client import Client
from planner.settings import Settings
from planner.wire import DEFAULT_QUEUE, LLM_QUEUE
from tests.deploy.catalog import load_yaml, load_yaml_all
from tests.integration.conftest import Worker, base_env, start_worker, wait_for_queues
from tests.mcp.conftest import stdio_server

CHORDAL = (sys.executable, "-m", "planner.cli")
CELERY = (sys.executable, "-m", "celery")


def manifest_args(path: str) -> list[str]:
    """The worker container's args in a k8s manifest (the image's entrypoint is chordal)."""
    for doc in load_yaml_all(path):
        if doc.get("kind") == "Deployment":
            container = doc["spec"]["template"]["spec"]["containers"][0]
            assert "command" not in container, "the entrypoint is the image's: chordal"
            return [str(a) for a in container["args"]]
    raise AssertionError(f"{path}: no Deployment")


def compose_args() -> list[str]:
    worker = load_yaml("docker-compose.yml")["services"]["worker"]  # type: ignore[index]
    assert "entrypoint" not in worker
    return [str(a) for a in worker["command"]]


# (how it is documented, the command line, the queue its MCP server's tools go to)
COMMANDS = {
    "chordal worker": ([*CHORDAL, "worker"], DEFAULT_QUEUE),
    "chordal worker --queues": ([*CHORDAL, "worker", "--queues", DEFAULT_QUEUE],
                                DEFAULT_QUEUE),
    "chordal worker --pool threads": ([*CHORDAL, "worker", "--pool", "threads"],
                                      DEFAULT_QUEUE),
    "chordal worker --pool solo -Q": ([*CHORDAL, "worker", "--pool", "solo", "-Q",
                                       DEFAULT_QUEUE], DEFAULT_QUEUE),
    "celery -A workers.app worker": ([*CELERY, "-A", "workers.app", "worker"], DEFAULT_QUEUE),
    "deploy/k8s/worker.yaml": ([*CHORDAL, *manifest_args("deploy/k8s/worker.yaml")],
                               DEFAULT_QUEUE),
    # The model-call workers consume `llm` only: the MCP server's tools go there, and a
    # plain worker beside it runs the plain step.
    "deploy/k8s/worker-llm.yaml": ([*CHORDAL, *manifest_args("deploy/k8s/worker-llm.yaml")],
                                   LLM_QUEUE),
    "docker-compose.yml": ([*CHORDAL, *compose_args()], DEFAULT_QUEUE),
}


@pytest.mark.parametrize("how", list(COMMANDS))
def test_each_documented_worker_command_runs_mcp_and_plain_steps(
        how: str, redis_url: str, tmp_path: Path):
    command, queue = COMMANDS[how]
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"files": {**stdio_server(), "queue": queue,
                                                           "max_retries": 0}}}))
    env = base_env(redis_url, CHORDAL_TOOL_MODULES="planner.tools.testing",
                   CHORDAL_MCP_CONFIG=str(config))
    workers: list[Worker] = []
    try:
        workers.append(start_worker(env, tmp_path / "worker.log", command=tuple(command)))
        if queue != DEFAULT_QUEUE:
            workers.append(start_worker(env, tmp_path / "plain.log",
                                        command=(*CHORDAL, "worker", "-Q", DEFAULT_QUEUE)))
        client = Client(Settings.from_env(env))
        for w in workers:
            wait_for_queues(client, {queue, DEFAULT_QUEUE}, w)
        plan = {"goal": f"MCP and plain steps on `{how}`", "steps": [
            {"id": "mcp", "tool": "files.add", "args": {"a": 40, "b": 2}},
            {"id": "plain", "tool": "echo", "args": {"value": {"$ref": "mcp.result"}}},
        ]}
        report = client.wait(client.submit(plan), timeout=90)
        logs = "\n".join(w.log.read_text()[-3000:] for w in workers)
        assert report.status == "succeeded", (report.model_dump_json(indent=1), logs)
        assert report.steps["mcp"].output == {"result": 42}
        assert report.steps["plain"].output == 42
        assert "fileno" not in logs
    finally:
        for w in workers:
            w.stop()


@pytest.mark.parametrize("how", ["chordal worker --queues", "celery -A workers.app worker"])
def test_a_config_mistake_stops_the_worker_at_start(how: str, redis_url: str,
                                                    tmp_path: Path):
    """Not a worker that takes every task and fails it, leaving its runs running."""
    command, _ = COMMANDS[how]
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"files": {
        **stdio_server(), "env": {"TOKEN": "${MCP_TEST_UNSET_TOKEN}"}}}}))
    env = base_env(redis_url, CHORDAL_MCP_CONFIG=str(config))
    env.pop("MCP_TEST_UNSET_TOKEN", None)
    worker = start_worker(env, tmp_path / "worker.log", command=tuple(command))
    try:
        assert worker.process.wait(timeout=60) != 0
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert "server 'files': env.TOKEN: environment variable MCP_TEST_UNSET_TOKEN is " \
           "not set" in log, log[-3000:]
