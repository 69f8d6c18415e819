"""The wire contract between whoever publishes Chordal's messages and the workers that run
them: task names, queue names, task ids and how messages are encoded.

Both sides import this module and nothing of each other, so a client publishes by name
without loading worker code, and a rename cannot reach only one side.
"""

from __future__ import annotations

from typing import Any

from planner.settings import Settings

# -- queues -----------------------------------------------------------------------------
#: Steps whose tool names no queue, the join and every run-level task but model calls.
DEFAULT_QUEUE = "chordal"
#: Model calls (planner, synthesizer, `llm` steps): scaled apart from tools.
LLM_QUEUE = "llm"

# -- task names ---------------------------------------------------------------------------
STEP_TASK = "chordal.step"              # (run_id, step_id, version): run one step
STEP_ERROR_TASK = "chordal.step_error"  # errback of a step task that failed outside the tool
# (run_id, step_id, worker, terminated, task_id, revoked_at): a step's task was revoked,
# and the worker could not record it at once (the run store was away)
STEP_REVOKED_TASK = "chordal.step_revoked"
FINALIZE_TASK = "chordal.finalize"      # (run_id, version): the join
SYNTHESIZE_TASK = "chordal.synthesize"  # (run_id, version): the synthesizer writes the answer
PLAN_TASK = "chordal.plan"              # (run_id,): the planner plans a goal, then it starts
REPLAN_TASK = "chordal.replan"          # (run_id, step_id, version): a step failed for good
REVIEW_TASK = "chordal.review"          # (run_id, step_id, version): a checkpoint succeeded
# (run_id, step_id, version, conv, turn): one model turn of an agent step (its first turn
# runs in the step's own task)
AGENT_TURN_TASK = "chordal.agent_turn"
# (run_id, step_id, version, conv, turn, index): one tool call an agent step's model asked for
AGENT_CALL_TASK = "chordal.agent_call"

TASKS = (STEP_TASK, STEP_ERROR_TASK, FINALIZE_TASK, SYNTHESIZE_TASK, PLAN_TASK, REPLAN_TASK,
         REVIEW_TASK, STEP_REVOKED_TASK, AGENT_TURN_TASK, AGENT_CALL_TASK)


def task_id(run_id: str, version: int, what: str) -> str:
    """A run-scoped task id, ``<run>.<version>.<step id or role>``: one per (run, plan
    version, step), so it is the idempotency key and finds a run's tasks in Flower."""
    return f"{run_id}.{version}.{what}"


def celery_conf(settings: Settings) -> dict[str, Any]:
    """What publisher and consumer must agree on, as Celery settings."""
    vt = settings.worker.visibility_timeout_s
    on_redis = settings.broker.startswith(("redis://", "rediss://", "unix://"))
    redis_transport = {
        # Redis redelivers an unacknowledged message after this many seconds. It must exceed
        # the longest step plus its retry delays, or a step still running (or waiting for a
        # countdown) is delivered to a second worker.
        "visibility_timeout": vt,
        # How often a worker sweeps for messages whose consumer died: sooner than kombu's
        # default (every ~100 s) so a killed worker's step comes back promptly.
        "unacked_restore_interval": max(1, min(10, vt // 4)),
        "unacked_restore_throttle": 1,
    }
    return {
        # JSON only: a pickle from the broker is code execution.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "broker_transport_options": redis_transport if on_redis else {},
        "result_backend_transport_options": {"visibility_timeout": vt},
        "task_default_queue": DEFAULT_QUEUE,
        "broker_connection_retry_on_startup": True,
    }
