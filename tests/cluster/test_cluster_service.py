"""``chordal serve`` on the cluster: a run made over HTTP (its owner index, the API's rate
limit, an Idempotency-Key, all global keys of their own) and its events streamed while it
runs (a blocking XREAD on the run's master, through the asyncio cluster client)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cluster.conftest import cluster_env
from tests.cluster_server import Cluster
from tests.integration.conftest import Engine
from tests.service.conftest import start_server

PLAN = {"goal": "g", "steps": [
    {"id": "nap", "tool": "sleep", "args": {"seconds": 1.0, "value": 2}},
    {"id": "twice", "tool": "echo", "args": {"value": [{"$ref": "nap"}, {"$ref": "nap"}]}}]}


def test_a_run_made_over_http_streams_its_events(cluster_engine: Engine, cluster: Cluster,
                                                  broker: str, tmp_path: Path) -> None:
    env = cluster_env(cluster, broker, CHORDAL_TOOL_MODULES="planner.tools.testing",
                      CHORDAL_API_RATE_LIMIT_PER_MIN="100")
    server = start_server(env, tmp_path / "serve.log", "--no-auth")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            made = http.post("/v1/runs", json={"plan": PLAN},
                             headers={"Idempotency-Key": "once"})
            assert made.status_code == 201, made.text
            run_id = made.json()["run_id"]
            again = http.post("/v1/runs", json={"plan": PLAN},
                              headers={"Idempotency-Key": "once"})
            assert again.json()["run_id"] == run_id  # the same run, not a second
            events: list[str] = []
            with http.stream("GET", f"/v1/runs/{run_id}/events") as reply:
                assert reply.status_code == 200
                events += [line.removeprefix("event: ") for line in reply.iter_lines()
                           if line.startswith("event: ")]
            assert events[0] == "run.created" and events[-1] == "run.finished"
            report = http.get(f"/v1/runs/{run_id}").json()
            assert report["status"] == "succeeded"
            assert report["steps"]["twice"]["output"] == [2, 2]
            listed = http.get("/v1/runs").json()
            assert run_id in {r["run_id"] for r in listed["runs"]}
    finally:
        server.stop()
