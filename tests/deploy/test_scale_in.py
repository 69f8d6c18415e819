"""What a KEDA scale-in (or a rolling deploy) does to a worker: SIGTERM to the container's
PID 1, the worker, then SIGKILL after terminationGracePeriodSeconds.

On SIGTERM alone Celery makes a *warm* shutdown: it waits for every running task however
long it takes, and Kubernetes SIGKILLs a pod whose step outlasts the grace period (the
step is then re-driven only when its lease lapses, and the lost attempt counts against its
retries). The worker manifests and docker-compose.yml set REMAP_SIGTERM=SIGQUIT, which
turns SIGTERM into Celery's cold shutdown preceded by its *soft* shutdown
(workers/app.py: worker_soft_shutdown_timeout=10): a step that ends within 10 s finishes
there, a longer one is handed back to the queue (acks_late), and the worker exits well
inside the grace. Real Redis (its own, on a free port), real workers."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from planner.client import Client
from planner.settings import Settings
from planner.tools import load_registry
from tests.deploy.catalog import load_yaml
from tests.integration.conftest import Worker, base_env, start_worker, wait_for_queues

#: The pool each worker Deployment runs -> its manifest.
MANIFESTS = {"prefork": "deploy/k8s/worker.yaml", "threads": "deploy/k8s/worker-llm.yaml"}


def grace_s(pool: str) -> int:
    deployment = load_yaml(MANIFESTS[pool])
    return int(deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])


def path_of(pool: str) -> str:
    return MANIFESTS[pool]


def deployed_env(pool: str) -> dict[str, str]:
    """The worker Deployment's plain-value environment (what is not a Secret)."""
    container = load_yaml(MANIFESTS[pool])["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--pool") + 1] == pool, path_of(pool)
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_workers_are_deployed_with_sigterm_as_a_soft_shutdown():
    for path in ("deploy/k8s/worker.yaml", "deploy/k8s/worker-llm.yaml"):
        container = load_yaml(path)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["REMAP_SIGTERM"] == "SIGQUIT", path
    compose = load_yaml("docker-compose.yml")["services"]["worker"]["environment"]
    assert compose["REMAP_SIGTERM"] == "SIGQUIT"


def start(env: dict[str, str], log: Path, pool: str) -> tuple[Worker, Client]:
    settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("CHORDAL_")})
    client = Client(settings, load_registry(settings.tools.tool_modules))
    worker = start_worker(env, log, "--concurrency=2", f"--pool={pool}", "--queues=chordal")
    wait_for_queues(client, {"chordal"}, worker)
    return worker, client


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_scale_in_finishes_short_steps_and_hands_long_ones_back(redis_url, tmp_path, pool):
    """prefork (the tool workers): the long step is cut after the soft shutdown, handed back
    and finished by another worker. threads (the `llm` workers): a thread cannot be cut, so
    the worker exits when the step returns, inside that Deployment's longer grace."""
    env = base_env(redis_url, CHORDAL_STEP_LEASE_S="3", CHORDAL_RECONCILE_INTERVAL_S="0.5",
                   CHORDAL_DISPATCH_GRACE_S="3",
                   REMAP_SIGTERM=deployed_env(pool)["REMAP_SIGTERM"])
    leaving, client = start(env, tmp_path / "leaving.log", pool)
    staying = None
    try:
        run_id = client.submit({"goal": "scale-in", "steps": [
            {"id": "short", "tool": "sleep", "args": {"seconds": 4, "value": "short"}},
            {"id": "long", "tool": "sleep", "args": {"seconds": 15, "value": "long"}},
        ]})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            steps = client.report(run_id).steps
            if all(steps[s].status == "running" for s in ("short", "long")):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"steps never ran:\n{leaving.log.read_text()[-3000:]}")

        # What Kubernetes does to a pod it scales in: SIGTERM to PID 1, the worker.
        terminated = time.monotonic()
        os.kill(leaving.process.pid, signal.SIGTERM)
        leaving.process.wait(timeout=grace_s(pool))
        took = time.monotonic() - terminated
        # The soft shutdown (10 s), then the cold one: far inside the pods' grace.
        assert took < grace_s(pool) / 2, f"{took:.1f}s"
        log = leaving.log.read_text()
        assert "Initiating Soft Shutdown" in log, log

        report = client.report(run_id)
        assert report.steps["short"].status == "succeeded"   # finished within the soft shutdown
        assert report.steps["short"].attempts == 1
        if pool == "threads":
            # Finished on the leaving worker: a model call is not paid for twice.
            assert report.steps["long"].status == "succeeded"
            assert report.steps["long"].attempts == 1
        else:
            assert "Restoring 1 unacknowledged" in log, log
            assert report.steps["long"].status != "succeeded"    # cut, and handed back

        # The replacement picks up what was handed back (the long step, or the join); the run
        # ends with both results.
        staying, _ = start(env, tmp_path / "staying.log", pool)
        report = client.wait(run_id, timeout=90)
        assert report.status == "succeeded", report
        assert report.answer == {"short": "short", "long": "long"}
        if pool == "prefork":
            assert report.steps["long"].attempts >= 2  # the cut attempt, then the one that ran
    finally:
        leaving.stop()
        if staying:
            staying.stop()
