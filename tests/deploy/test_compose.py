"""docker-compose.yml: Prometheus and Grafana provisioned from deploy/, every listening
service behind credentials from the environment, nothing published beyond 127.0.0.1."""

from __future__ import annotations

import re

from tests.deploy.catalog import ROOT, load_yaml

SECRETS = ("REDIS_PASSWORD", "FLOWER_USER", "FLOWER_PASSWORD", "PROMETHEUS_USER",
           "PROMETHEUS_PASSWORD", "GRAFANA_ADMIN_USER", "GRAFANA_ADMIN_PASSWORD",
           "PROMETHEUS_API_KEY", "CHORDAL_API_KEYS")


def services() -> dict:
    return load_yaml("docker-compose.yml")["services"]


def test_prometheus_and_grafana_are_there_with_what_deploy_provides():
    s = services()
    prometheus = s["prometheus"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in prometheus["volumes"]
              if m.startswith("./")}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/prometheus/prometheus.yml"
    assert mounts["/etc/prometheus/alerts.yml"] == "./deploy/prometheus/alerts.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    # rule_files is relative to the config file: alerts.yml beside it.
    assert load_yaml("deploy/prometheus/prometheus.yml")["rule_files"] == ["alerts.yml"]
    for service in s.values():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).exists(), volume


def test_every_secret_comes_from_the_environment_with_no_default():
    text = (ROOT / "docker-compose.yml").read_text()
    for name in SECRETS:
        uses = re.findall(rf"\$\{{{name}([^}}]*)\}}", text)
        assert uses, name
        assert all(u.startswith(":?") for u in uses), (name, uses)


def test_every_listening_service_takes_credentials():
    s = services()
    assert "--requirepass" in s["redis"]["command"]
    assert any(a.startswith("--basic-auth=") for a in s["flower"]["entrypoint"])
    assert "--web.config.file=/web/web.yml" in s["prometheus"]["command"]
    assert s["prometheus"]["depends_on"]["prometheus-auth"]["condition"] == \
        "service_completed_successfully"
    auth = s["prometheus-auth"]
    assert auth["command"][-1] == "/web/web.yml"
    assert set(auth["environment"]) == {"PROMETHEUS_USER", "PROMETHEUS_PASSWORD",
                                        "PROMETHEUS_API_KEY"}
    grafana = s["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_USER"].startswith("${GRAFANA_ADMIN_USER:?")
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_nothing_is_published_beyond_localhost():
    for name, service in services().items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)
    # The workers' metrics port (no auth) stays on the compose network.
    assert "ports" not in services()["worker"]


def test_flower_drops_dead_workers_from_its_metrics():
    """Else a killed worker stays "online" with its last running count in /metrics, which
    the alerts and KEDA's queries read."""
    assert "--purge_offline_workers=120" in services()["flower"]["entrypoint"]
    flower = load_yaml("deploy/k8s/flower.yaml")["spec"]["template"]["spec"]["containers"][0]
    assert "--purge_offline_workers=120" in flower["command"]
