"""The run store: runs, steps, outputs and an event log per run, in Redis.

:class:`RunStore` is composed of one part per concept, each a mixin over
:class:`~planner.store.base.StoreBase` (the client, the scripts, the shared reads):

- :mod:`planner.store.lifecycle`: a run created, planned, started, ended, retried;
- :mod:`planner.store.steps`: a step's attempts and outcomes, its dispatch, the leases;
- :mod:`planner.store.agents`: an agent step's turns and tool calls, its conversation;
- :mod:`planner.store.coordination`: claims, replan bookkeeping, the reconciler's watch
  list and repairs, the live workers;
- :mod:`planner.store.views`: the run list, reports, snapshots, events;
- :mod:`planner.store.model_calls`: model usage counters and kept exchanges;
- :mod:`planner.store.streaming`: a plan that starts while it streams in;
- :mod:`planner.store.submission`: a submitted plan recorded and started in one call.
"""

from __future__ import annotations

from planner.store.agents import (
    AgentTransitions,
    CallBegin,
    CallFinish,
    NewCall,
    TurnBegin,
    TurnRecord,
)
from planner.store.base import EVENTS_MAXLEN
from planner.store.coordination import Coordination
from planner.store.lifecycle import Install, RunLifecycle
from planner.store.lost import new_run_id
from planner.store.model_calls import ModelCalls
from planner.store.steps import DEFAULT_LEASE_S, Begin, Finish, StepTransitions
from planner.store.streaming import StreamedPlans
from planner.store.submission import RunSubmission, Submitted
from planner.store.views import RunViews

__all__ = ["DEFAULT_LEASE_S", "EVENTS_MAXLEN", "Begin", "CallBegin", "CallFinish", "Finish",
           "Install", "NewCall", "RunStore", "Submitted", "TurnBegin", "TurnRecord", "new_run_id"]


class RunStore(RunLifecycle, StepTransitions, AgentTransitions, Coordination, RunViews,
               ModelCalls, StreamedPlans, RunSubmission):
    """Runs in Redis. Safe to share between threads (redis-py pools connections)."""
