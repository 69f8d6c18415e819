"""Compose and Kubernetes files can't be run here (no Docker engine): check what matters."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
HARD_LIMIT_GRACE_S = 30
SOFT_SHUTDOWN_S = 10


def load(path: str) -> dict:
    return yaml.safe_load((ROOT / path).read_text())


def test_compose_redis_never_evicts_and_needs_a_password():
    compose = load("docker-compose.yml")
    command = compose["services"]["redis"]["command"]
    assert "--maxmemory-policy noeviction" in command
    assert "--requirepass" in command
    assert "${REDIS_PASSWORD:?" in compose["services"]["worker"]["environment"][
        "CHORDAL_REDIS_URL"]


def test_compose_worker_grace_outlasts_shutdown_and_hard_limit():
    worker = load("docker-compose.yml")["services"]["worker"]
    grace = int(worker["stop_grace_period"].rstrip("s"))
    assert grace > SOFT_SHUTDOWN_S + HARD_LIMIT_GRACE_S


def test_flower_always_has_auth():
    flower = load("docker-compose.yml")["services"]["flower"]
    assert any(a.startswith("--basic-auth=") for a in flower["entrypoint"])
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    k8s = load("deploy/k8s/flower.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert any(a.startswith("--basic-auth=") for a in k8s["command"])


def test_k8s_worker_grace_and_settings_match_the_code():
    from planner.settings import Settings
    from workers.app import make_app

    assert Settings.from_env({}).hard_limit_grace_s == HARD_LIMIT_GRACE_S
    app = make_app(Settings.from_env({}))
    assert app.conf.worker_soft_shutdown_timeout == SOFT_SHUTDOWN_S
    spec = load("deploy/k8s/worker.yaml")["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] > SOFT_SHUTDOWN_S + HARD_LIMIT_GRACE_S
    assert spec["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert "secretKeyRef" in env["CHORDAL_REDIS_URL"]["valueFrom"]


def test_celery_settings_are_json_only_and_at_least_once():
    from planner.settings import Settings
    from workers.app import make_app

    conf = make_app(Settings.from_env({"CHORDAL_VISIBILITY_TIMEOUT_S": "7200"})).conf
    assert conf.accept_content == ["json"] and conf.result_accept_content == ["json"]
    assert conf.task_serializer == "json" and conf.result_serializer == "json"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == 7200
    assert conf.result_backend_transport_options["visibility_timeout"] == 7200
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert conf.result_chord_expires >= 7 * 86400
