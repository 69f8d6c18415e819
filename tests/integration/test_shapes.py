"""DAG shapes: every step waits for exactly its dependencies, and runs once."""

from __future__ import annotations

import sys
from pathlib import Path

import redis
from hypothesis import HealthCheck, given, settings

from planner.client import Client
from planner.language.plan import Plan
from planner.settings import Settings
from planner.store.records import RunReport
from planner.tools import load_registry
from tests.integration.conftest import Engine, base_env, start_worker, wait_for_queues
from tests.integration.helpers import (
    assert_dependencies_respected,
    plan,
    started_counts,
    step,
)
from tests.strategies import dag_plans


def check(engine: Engine, p: dict, timeout: float = 120) -> RunReport:
    report = engine.run(p, timeout=timeout)
    assert report.status == "succeeded", report
    deps = Plan.model_validate(p).dependencies()
    assert_dependencies_respected(engine.client.store, report.run_id, deps)
    counts = started_counts(engine.events(report.run_id))
    assert counts == dict.fromkeys(deps, 1), "every step starts exactly once"
    return report


def test_chain(any_engine: Engine):
    report = check(any_engine, plan(step("a", value=1),
                                    step("b", "calculate", expression="x + 1",
                                         variables={"x": {"$ref": "a"}}),
                                    step("c", "calculate", expression="x * 10",
                                         variables={"x": {"$ref": "b"}})))
    assert report.answer == {"c": 20}


def test_fan_out_runs_in_parallel(engine: Engine):
    report = check(engine, plan(*[step(f"s{i}", "sleep", seconds=0.5) for i in range(4)]))
    times = engine.client.store.step_times(report.run_id)
    starts = [t[0] for t in times.values()]
    ends = [t[1] for t in times.values()]
    # Four 0.5 s steps on four worker processes overlap: all start before any ends.
    assert max(starts) < min(ends)


def test_fan_in(any_engine: Engine):
    report = check(any_engine, plan(step("x", value="x"), step("y", value="y"),
                                    step("z", value="z"),
                                    step("join", "concat", items=[{"$ref": "x"}, {"$ref": "y"},
                                                                  {"$ref": "z"}])))
    assert report.answer == {"join": "xyz"}


def test_diamond(engine: Engine):
    report = check(engine, plan(step("top", value=[1]),
                                step("left", value=[{"$ref": "top.0"}]),
                                step("right", value=[2], deps=["top"]),
                                step("bottom", "concat",
                                     items=[{"$ref": "left"}, {"$ref": "right"}])))
    assert report.answer == {"bottom": [1, 2]}


N_SHAPE = plan(step("a", "sleep", seconds=0.1), step("b", "sleep", seconds=1.5),
               step("c", deps=["a"]), step("d", deps=["a", "b"]))


def test_n_shape_keeps_all_the_parallelism(engine: Engine):
    """a->c, a->d, b->d: c must start when a ends, whatever b is doing."""
    report = check(engine, N_SHAPE)
    t = engine.client.store.step_times(report.run_id)
    assert t["c"][0] < t["b"][1], "c waited for b, which it does not depend on"
    assert t["d"][0] >= t["b"][1]


def test_the_levels_baseline_loses_that_parallelism(redis_base: str, tmp_path: Path):
    """The naive level-by-level canvas (bench/levels.py) makes c wait for b: this is the
    property the test above would catch. Its worker is bench's (`celery -A bench.levels`),
    on a broker of its own."""
    from bench.levels import submit_levels

    env = base_env(f"{redis_base}/10")
    redis.Redis.from_url(env["CHORDAL_REDIS_URL"]).flushdb()
    chordal_settings = Settings.from_env(env)
    client = Client(chordal_settings, load_registry(chordal_settings.tools.tool_modules))
    worker = start_worker(env, tmp_path / "levels.log", "--concurrency=4", "--queues=chordal",
                          command=(sys.executable, "-m", "celery", "-A", "bench.levels",
                                   "worker"))
    try:
        wait_for_queues(client, {"chordal"}, worker)
        run_id = submit_levels(client, N_SHAPE)
        report = client.wait(run_id, 60)
    finally:
        worker.stop()
    assert report.status == "succeeded", report
    t = client.store.step_times(run_id)
    assert t["c"][0] >= t["b"][1]


def test_200_step_fan_out_with_fan_in(engine: Engine):
    leaves = [step(f"s{i}", value=i) for i in range(199)]
    join = step("sum", "concat", items=[[{"$ref": f"s{i}"}] for i in range(199)])
    report = check(engine, plan(*leaves, join))
    assert report.answer == {"sum": list(range(199))}


def test_100_step_chain(engine: Engine):
    steps = [step("s0", "calculate", expression="1")]
    steps += [step(f"s{i}", "calculate", expression="x + 1",
                   variables={"x": {"$ref": f"s{i - 1}"}}) for i in range(1, 100)]
    report = check(engine, plan(*steps))
    assert report.answer == {"s99": 100}


def test_messages_stay_small_whatever_the_plan_size(engine: Engine):
    small = engine.run(plan(step("a"), step("b", deps=["a"]), step("c", deps=["b"])))
    leaves = [step(f"s{i}", value=i) for i in range(150)]
    chain = [step(f"c{i}", deps=[f"c{i - 1}"] if i else [f"s{j}" for j in range(150)])
             for i in range(50)]
    big = engine.run(plan(*leaves, *chain), timeout=120)
    assert big.status == "succeeded"
    sizes_small = [p["size"] for p in engine.published(small.run_id)]
    sizes_big = [p["size"] for p in engine.published(big.run_id)]
    # No join message: the last step joins its run (CHORDAL_INLINE_JOIN). A step that one
    # finish made ready alone runs in that finish's task (CHORDAL_INLINE_STEPS), up to 32
    # in a row: the small chain publishes its head only; the big plan its 150 leaves, and
    # c32 (c0..c31 ran in the last leaf's task, c33..c49 in c32's).
    assert len(sizes_small) == 1 and len(sizes_big) == 151
    assert max(sizes_big) < 1_024
    # Messages carry ids, not the rest of the canvas: no growth with the plan.
    assert max(sizes_big) - max(sizes_small) < 16


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(dag_plans(min_steps=2, max_steps=30))
def test_random_dags_respect_dependencies_and_run_each_step_once(engine: Engine, p: dict):
    check(engine, p)
