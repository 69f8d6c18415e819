"""The benchmark's yardstick must be right, or its figures mean nothing."""

import random

import pytest

from bench.run import SLOTS, lower_bound, random_dag
from planner.language.graph import shape
from planner.language.plan import Plan


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
