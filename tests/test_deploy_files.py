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

    assert Settings.from_env({}).worker.hard_limit_grace_s == HARD_LIMIT_GRACE_S
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


def load_all(path: str) -> list[dict]:
    return list(yaml.safe_load_all((ROOT / path).read_text()))


def test_compose_api_is_ready_only_with_redis_and_workers_and_keeps_keys_out():
    from planner.cli.serve import GRACEFUL_S

    services = load("docker-compose.yml")["services"]
    api = services["api"]
    assert api["command"][:1] == ["serve"] and "0.0.0.0" in api["command"]
    assert any("/readyz" in part for part in api["healthcheck"]["test"])
    # Keys only from the environment, and required; the port published on this host only.
    assert api["environment"]["CHORDAL_API_KEYS"].startswith("${CHORDAL_API_KEYS:?")
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    assert int(api["stop_grace_period"].rstrip("s")) > GRACEFUL_S
    # Same run store and tools as the workers; the callback secret only where it signs.
    worker = services["worker"]["environment"]
    for name in ("CHORDAL_REDIS_URL", "CHORDAL_TOOL_MODULES", "CHORDAL_CALLBACK_ALLOW"):
        assert api["environment"][name] == worker[name]
    assert worker["CHORDAL_CALLBACK_SECRET"].startswith("${CHORDAL_CALLBACK_SECRET")
    assert "CHORDAL_CALLBACK_SECRET" not in api["environment"]


def test_k8s_api_deployment_and_service():
    from planner.cli.serve import GRACEFUL_S

    docs = {d["kind"]: d for d in load_all("deploy/k8s/api.yaml")}
    pod = docs["Deployment"]["spec"]["template"]
    spec, [container] = pod["spec"], pod["spec"]["containers"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["terminationGracePeriodSeconds"] > GRACEFUL_S
    assert container["args"][:1] == ["serve"] and "0.0.0.0" in container["args"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    for secret in ("CHORDAL_REDIS_URL", "CHORDAL_API_KEYS"):
        assert "secretKeyRef" in env[secret]["valueFrom"]
    # The Service reaches these pods, on the port they listen on.
    service = docs["Service"]["spec"]
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    [port] = container["ports"]
    assert service["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    assert str(port["containerPort"]) == container["args"][container["args"].index(
        "--port") + 1]
    worker = load("deploy/k8s/worker.yaml")["spec"]["template"]["spec"]["containers"][0]
    worker_env = {e["name"]: e for e in worker["env"]}
    assert "secretKeyRef" in worker_env["CHORDAL_CALLBACK_SECRET"]["valueFrom"]
    assert worker_env["CHORDAL_CALLBACK_ALLOW"] == env["CHORDAL_CALLBACK_ALLOW"]


def test_deploy_files_name_only_known_settings():
    from planner.settings import PREFIX, Settings

    known = set(Settings.env_names())
    compose = load("docker-compose.yml")["services"]
    names = {n for svc in compose.values() for n in (svc.get("environment") or {})}
    for path in ("deploy/k8s/api.yaml", "deploy/k8s/worker.yaml", "deploy/k8s/flower.yaml"):
        for doc in load_all(path):
            if doc["kind"] == "Deployment":
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    names |= {e["name"] for e in c.get("env", [])}
    chordal = {n for n in names if n.startswith(PREFIX)}
    assert chordal and chordal <= known, chordal - known
