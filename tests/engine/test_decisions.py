"""The engine's decisions, without Celery: a real Redis run store and the in-memory
publisher that records what would be published. Each test calls the engine as a worker
would (one delivery, one errback, one join) and checks the messages and the store."""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis

from planner.engine import join, replan, start, steps
from planner.engine.dispatch import MemoryPublisher, Message
from planner.engine.outcomes import MODEL_TASK_RETRIES, Failed, Retry, model_retry
from planner.engine.runtime import Runtime
from planner.errors import PermanentError, TransientError
from planner.language.validation import validate
from planner.settings import Settings
from planner.store.runs import RunStore
from planner.tools import ToolRegistry
from planner.wire import (
    DEFAULT_QUEUE,
    FINALIZE_TASK,
    LLM_QUEUE,
    REPLAN_TASK,
    STEP_ERROR_TASK,
    STEP_TASK,
)
from tests.engine.conftest import no_nonce, redis_url, replan_expected, step_limits


@pytest.fixture
def rt(monkeypatch: pytest.MonkeyPatch, tools: ToolRegistry) -> Runtime:
    for var in ("ANTHROPIC_API_KEY", "CHORDAL_LLM"):
        monkeypatch.delenv(var, raising=False)
    url = redis_url()
    redis.Redis.from_url(url).flushdb()  # no Redis is an error here, never a skip
    # Every message the engine sends, the join's included (test_inline_join.py: the join
    # done in the last step's task).
    settings = Settings.from_env({"CHORDAL_REDIS_URL": url, "CHORDAL_RETRY_BACKOFF_S": "0.05",
                                  "CHORDAL_RETRY_BACKOFF_MAX_S": "0.2",
                                  "CHORDAL_INLINE_JOIN": "false"})
    runtime = Runtime(settings, MemoryPublisher(), tools=tools, store=RunStore.from_url(url),
                      model=None)
    assert runtime.model is None
    return runtime


def sent(rt: Runtime) -> list[Message]:
    assert isinstance(rt.publisher, MemoryPublisher)
    return rt.publisher.sent


def step_ids(rt: Runtime) -> list[str]:
    return [m.args[1] for m in sent(rt) if m.task == STEP_TASK]


def record(rt: Runtime, *plan_steps: dict[str, Any]) -> str:
    plan = validate({"goal": "test", "steps": list(plan_steps)}, rt.tools).plan
    return rt.store.create_run(plan.goal, plan, plan.dependencies())


def started(rt: Runtime, *plan_steps: dict[str, Any]) -> str:
    run = record(rt, *plan_steps)
    start.start_run(rt, run)
    sent(rt).clear()
    return run


def expected_step(run: str, step: str, queue: str, timeout: float, tool: str = "echo"
                  ) -> Message:
    return Message(STEP_TASK, (run, step, 1), queue, task_id=f"{run}.1.{step}",
                   soft_time_limit=step_limits(timeout)[0],
                   time_limit=step_limits(timeout)[1], ignore_result=True,
                   shadow=f"{STEP_TASK} {tool} {step}",
                   errback=Message(STEP_ERROR_TASK, (run, step, 1), DEFAULT_QUEUE,
                                   task_id=f"{run}.1.{step}.error", immutable=False,
                                   shadow=f"{STEP_ERROR_TASK} {step}"))


def echo(sid: str, value: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "echo", "args": {"value": value}, **extra}


def failing(sid: str, times: int = -1, kind: str = "permanent", **extra: Any) -> dict[str, Any]:
    return {"id": sid, "tool": "fail", "args": {"times": times, "kind": kind, "value": sid},
            **extra}


N_SHAPE = (echo("a"), echo("b"), echo("c", depends_on=["a"]),
           echo("d", depends_on=["a", "b"]))


def test_start_publishes_the_roots_once(rt: Runtime) -> None:
    run = record(rt, echo("a", timeout_s=7), {"id": "m", "tool": "llm", "args": {"prompt": "x"}},
                 echo("c", depends_on=["a", "m"]))
    start.start_run(rt, run)
    assert sent(rt) == [expected_step(run, "a", DEFAULT_QUEUE, 7.0),
                        expected_step(run, "m", LLM_QUEUE, 300.0, "llm")]
    assert rt.store.run_state(run).status == "running"
    states = rt.store.step_states(run)
    assert states["a"].dispatched and states["m"].dispatched and not states["c"].dispatched

    start.start_run(rt, run)  # a repeated start: the roots went out already
    assert len(sent(rt)) == 2

    cancelled = record(rt, echo("a"))
    rt.store.cancel(cancelled)
    start.start_run(rt, cancelled)
    assert len(sent(rt)) == 2
    assert rt.store.run_state(cancelled).status == "cancelled"


def test_each_step_publishes_only_the_dependents_it_made_ready(rt: Runtime) -> None:
    run = started(rt, *N_SHAPE)
    assert steps.run_step(rt, run, "a", 1, "w1") is None
    assert step_ids(rt) == ["c"]
    assert steps.run_step(rt, run, "b", 1, "w1") is None
    assert step_ids(rt) == ["c", "d"]
    assert sent(rt)[1] == expected_step(run, "d", DEFAULT_QUEUE, 300.0)
    # A redelivered succeeded step: the tool is not rerun. Its finish noted c to be
    # published (before its worker published it, in the same call): a redelivery cannot
    # know whether they went out, so it sends them again, once (each still runs once:
    # begin_step).
    assert rt.store.step_state(run, "c").dispatched
    assert steps.run_step(rt, run, "a", 1, "w2") is None
    assert step_ids(rt) == ["c", "d", "c", "d"]
    assert steps.run_step(rt, run, "a", 1, "w2") is None  # noted published now
    assert len(sent(rt)) == 4
    assert rt.store.step_state(run, "a").attempts == 1
    assert rt.store.step_state(run, "a").worker == "w1"

    steps.run_step(rt, run, "c", 1, "w1")
    steps.run_step(rt, run, "c", 1, "w1")  # its second message
    assert rt.store.step_state(run, "c").attempts == 1
    assert len(sent(rt)) == 4  # d is still to come: no join yet
    steps.run_step(rt, run, "d", 1, "w1")
    join_message = Message(FINALIZE_TASK, (run, 1), DEFAULT_QUEUE, f"{run}.1.finalize")
    assert sent(rt)[4:] == [join_message]
    # Every step is final and the join has not ended the run: a redelivery cannot know
    # whether the join went out, so it sends it again (the join is idempotent).
    steps.run_step(rt, run, "b", 1, "w2")
    assert sent(rt)[4:] == [join_message, join_message]
    join.finalize(rt, run, 1)
    steps.run_step(rt, run, "b", 1, "w2")  # the run is over: nothing more
    assert len(sent(rt)) == 6


def test_redelivery_publishes_ready_dependents_never_dispatched(rt: Runtime) -> None:
    run = started(rt, *N_SHAPE)
    # A worker recorded a's success and died before publishing what it unlocked.
    assert rt.store.begin_step(run, "a", 1, "w1", 4).state == "run"
    finish = rt.store.finish_step(run, "a", output=1, worker="w1")
    assert (finish.ready, finish.version) == (("c",), 1)
    assert sent(rt) == []

    steps.run_step(rt, run, "a", 1, "w2")
    assert sent(rt) == [expected_step(run, "c", DEFAULT_QUEUE, 300.0)]
    steps.run_step(rt, run, "a", 1, "w2")  # again: c is marked dispatched now
    assert len(sent(rt)) == 1


def test_transient_failure_with_attempts_left_is_retried(rt: Runtime) -> None:
    run = started(rt, failing("f", times=1, kind="transient"))
    decision = steps.run_step(rt, run, "f", 1, "w1")
    assert isinstance(decision, Retry)
    assert 0 < decision.countdown <= 0.2
    state = rt.store.step_state(run, "f")
    assert state.status == "pending" and state.attempts == 1
    assert state.error is not None
    assert (state.error.type, state.error.transient, state.error.attempt) == \
        ("TransientError", True, 1)
    assert state.error.retry_in_s == round(decision.countdown, 3)
    assert sent(rt) == []

    assert steps.run_step(rt, run, "f", 1, "w1") is None  # attempt 2 succeeds
    assert rt.store.outputs(run, ["f"]) == {"f": "f"}
    assert [m.task for m in sent(rt)] == [FINALIZE_TASK]


def test_permanent_failure_with_fail_policy_ends_the_run(rt: Runtime) -> None:
    run = started(rt, failing("a", on_failure="fail"), echo("b", depends_on=["a"]))
    # Recorded and acted on, the tool's error comes back for the task to raise.
    decision = steps.run_step(rt, run, "a", 1, "w1")
    assert isinstance(decision, Failed) and isinstance(decision.error, PermanentError)
    state = rt.store.run_state(run)
    assert state.status == "failed"
    assert state.error is not None and state.error.step == "a"
    assert state.error.policy == "fail"
    assert state.error.cause is not None and state.error.cause.type == "PermanentError"
    assert rt.store.step_state(run, "a").status == "failed"
    assert rt.store.step_state(run, "a").attempts == 1  # permanent: never retried
    assert sent(rt) == []
    assert isinstance(steps.run_step(rt, run, "b", 1, "w1"), steps.Dropped)  # the run is over
    assert rt.store.step_state(run, "b").attempts == 0
    assert sent(rt) == []


def test_skip_policy_finishes_the_step_and_dependents_read_none(rt: Runtime) -> None:
    run = started(rt, failing("a", on_failure="skip"), echo("b", {"$ref": "a"}))
    assert isinstance(steps.run_step(rt, run, "a", 1, "w1"), Failed)
    state = rt.store.step_state(run, "a")
    assert state.status == "skipped"
    assert state.error is not None and state.error.type == "PermanentError"
    assert sent(rt) == [expected_step(run, "b", DEFAULT_QUEUE, 300.0)]
    steps.run_step(rt, run, "b", 1, "w1")
    assert rt.store.step_state(run, "b").status == "succeeded"
    assert rt.store.outputs(run, ["a", "b"]) == {"a": None, "b": None}
    assert sent(rt)[-1].task == FINALIZE_TASK
    join.finalize(rt, run, 1)
    assert rt.store.run_state(run).status == "succeeded"
    assert rt.store.run_state(run).answer == {"b": None}


def test_replan_policy_publishes_a_replan_handled_once(rt: Runtime) -> None:
    run = started(rt, echo("x"), failing("a", depends_on=["x"]), failing("b", depends_on=["x"]))
    steps.run_step(rt, run, "x", 1, "w1")
    sent(rt).clear()
    steps.run_step(rt, run, "a", 1, "w1")
    assert no_nonce(sent(rt)) == [replan_expected(run, "a", 1)]
    assert rt.store.run_state(run).status == "running"  # replan decides, not the step

    replan.replan(rt, run, "a", 1)
    replan.replan(rt, run, "a", 1)
    replan.replan(rt, run, "b", 1)  # another failure of the same version: claimed already
    state = rt.store.run_state(run)
    assert state.status == "failed"
    assert state.error is not None
    assert (state.error.step, state.error.policy, state.error.completed) == \
        ("a", "replan", ["x"])
    assert state.error.cause is not None and state.error.cause.type == "PermanentError"
    # Without a model there is no replanner: the run ends at once with what it earned.
    assert (state.partial, state.answer, state.ending) == (True, {"partial": {"x": 1}}, None)
    assert rt.store.step_state(run, "b").status == "cancelled"
    assert rt.store.unhandled(run) == ["a"]
    assert len(sent(rt)) == 1  # no synthesizer call, no replan
    finished = [e for e in rt.store.events(run) if e.type == "run.finished"]
    assert len(finished) == 1
    assert rt.store.r.hgetall(f"chordal:run:{{{run}}}:claims") == {"replan:1": "a"}


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_spent_attempts_apply_the_policy_as_worker_lost(rt: Runtime, policy: str) -> None:
    run = started(rt, echo("a", max_retries=0, on_failure=policy), echo("b", {"$ref": "a"}))
    # The only attempt began and its worker was lost: the redelivery finds none left.
    assert rt.store.begin_step(run, "a", 1, "w0", 1, lease_s=0).state == "run"
    decision = steps.run_step(rt, run, "a", 1, "w1")
    assert isinstance(decision, Failed) and "WorkerLost" in str(decision.error)
    assert rt.store.outputs(run, ["a"]) == ({"a": None} if policy == "skip" else {})
    error = rt.store.step_state(run, "a").error
    assert error is not None
    assert (error.type, error.attempt) == ("WorkerLost", 1)
    if policy == "fail":
        run_state = rt.store.run_state(run)
        assert run_state.status == "failed"
        assert run_state.error is not None and run_state.error.cause is not None
        assert run_state.error.cause.type == "WorkerLost"
        assert sent(rt) == []
    else:
        assert rt.store.step_state(run, "a").status == "skipped"
        assert step_ids(rt) == ["b"]


def test_errback_on_a_running_step_retries_once_per_attempt(rt: Runtime) -> None:
    run = started(rt, echo("a"))
    assert rt.store.begin_step(run, "a", 1, "w1", 4).state == "run"  # then killed
    steps.step_failed_outside(rt, f"{run}.1.a", run, "a", 1)
    state = rt.store.step_state(run, "a")
    assert state.status == "pending"
    assert state.error is not None and (state.error.type, state.error.attempt) == \
        ("TaskFailed", 1)
    [message] = sent(rt)
    assert message.task == STEP_TASK and message.args == (run, "a", 1)
    # A re-drive: a task id of its own (the first may have been revoked).
    assert message.task_id and re.fullmatch(rf"{run}\.1\.a\.[0-9a-f]{{8}}", message.task_id)
    assert message.countdown is not None and 0 < message.countdown <= 0.2
    assert message.errback is not None and message.errback.task == STEP_ERROR_TASK

    steps.step_failed_outside(rt, f"{run}.1.a", run, "a", 1)  # fired twice: acts once
    assert len(sent(rt)) == 1
    assert steps.run_step(rt, run, "a", 1, "w2") is None  # the resent attempt succeeds
    assert rt.store.step_state(run, "a").attempts == 2
    assert sent(rt)[-1].task == FINALIZE_TASK


def test_errback_of_a_step_failed_on_purpose_does_nothing_more(rt: Runtime) -> None:
    """A step that failed for good comes back as Failed for its task to raise, after its
    policy is applied; the errback that the raise fires finds its claim taken."""
    run = started(rt, failing("a"), echo("b"))
    decision = steps.run_step(rt, run, "a", 1, "w1", task_id=f"{run}.1.a")
    assert isinstance(decision, Failed) and isinstance(decision.error, PermanentError)
    error = rt.store.step_state(run, "a").error
    assert error is not None and error.traceback and "fails as asked" in error.traceback
    assert [m.task for m in sent(rt)] == [REPLAN_TASK]
    steps.step_failed_outside(rt, f"{run}.1.a", run, "a", 1)
    assert [m.task for m in sent(rt)] == [REPLAN_TASK]  # no second replan


def test_a_retry_carries_the_tools_error(rt: Runtime) -> None:
    run = started(rt, failing("a", times=1, kind="transient"))
    decision = steps.run_step(rt, run, "a", 1, "w1", task_id=f"{run}.1.a")
    assert isinstance(decision, Retry) and isinstance(decision.error, TransientError)


def test_errback_on_a_final_step_recovers(rt: Runtime) -> None:
    run = started(rt, *N_SHAPE)
    rt.store.begin_step(run, "a", 1, "w1", 4)
    rt.store.finish_step(run, "a", output=1, worker="w1")
    steps.step_failed_outside(rt, f"{run}.1.a", run, "a", 1)
    assert sent(rt) == [expected_step(run, "c", DEFAULT_QUEUE, 300.0)]
    assert rt.store.step_state(run, "a").status == "succeeded"


def test_finalize_without_a_model_answers_with_the_sinks(rt: Runtime) -> None:
    run = started(rt, echo("a", 2), echo("b", {"$ref": "a"}), echo("c", "three"))
    for sid in ("a", "b", "c"):
        steps.run_step(rt, run, sid, 1, "w1")
    assert [m.task for m in sent(rt)][-1] == FINALIZE_TASK
    sent(rt).clear()
    join.finalize(rt, run, 1)
    state = rt.store.run_state(run)
    assert state.status == "succeeded"
    assert state.answer == {"b": 2, "c": "three"}
    assert sent(rt) == []


def test_finalize_with_unfinished_steps_does_nothing(rt: Runtime) -> None:
    run = started(rt, echo("a"), echo("b", depends_on=["a"]))
    steps.run_step(rt, run, "a", 1, "w1")
    sent(rt).clear()
    join.finalize(rt, run, 1)
    state = rt.store.run_state(run)
    assert (state.status, state.answer) == ("running", None)
    assert sent(rt) == []


def test_model_retry(rt: Runtime) -> None:
    settings = rt.settings
    error = TransientError("429", retry_after_s=5.0)
    throttled = model_retry(settings, error, 0)
    assert throttled is not None and throttled.countdown == 5.0
    assert throttled.error is error  # what Celery and Flower show for the retry
    plain = model_retry(settings, TransientError("529"), 2)
    assert plain is not None and 0 < plain.countdown <= 0.2
    assert model_retry(settings, PermanentError("bad key"), 0) is None
    assert model_retry(settings, TransientError("529"), MODEL_TASK_RETRIES - 1) is not None
    assert model_retry(settings, TransientError("529"), MODEL_TASK_RETRIES) is None


def test_cancelled_run_runs_no_tool(rt: Runtime) -> None:
    run = started(rt, failing("a", times=-1, kind="transient"))
    assert rt.store.cancel(run)
    assert isinstance(steps.run_step(rt, run, "a", 1, "w1"), steps.Dropped)
    state = rt.store.step_state(run, "a")
    # Abandoned by its run before it began: cancelled, never attempted.
    assert (state.status, state.attempts, state.error) == ("cancelled", 0, None)
    assert sent(rt) == []
    assert rt.store.run_state(run).status == "cancelled"
