"""The benchmark's yardstick must be right, or its figures mean nothing."""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import Tally, pct, per_step_ms, per_step_tally, ratio, tally_of
from bench.run import SLOTS, lower_bound, parse_args, random_dag, section_markers
from planner.language.graph import shape
from planner.language.plan import Plan

ROOT = Path(__file__).resolve().parents[1]


def test_lower_bound_is_the_larger_of_critical_path_and_work_over_slots():
    plan = {"goal": "g", "steps": [
        {"id": "a", "tool": "sleep", "args": {"seconds": 0.1}},
        {"id": "b", "tool": "sleep", "args": {"seconds": 0.5}},
        {"id": "c", "tool": "sleep", "args": {"seconds": 0.2}, "depends_on": ["a"]},
        {"id": "d", "tool": "sleep", "args": {"seconds": 0.3}, "depends_on": ["a", "b"]},
    ]}
    assert lower_bound(plan) == pytest.approx(0.8)  # b -> d; total 1.1 / SLOTS is less


def test_random_dags_fit_the_worker():
    rng = random.Random(1)
    for _ in range(5):
        dag = random_dag(rng)
        assert 30 <= len(dag["steps"]) <= 60
        assert shape(Plan.model_validate(dag).dependencies()).widest <= SLOTS


def test_help_prints_usage_and_touches_no_redis():
    # Port 1 is closed: a run that reached for Redis would fail, not exit 0.
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--help",
         "--redis-url", "redis://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bench/run.py")
    for option in ("--redis-url", "--reps", "--quick", "--write"):
        assert option in done.stdout


def test_options_default_to_no_side_effect():
    args = parse_args(["--redis-url", "redis://h:1"])
    assert (args.redis_url, args.write, args.quick, args.reps) == ("redis://h:1", False, False, 3)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 51)]  # 1..50, shuffled order must not matter
    random.Random(3).shuffle(values)
    assert pct(values, 0.5) == 25.0  # index round(0.5 * 49) = 24 (round half to even)
    assert pct(values, 0.95) == 48.0  # index round(46.55) = 47
    assert pct([7.0], 0.95) == 7.0
    with pytest.raises(ValueError):
        pct([], 0.5)


def test_per_step_arithmetic():
    assert per_step_ms(0.5, 100) == pytest.approx(5.0)
    assert ratio(6.0, 4.0) == pytest.approx(1.5)
    assert ratio(1.0, 0.0) == float("inf")


def test_redis_cost_per_step_leaves_out_the_idle_rate():
    stats = {"total_commands_processed": 1300, "total_net_input_bytes": 9000,
             "total_net_output_bytes": 11000}
    before = tally_of({"total_commands_processed": 100, "total_net_input_bytes": 1000,
                       "total_net_output_bytes": 1000})
    idle_per_s = Tally(commands=50, bytes=1000)
    # 1,200 commands and 18,000 bytes over 2 s, of which the idle worker made 100 and 2,000.
    cost = per_step_tally(tally_of(stats) - before, idle_per_s, elapsed_s=2.0, steps=100)
    assert cost == Tally(commands=11.0, bytes=160.0)
    assert per_step_tally(Tally(1, 1), idle_per_s, 2.0, 10) == Tally(0.0, 0.0)


def test_doc_sections_are_replaced_in_place_keyed_by_label():
    start, end = section_markers("before #20")
    assert (start, end) == ("<!-- run:before--20:start -->", "<!-- run:before--20:end -->")
    assert section_markers("after #20")[0] != start


def test_load_lattice_waits_five_back_and_names_its_values():
    from bench.load import WIDTH, lattice

    plan = Plan.model_validate(lattice(3, 12))
    deps = plan.dependencies()
    assert not deps["s4"]
    assert set(deps["s7"]) == {f"s{7 - WIDTH}"}
    assert shape(deps).widest == WIDTH
    assert [s.args["value"] for s in plan.steps][:2] == ["3:0", "3:1"]


def test_load_counts_steps_that_ran_twice_and_wrong_or_missing_outputs():
    from types import SimpleNamespace

    from bench.load import errors

    def report(run_id: str, outputs: dict[str, str]) -> SimpleNamespace:
        return SimpleNamespace(run_id=run_id, steps={
            sid: SimpleNamespace(status="succeeded", output=out) for sid, out in outputs.items()})

    good = report("r0", {"s0": "0:0", "s1": "0:1"})
    bad = report("r1", {"s0": "1:0", "s1": "0:1"})  # s1 holds another run's value
    counts = {"r0|s0": 1, "r0|s1": 2, "r1|s0": 1}  # r0's s1 ran twice, r1's s1 never counted
    assert errors([good, bad], counts, 2) == (1, 1)
    assert errors([good], {"r0|s0": 1, "r0|s1": 1}, 3) == (0, 1)  # s2 missing


def test_load_help_prints_usage_and_touches_no_redis():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--help",
         "--redis-url", "redis://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: bench/load.py")
