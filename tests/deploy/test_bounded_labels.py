"""Flower labels its task series with Celery's shadow name, which names the step
(``chordal.step <tool> <step id>``): the shipped scrape configs relabel it to a bounded
value (a step's by its tool), and no dashboard panel groups by anything unbounded.

The rules are applied here as Prometheus applies a ``replace`` rule: the source labels
joined by ``;``, the regex anchored at both ends (RE2: the regexes use no syntax where
Python's ``re`` differs), ``$1``/``${1}`` expanded in the replacement. A real Prometheus
applies them to a real Flower's metrics in test_live_dashboard.py."""

from __future__ import annotations

import random
import re
import string
from typing import Any

import promql_parser
import pytest

from planner.engine.compiled import CompiledPlan
from planner.engine.dispatch import (
    call_message,
    finalize_message,
    plan_message,
    replan_message,
    review_message,
    step_message,
    synthesize_message,
    turn_message,
)
from planner.language.plan import Plan
from planner.language.refs import STEP_ID_PATTERN
from tests.deploy.catalog import degrafana, load_yaml, load_yaml_all
from tests.deploy.test_grafana import exprs

#: Labels a dashboard panel may group by: each takes few values. `task` only because the
#: relabelling below bounds it.
BOUNDED = {"le", "status", "tool", "queue", "role", "model", "kind", "reason", "outcome",
           "type", "worker", "task"}
#: What tools are called in practice: built-ins, an MCP server's (server.tool), odd ones.
TOOLS = ["echo", "http_request", "travel.search_flights", "my-tool_2", "srv.a.b"]


def flower_rules() -> list[dict[str, Any]]:
    config: Any = load_yaml("deploy/prometheus/prometheus.yml")
    (flower,) = [j for j in config["scrape_configs"] if j["job_name"] == "flower"]
    return list(flower["metric_relabel_configs"])


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str]:
    """Prometheus's ``replace`` relabelling (the default action), rule after rule."""
    labels = dict(labels)
    for rule in rules:
        assert rule.get("action", "replace") == "replace", rule
        value = rule.get("separator", ";").join(labels.get(s, "")
                                                for s in rule["source_labels"])
        found = re.fullmatch(rule.get("regex", "(.*)"), value)
        if found is None:
            continue
        replacement = rule.get("replacement", "$1")
        groups = (found[0], *found.groups())
        labels[rule["target_label"]] = re.sub(
            r"\$\{?(\d+)\}?", lambda m, g=groups: g[int(m[1])] or "", replacement)
    return labels


def random_step_id(rng: random.Random) -> str:
    first = rng.choice(string.ascii_letters)
    rest = "".join(rng.choice(string.ascii_letters + string.digits + "_-")
                   for _ in range(rng.randint(0, 63)))
    step_id = first + rest
    assert re.fullmatch(STEP_ID_PATTERN, step_id)
    return step_id


def shadow_names(rng: random.Random, n: int = 300) -> list[tuple[str, str, str]]:
    """(shadow name, its step id, its tool or "") of the messages the engine sends, for
    ``n`` random steps over ``TOOLS``."""
    steps = [{"id": random_step_id(rng), "tool": rng.choice(TOOLS), "args": {"value": 1}}
             for _ in range(n)]
    steps = list({s["id"]: s for s in steps}.values())
    plan = Plan.model_validate({"goal": "g", "steps": steps})
    compiled = CompiledPlan(plan, {})  # the tools' code is not needed to name them
    found: list[tuple[str, str, str]] = []
    for s in steps:
        message = step_message(compiled, "run1", 1, s["id"])
        assert message.shadow and message.errback and message.errback.shadow
        found.append((message.shadow, s["id"], s["tool"]))
        found.append((message.errback.shadow, s["id"], ""))
        for other in (replan_message("run1", s["id"], 1), review_message("run1", s["id"], 1)):
            assert other.shadow
            found.append((other.shadow, s["id"], ""))
        # As if it were an agent step: its turns' rows and its tool calls'.
        called = rng.choice(TOOLS)
        turn = turn_message(compiled, "run1", 1, s["id"], 0, rng.randint(1, 50))
        call = call_message(compiled, "run1", 1, s["id"], 0, 1, 0, called)
        assert turn.shadow and call.shadow
        found.append((turn.shadow, s["id"], ""))
        found.append((call.shadow, s["id"], called))
    return found


def test_a_steps_task_label_becomes_its_tool_and_every_other_loses_the_step():
    rules = flower_rules()
    values: set[str] = set()
    for shadow, step_id, tool_name in shadow_names(random.Random(17)):
        task = relabel({"task": shadow, "worker": "w"}, rules)["task"]
        values.add(task)
        if shadow.startswith("chordal.step ") and tool_name:
            assert task == f"chordal.step {tool_name}", shadow
        elif shadow.startswith("chordal.agent "):
            assert task == f"chordal.agent → {tool_name}", shadow
        elif shadow.startswith("chordal.agent_turn "):
            assert task == "chordal.agent_turn", shadow
        else:
            assert task == shadow.rsplit(" ", 1)[0], shadow
        assert step_id not in task.split(" "), (shadow, task)
    # Bounded: the tools (as steps and as agents' calls), and the four tasks that named a
    # step.
    assert values == {*(f"chordal.step {t}" for t in TOOLS), "chordal.step_error",
                      "chordal.replan", "chordal.review", "chordal.agent_turn",
                      *(f"chordal.agent → {t}" for t in TOOLS)}
    # Names without a step go through unchanged.
    for message in (finalize_message("r", 1), plan_message("r"),
                    synthesize_message("r", 1), synthesize_message("r", 1, partial=True)):
        name = message.shadow or message.task
        assert relabel({"task": name}, rules)["task"] == name
    assert relabel({"worker": "w"}, rules) == {"worker": "w"}  # no task label: none added


def test_the_podmonitor_relabels_as_prometheus_yml_does():
    (monitor,) = [d for d in load_yaml_all("deploy/k8s/podmonitor.yaml")
                  if d["metadata"]["name"] == "chordal-flower"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    as_prometheus = [{"source_labels": r["sourceLabels"], "regex": r["regex"],
                      "target_label": r["targetLabel"], "replacement": r["replacement"]}
                     for r in endpoint["metricRelabelings"]]
    assert as_prometheus == flower_rules()


def grouped_by(expr: str) -> set[str]:
    """Labels an expression's aggregations keep (``without``: everything else, "*")."""
    kept: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            if node.modifier.type == promql_parser.AggModifierType.By:
                kept.update(node.modifier.labels)
            else:
                kept.add("*")

    promql_parser.walk(promql_parser.parse(expr), visit)
    return kept


@pytest.mark.parametrize(("title", "expr"), exprs())
def test_no_panel_groups_by_an_unbounded_label(title, expr):
    kept = grouped_by(degrafana(expr))
    assert kept <= BOUNDED, f"panel {title!r} groups by {kept - BOUNDED}: {expr}"
    if "task" in kept:
        # Bounded by the relabelling above, on the job that scrapes Flower.
        assert any(r["target_label"] == "task" for r in flower_rules())
