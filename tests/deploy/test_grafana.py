"""The Grafana dashboard (deploy/grafana/chordal.json) and its provisioning: every query
parses and reads only what Chordal or Flower exports, with labels they carry."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.catalog import (
    CHORDAL_METRICS,
    FLOWER_METRICS,
    ROOT,
    chordal_families,
    degrafana,
    exported,
    flower_families,
    load_yaml,
    reads,
    unknown_reads,
)

DASHBOARD = ROOT / "deploy/grafana/chordal.json"


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_the_issue_metric_names_are_what_the_code_exports():
    """The catalogue the dashboard is checked against is the code's, and it is the issue's."""
    assert {f.name for f in chordal_families().values()} == CHORDAL_METRICS
    assert {f.name for f in flower_families().values()} == FLOWER_METRICS


@pytest.mark.parametrize(("title", "expr"), exprs())
def test_every_query_reads_only_exported_metrics_and_labels(title, expr):
    assert unknown_reads(degrafana(expr)) == [], f"panel {title!r}: {expr}"


def test_template_variables_read_exported_metrics_and_labels():
    known = exported()
    for var in dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["definition"])
        assert m, var["definition"]
        metric, label = m.groups()
        assert metric in known and label in known[metric].labels, var["definition"]
        # Template values are used as regexes: multi-value "All" must match everything.
        assert var["allValue"] == ".*"


def test_the_dashboard_shows_what_the_issue_asks_for():
    read = set().union(*(reads(degrafana(e)).metrics for _, e in exprs()))
    wanted = {
        # runs per minute by outcome; p50/p95 run and step durations
        "chordal_runs_total", "chordal_run_duration_seconds_bucket",
        "chordal_step_duration_seconds_bucket",
        # queue depth and wait per queue
        "chordal_queue_depth", "chordal_step_queue_seconds_bucket",
        # tokens and dollars per role and model
        "chordal_model_tokens_total", "chordal_model_cost_usd_total",
        # replans and repairs; workers online (Flower)
        "chordal_replans_total", "chordal_repairs_total", "flower_worker_online",
    }
    assert wanted <= read, wanted - read
    by_title: dict[str, str] = {}
    for title, expr in exprs():
        by_title[title] = by_title.get(title, "") + "\n" + expr
    assert "by (status)" in by_title["Runs per minute by outcome"]
    for title in ("Run duration p50 / p95", "Queue wait p50 / p95"):
        assert "histogram_quantile(0.5," in by_title[title]
        assert "histogram_quantile(0.95," in by_title[title]
    assert "by (role, model" in by_title["Tokens per minute by role and model"]
    assert "by (role, model)" in by_title["Dollars per hour by role and model"]
    assert "by (queue)" in by_title["Queue depth"]
    # Every metric Chordal exports appears somewhere on the dashboard.
    families = {f.name for f in chordal_families().values()}
    shown = {n.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
             for n in read}
    assert families <= shown, families - shown


def test_fleet_gauges_are_never_summed_across_workers():
    """Every worker reports the same chordal_runs_active and chordal_queue_depth (they are
    read from Redis): a sum would multiply them by the number of workers."""
    for title, expr in exprs():
        for gauge in ("chordal_runs_active", "chordal_queue_depth"):
            if gauge in expr:
                assert re.search(rf"max(?: by \(\w+\))? ?\({gauge}", expr), (title, expr)


def test_panels_use_the_datasource_variable_and_do_not_overlap():
    d = dashboard()
    ds = {"type": "prometheus", "uid": "${datasource}"}
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
        if p["type"] != "row":
            assert p["datasource"] == ds and all(t["datasource"] == ds for t in p["targets"])
            assert p["description"], p["title"]
    assert d["uid"] == "chordal"


def test_grafana_is_provisioned_with_the_datasource_and_dashboard_compose_mounts():
    compose = load_yaml("docker-compose.yml")["services"]["grafana"]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["volumes"]
              if m.startswith("./")}
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    assert mounts["/etc/grafana/dashboards/chordal.json"] == "./deploy/grafana/chordal.json"
    env = compose["environment"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == "/etc/grafana/dashboards/chordal.json"

    provider = load_yaml("deploy/grafana/provisioning/dashboards/chordal.yml")["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/grafana/dashboards"

    (source,) = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yml")["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    # The dashboard's default datasource is this one.
    (var,) = [v for v in dashboard()["templating"]["list"] if v["type"] == "datasource"]
    assert var["current"]["value"] == source["uid"]
    # Prometheus takes basic auth; Grafana's credentials for it come from its environment,
    # which compose fills from .env.
    assert source["basicAuth"] is True
    assert source["basicAuthUser"] == "$PROMETHEUS_USER"
    assert source["secureJsonData"]["basicAuthPassword"] == "$PROMETHEUS_PASSWORD"
    assert env["PROMETHEUS_USER"].startswith("${PROMETHEUS_USER:?")
    assert env["PROMETHEUS_PASSWORD"].startswith("${PROMETHEUS_PASSWORD:?")
