"""Which step a finish lets its task run inline (planner/engine/inline.py), against a real
run store: exactly one step made ready, in a consumed queue, within the bound and the
task's time; never a checkpoint, an agent step or a step of a plan still streaming. What
is not inlined is published as ever; what is inlined is noted dispatched, not published."""

from __future__ import annotations

from typing import Any

from planner.engine import steps
from planner.engine.compiled import KILL_AFTER_S
from planner.engine.dispatch import step_message
from planner.engine.inline import TIME_MARGIN_S, Chain, InlinePolicy
from planner.engine.runtime import Runtime
from planner.wire import DEFAULT_QUEUE, LLM_QUEUE, STEP_TASK
from tests.engine.conftest import GRACE, MakeRuntime, echo, sent, started


def first(rt: Runtime, run: str, policy: InlinePolicy) -> Any:
    return steps.run_step(rt, run, "a", 1, "w", task_id=f"{run}.1.a", inline=policy)


def policy(left: int = 32, time_left: float | None = None,
           queues: tuple[str, ...] = (DEFAULT_QUEUE,)) -> InlinePolicy:
    return InlinePolicy(set(queues), left, lambda: time_left)


def test_the_one_step_made_ready_is_run_next_and_not_published(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a"), echo("b", depends_on=["a"]), echo("c", depends_on=["b"]))
    chosen = policy(left=1)
    assert first(rt, run, chosen) == Chain("b", 1)
    assert not [m for m in sent(rt) if m.task == STEP_TASK]
    state = rt.store.step_state(run, "b")
    assert state.dispatched and state.task == f"{run}.1.b"  # noted: recovered if lost
    # The bound is spent: b's finish publishes c.
    assert steps.run_step(rt, run, "b", 1, "w", task_id=f"{run}.1.b", inline=chosen) is None
    assert [m.args[1] for m in sent(rt) if m.task == STEP_TASK] == ["c"]


def test_two_ready_steps_are_both_published(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a"), echo("b", depends_on=["a"]), echo("c", depends_on=["a"]))
    assert first(rt, run, policy()) is None
    assert sorted(m.args[1] for m in sent(rt) if m.task == STEP_TASK) == ["b", "c"]


def test_what_is_never_inlined(make_rt: MakeRuntime) -> None:
    cases: list[tuple[dict[str, Any], InlinePolicy]] = [
        (echo("b", depends_on=["a"], checkpoint=True), policy()),
        (echo("b", depends_on=["a"]), policy(queues=("elsewhere",))),
        ({"id": "b", "tool": "agent", "depends_on": ["a"],
          "args": {"task": "do it", "tools": ["echo"]}}, policy(queues=(DEFAULT_QUEUE, LLM_QUEUE))),
        (echo("b", depends_on=["a"]), policy(left=0)),
        # What is left of the task's limit must cover the step's whole hold: echo's 300 s,
        # the grace to its hard stop and the process's own end after it.
        (echo("b", depends_on=["a"]), policy(time_left=300.0 + GRACE + KILL_AFTER_S)),
    ]
    for nxt, chosen in cases:
        rt = make_rt()
        run = started(rt, echo("a"), nxt, echo("c", depends_on=["b"]))
        assert first(rt, run, chosen) is None, nxt
        assert [m.args[1] for m in sent(rt) if m.task == STEP_TASK] == ["b"], nxt


def test_a_step_of_a_plan_still_streaming_is_not_inlined(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a"), echo("b", depends_on=["a"]))
    rt.store.set_streaming(run, True)
    assert first(rt, run, policy()) is None
    assert [m.args[1] for m in sent(rt) if m.task == STEP_TASK] == ["b"]


def test_a_task_that_dies_before_its_inline_step_began_is_recovered_by_a_redelivery(
        make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a"), echo("b", depends_on=["a"]))
    assert first(rt, run, policy()) == Chain("b", 1)
    # The worker died here: a's message comes back (acks late) and publishes b, noted
    # 'p' (to be published) by a's finish, as a step whose message was never sent.
    assert steps.run_step(rt, run, "a", 1, "w2", task_id=f"{run}.1.a") is None
    assert [m.args[1] for m in sent(rt) if m.task == STEP_TASK] == ["b"]


def test_a_task_with_the_next_steps_hold_left_runs_it(make_rt: MakeRuntime) -> None:
    rt = make_rt()
    run = started(rt, echo("a"), echo("b", depends_on=["a"]))
    left = 300.0 + GRACE + KILL_AFTER_S + TIME_MARGIN_S
    assert first(rt, run, policy(time_left=left)) == Chain("b", 1)


def test_a_steps_message_bounds_its_chain_with_inline_steps_on(make_rt: MakeRuntime) -> None:
    """On: no soft limit (the worker arms each step's own) and a hard one that outlasts
    the task's step and CHORDAL_INLINE_MAX more, capped below the visibility timeout. Off:
    the step's own limits, as Celery counts them from its task's start."""
    for env, limits in (({}, (None, 3 * (300.0 + GRACE + KILL_AFTER_S))),
                        ({"CHORDAL_VISIBILITY_TIMEOUT_S": "700"}, (None, 700 - 0.2)),
                        ({"CHORDAL_INLINE_STEPS": "false"}, (300.0, 300.0 + GRACE))):
        rt = make_rt(CHORDAL_INLINE_MAX="2", **env)
        run = started(rt, echo("a"))
        message = step_message(rt.compiled(run, 1), run, 1, "a")
        assert (message.soft_time_limit, message.time_limit) == limits, env
