"""What Chordal and Flower export, read from the code that exports it, and the metrics and
labels a PromQL expression reads (parsed, not grepped)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import promql_parser
import yaml
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[2]

#: The issue's metric names (docs/metrics.md): the dashboard is built on these.
CHORDAL_METRICS = {
    "chordal_runs_total", "chordal_runs_active", "chordal_run_duration_seconds",
    "chordal_run_makespan_ratio", "chordal_steps_total", "chordal_step_duration_seconds",
    "chordal_step_queue_seconds", "chordal_step_retries_total", "chordal_replans_total",
    "chordal_repairs_total", "chordal_model_calls_total", "chordal_model_tokens_total",
    "chordal_model_cost_usd_total", "chordal_model_latency_seconds",
    "chordal_budget_stops_total", "chordal_queue_depth",
    # Agent steps (issue #19)
    "chordal_agent_turns_total", "chordal_agent_calls_total",
    "chordal_agent_call_duration_seconds",
}
FLOWER_METRICS = {
    "flower_events_total", "flower_task_runtime_seconds", "flower_task_prefetch_time_seconds",
    "flower_worker_online", "flower_worker_prefetched_tasks",
    "flower_worker_number_of_currently_executing_tasks",
}
#: Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}


@dataclass(frozen=True)
class Family:
    name: str           # as exported: chordal_runs_total, chordal_run_duration_seconds
    type: str           # counter, gauge, histogram
    labels: frozenset[str]

    def series(self) -> set[str]:
        """The series names a query can read."""
        if self.type == "histogram":
            return {f"{self.name}_bucket", f"{self.name}_count", f"{self.name}_sum"}
        return {self.name}


def _family(metric: MetricWrapperBase) -> Family:
    name = metric._name + ("_total" if metric._type == "counter" else "")
    return Family(name, metric._type, frozenset(metric._labelnames))


@cache
def chordal_families() -> dict[str, Family]:
    """Every family planner.metrics exports: its counters and histograms, and the fleet
    gauges its collector yields at scrape time."""
    from planner import metrics

    found = {f.name: f for f in map(_family, (v for v in vars(metrics).values()
                                              if isinstance(v, MetricWrapperBase)))}
    fleet = metrics.FleetCollector(
        lambda: metrics.Fleet(runs_active=1, steps_queued={"llm": 2}), lambda q: 0)
    for family in fleet.collect():
        labels = frozenset(k for s in family.samples for k in s.labels)
        found[family.name] = Family(family.name, family.type, labels)
    return found


@cache
def flower_families() -> dict[str, Family]:
    """Flower's own /metrics, from the installed Flower."""
    from flower.events import get_prometheus_metrics

    metrics = get_prometheus_metrics()
    return {f.name: f for f in map(_family, (v for v in vars(metrics).values()
                                             if isinstance(v, MetricWrapperBase)))}


def exported() -> dict[str, Family]:
    """Series name -> its family, for everything Chordal and Flower export."""
    return {s: f for f in [*chordal_families().values(), *flower_families().values()]
            for s in f.series()}


# -- PromQL ---------------------------------------------------------------------------------
#: Grafana's variables, replaced by what they stand for before parsing.
_GRAFANA_VARS = {
    "$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h",
    "${__rate_interval}": "1m", "${__interval}": "1m", "${__range}": "1h",
}


def degrafana(expr: str) -> str:
    for var, value in _GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    # Template variables ($queue, ${tool}) are regexes inside a matcher's quotes.
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


@dataclass(frozen=True)
class Reads:
    metrics: frozenset[str]
    #: label names in matchers and in by/without/on/ignoring clauses
    labels: frozenset[str]


def reads(expr: str) -> Reads:
    """The metric names and label names an expression reads. Raises on a syntax error."""
    tree = promql_parser.parse(expr)
    metrics: set[str] = set()
    labels: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"a selector without a metric name in {expr!r}"
            metrics.add(node.name)
            labels.update(m.name for m in node.matchers.matchers)
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        if isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            if matching is not None:
                labels.update(matching.labels)

    promql_parser.walk(tree, visit)
    return Reads(frozenset(metrics), frozenset(labels))


def unknown_reads(expr: str, also: set[str] = frozenset()) -> list[str]:
    """What ``expr`` reads that neither Chordal nor Flower exports (``also``: recording
    rules and Prometheus's own series the caller allows)."""
    r = reads(expr)
    known = exported()
    problems = [f"metric {m}" for m in sorted(r.metrics - known.keys() - set(also))]
    labels_available = set(TARGET_LABELS) | {"le"}
    for m in r.metrics & known.keys():
        labels_available |= known[m].labels
    problems += [f"label {lb}" for lb in sorted(r.labels - labels_available)]
    return problems


def load_yaml(path: str) -> object:
    return yaml.safe_load((ROOT / path).read_text())


def load_yaml_all(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]
