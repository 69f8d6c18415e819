"""Property-based: random DAGs validate; each random mutation is caught and named."""

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.errors import PlanInvalid
from planner.language.graph import topological_order
from planner.language.validation import validate
from tests.strategies import dag_plans

FAST = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@FAST
@given(dag_plans())
def test_random_dags_validate(tools, plan):
    valid = validate(plan, tools)
    deps = valid.plan.dependencies()
    order = topological_order(deps)
    position = {s: i for i, s in enumerate(order)}
    assert all(position[d] < position[s] for s, ups in deps.items() for d in ups)
    assert valid.shape.steps == len(plan["steps"])
    assert sum(len(level) for level in valid.shape.levels) == len(plan["steps"])
    path = valid.shape.critical_path
    assert len(path) == valid.shape.depth
    assert all(path[i] in deps[path[i + 1]] for i in range(len(path) - 1))


def _problems(plan, tools):
    try:
        validate(plan, tools)
    except PlanInvalid as exc:
        return exc.problems
    raise AssertionError("mutated plan validated")


@FAST
@given(dag_plans(min_steps=2), st.data())
def test_an_added_cycle_is_caught(tools, plan, data):
    plan = copy.deepcopy(plan)
    steps = plan["steps"]
    # Close a loop: make an earlier step depend on a later one that reaches it.
    later = data.draw(st.integers(1, len(steps) - 1))
    earlier = data.draw(st.integers(0, later - 1))
    steps[later]["depends_on"] = [*steps[later]["depends_on"], steps[earlier]["id"]]
    steps[earlier]["depends_on"] = [*steps[earlier]["depends_on"], steps[later]["id"]]
    problems = _problems(plan, tools)
    cycles = [p for p in problems if "cycle:" in p.message]
    assert len(cycles) == 1 and cycles[0].field == "depends_on"
    printed = cycles[0].message.split("cycle: ")[1].split(" -> ")
    assert printed[0] == printed[-1] and len(printed) >= 3


@FAST
@given(dag_plans(), st.data())
def test_a_dangling_edge_is_caught(tools, plan, data):
    plan = copy.deepcopy(plan)
    victim = data.draw(st.sampled_from(plan["steps"]))
    victim["depends_on"] = [*victim["depends_on"], "ghost"]
    problems = _problems(plan, tools)
    assert [(p.step, "ghost" in p.message) for p in problems] == [(victim["id"], True)]
    assert problems[0].field.startswith("depends_on[")


@FAST
@given(dag_plans(min_steps=2), st.data())
def test_a_duplicate_id_is_caught(tools, plan, data):
    plan = copy.deepcopy(plan)
    i, j = data.draw(st.lists(st.integers(0, len(plan["steps"]) - 1), min_size=2,
                              max_size=2, unique=True))
    dup = plan["steps"][i]["id"]
    plan["steps"][j] = {**plan["steps"][j], "id": dup}
    problems = _problems(plan, tools)
    assert any(p.step == dup and p.field == "id" and "duplicate" in p.message
               for p in problems)
