"""The run store on a real Redis Cluster: three masters started here on free loopback ports
(tests/cluster_server.py), the broker on RabbitMQ as production would run it, real worker
processes. Skipped when RabbitMQ does not answer on 127.0.0.1:5672 or redis-server and
redis-cli are not on the PATH (both are in CI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import cast

import pytest
import redis

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests import cluster_server, redis_server
from tests.integration.conftest import (
    Engine,
    Worker,
    base_env,
    start_worker,
    virtual_host,
    wait_for_queues,
)

#: The database of this process's single Redis where tests.integration.probe records what
#: the workers publish (the cluster has only database 0, and the probe is no run store).
PROBE_DB = 27
#: Quick leases and passes, so the reconciler's repairs show within seconds.
FAST = {"CHORDAL_STEP_LEASE_S": "2", "CHORDAL_RECONCILE_INTERVAL_S": "0.5",
        "CHORDAL_DISPATCH_GRACE_S": "2"}


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    with virtual_host("cluster") as url:
        yield url


#: The agent step's turns, as the scripted model answers them.
AGENT_SCRIPT = {"responses": [
    {"role": "executor", "step": "pick", "turn": 0, "content": [
        {"type": "text", "text": "First look."},
        {"type": "tool_use", "name": "echo", "input": {"value": "one"}}]},
    {"role": "executor", "step": "pick", "turn": 1, "content": [
        {"type": "text", "text": "picked one"}]}]}


@pytest.fixture(scope="session")
def cluster() -> Iterator[cluster_server.Cluster]:
    if cluster_server.binaries() is None:
        pytest.skip("redis-server and redis-cli are needed for a Redis Cluster")
    started = cluster_server.start()
    yield started
    started.stop()


def cluster_env(cluster: cluster_server.Cluster, broker: str, **extra: str
                ) -> dict[str, str]:
    probe = redis_server.url(PROBE_DB)
    return base_env(cluster.url, CHORDAL_BROKER_URL=broker, TEST_PROBE_REDIS_URL=probe,
                    **FAST, **extra)


def client_for(env: dict[str, str]) -> Client:
    settings = Settings.from_env(env)
    return Client(settings, load_registry(settings.tools.tool_modules))


@pytest.fixture(scope="session")
def cluster_engine(cluster: cluster_server.Cluster, broker: str,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A client and one prefork worker (4 processes): broker RabbitMQ, store the cluster;
    the model is scripted (AGENT_SCRIPT)."""
    cluster.flush()
    tmp = tmp_path_factory.mktemp("cluster")
    script = tmp / "agent.json"
    script.write_text(json.dumps(AGENT_SCRIPT))
    env = cluster_env(cluster, broker, CHORDAL_LLM=f"scripted:{script}")
    client = client_for(env)
    worker = start_worker(env, tmp / "worker.log",
                          "--concurrency=4", "--queues=chordal,probe,llm")
    try:
        wait_for_queues(client, {"chordal", "probe", "llm"}, worker)
        yield Engine("cluster", client, env, cast(redis.Redis, client.store.r))
    finally:
        worker.stop()


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()
