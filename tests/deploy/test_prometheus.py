"""Prometheus: the scrape config and the alert rules pass promtool, each alert fires on
the series it is meant for (promtool's unit tests, alerts.test.yml), every rule reads only
what Chordal and Flower export, and the basic auth docker-compose.yml generates works with
a real Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest

from tests.deploy.catalog import ROOT, load_yaml, reads, unknown_reads

PROM = ROOT / "deploy/prometheus"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
# Nothing is skipped without them: .ci/run installs Debian's prometheus package.
needs_promtool = pytest.mark.usefixtures("promtool_installed")


@pytest.fixture
def promtool_installed() -> None:
    assert PROMTOOL and PROMETHEUS, ("promtool/prometheus not installed: apt-get install "
                                     "prometheus (.ci/run does)")


def scrape_config(tmp_path: Path, api_key_file: Path | None = None) -> Path:
    """deploy/prometheus/prometheus.yml as it runs in compose, beside its rules, with the
    API key file the prometheus-auth one-shot writes (/web/api-key) at ``api_key_file``."""
    key = api_key_file or tmp_path / "api-key"
    if not key.exists():
        key.write_text("k" * 24)
    text = (PROM / "prometheus.yml").read_text().replace("/web/api-key", str(key))
    assert str(key) in text
    (tmp_path / "prometheus.yml").write_text(text)
    shutil.copy(PROM / "alerts.yml", tmp_path / "alerts.yml")
    return tmp_path / "prometheus.yml"


def promtool(*args: str, cwd: Path = PROM) -> str:
    assert PROMTOOL
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def rules() -> list[dict]:
    return [r for g in load_yaml("deploy/prometheus/alerts.yml")["groups"] for r in g["rules"]]


def alerts() -> list[dict]:
    return [r for r in rules() if "alert" in r]


@needs_promtool
def test_promtool_checks_the_rules():
    assert "SUCCESS" in promtool("check", "rules", "alerts.yml")


@needs_promtool
def test_promtool_checks_the_config_and_its_rule_files(tmp_path):
    out = promtool("check", "config", str(scrape_config(tmp_path)))
    assert "SUCCESS: 1 rule files found" in out


@needs_promtool
def test_each_alert_fires_on_its_series():
    """alerts.test.yml: every alert fires where it should and not on the near misses."""
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")
    tested = {t["alertname"] for case in load_yaml("deploy/prometheus/alerts.test.yml")["tests"]
              for t in case["alert_rule_test"]
              if t["exp_alerts"]}
    assert tested == {a["alert"] for a in alerts()}


def test_the_issue_alerts_are_there():
    names = {a["alert"] for a in alerts()}
    assert {"ChordalRunsStuck",             # runs stuck
            "ChordalStepFailureRatioHigh",  # step failure ratio
            "ChordalQueueWaitHigh",         # queue wait too long
            "ChordalModelSpendBurnFast",    # budget burn rate
            "ChordalNoWorkerForQueue",      # no worker for a queue
            } <= names


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r.get("alert") or r["record"])
def test_rules_read_only_exported_metrics_and_labels(rule):
    recorded = {r["record"] for r in rules() if "record" in r}
    # `up` is Prometheus's own, one per scrape target.
    assert unknown_reads(rule["expr"], also=recorded | {"up"}) == []


def test_every_alert_has_a_runbook_section_in_operations_md():
    doc = (ROOT / "docs/operations.md").read_text()
    anchors = {line.lstrip("#").strip().lower() for line in doc.splitlines()
               if line.startswith("#")}
    for alert in alerts():
        runbook = alert["annotations"]["runbook"]
        assert runbook == f"docs/operations.md#{alert['alert'].lower()}"
        assert alert["alert"].lower() in anchors, f"no '### {alert['alert']}' in the doc"
        assert alert["labels"]["severity"] in {"page", "warning", "info"}


def test_scrape_jobs_match_compose_and_the_alerts():
    config = load_yaml("deploy/prometheus/prometheus.yml")
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {"chordal-worker", "chordal-api", "flower"}
    compose = load_yaml("docker-compose.yml")["services"]
    port = jobs["chordal-worker"]["dns_sd_configs"][0]["port"]
    assert compose["worker"]["environment"]["CHORDAL_METRICS_PORT"] == str(port)
    assert jobs["chordal-worker"]["dns_sd_configs"][0]["names"] == ["worker"]
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    assert "--port=5555" in compose["flower"]["entrypoint"]
    # ChordalScrapeTargetDown watches exactly these jobs.
    (down,) = [a for a in alerts() if a["alert"] == "ChordalScrapeTargetDown"]
    assert 'job=~"chordal-.*|flower"' in down["expr"]
    assert reads(down["expr"]).metrics == {"up"}


def test_the_worker_setting_compose_uses_exists():
    from planner.settings import Settings

    Settings.from_env({"CHORDAL_METRICS_PORT": "9808"})  # an unknown CHORDAL_* would raise


def make_web_config(tmp_path: Path, user: str, password: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROMETHEUS_USER": user, "PROMETHEUS_PASSWORD": password,
           "PROMETHEUS_API_KEY": "prometheus-api-key-secret"}
    return subprocess.run([sys.executable, str(PROM / "make_web_config.py"),
                           str(tmp_path / "web.yml")], env=env, capture_output=True,
                          text=True, timeout=60)


def test_web_config_refuses_a_weak_password(tmp_path):
    done = make_web_config(tmp_path, "prom", "short")
    assert done.returncode != 0 and "12 characters" in done.stderr
    assert not (tmp_path / "web.yml").exists()


@needs_promtool
def test_web_config_is_valid_for_prometheus(tmp_path):
    assert make_web_config(tmp_path, "prom", "a-long-enough-secret").returncode == 0
    assert "SUCCESS" in promtool("check", "web-config", str(tmp_path / "web.yml"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        token = b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


@needs_promtool
def test_a_real_prometheus_takes_the_generated_auth_and_loads_the_rules(tmp_path):
    """What docker-compose.yml does, with the Prometheus on this machine: generate the web
    config from the two variables, start Prometheus with it and the rules; no password, no
    answer; the right one, the rules."""
    assert PROMETHEUS
    assert make_web_config(tmp_path, "prom", "a-long-enough-secret").returncode == 0
    assert (tmp_path / "api-key").read_text() == "prometheus-api-key-secret"
    (tmp_path / "config").mkdir()
    config = scrape_config(tmp_path / "config", tmp_path / "api-key")
    port = free_port()
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}",
         f"--web.config.file={tmp_path / 'web.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "log").open("w"))
    try:
        base = f"http://127.0.0.1:{port}"
        auth = ("prom", "a-long-enough-secret")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/-/ready", auth) == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail((tmp_path / "log").read_text()[-2000:])
        assert get(f"{base}/-/ready") == 401
        assert get(f"{base}/-/ready", ("prom", "wrong-password-here")) == 401
        request = urllib.request.Request(f"{base}/api/v1/rules")
        token = b64encode(b"prom:a-long-enough-secret").decode()
        request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            groups = json.load(response)["data"]["groups"]
        loaded = {r["name"] for g in groups for r in g["rules"]}
        assert loaded == {r.get("alert") or r["record"] for r in rules()}
        assert all(r["health"] != "err" for g in groups for r in g["rules"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
