"""Every Redis key Chordal writes, named in one place.

A run's keys share a hash tag (``{run_id}``), so one run's scripts touch one cluster slot;
the few global keys are written apart from any run's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "chordal"
#: Sorted set of run ids by creation time (the run index).
RUN_INDEX = f"{PREFIX}:runs"
#: Sorted set of model-call times: the rate limit shared by every worker.
MODEL_CALLS = f"{PREFIX}:llm:calls"
#: Sorted set of the runs that have not ended, by creation time: what the reconciler
#: watches.
ACTIVE_RUNS = f"{PREFIX}:active"
#: The lock that makes one worker's reconciler the active one.
RECONCILER_LOCK = f"{PREFIX}:reconciler"
#: When this store was first used (no expiry): gone, the store lost its data.
STORE_MARKER = f"{PREFIX}:store"
#: Hash: repair kind -> how many the reconcilers made.
REPAIRS = f"{PREFIX}:repairs"
#: Sorted set of the runs whose callback is due, by when (epoch ms, Redis clock; 0: now).
#: A worker claims one by moving its time a lease ahead, so a worker that dies mid-delivery
#: leaves it to another. Both callback keys share a hash tag: one script touches both.
CALLBACKS_DUE = f"{PREFIX}:{{callbacks}}:due"
#: Hash: run id -> delivery attempts of its pending callback.
CALLBACK_ATTEMPTS = f"{PREFIX}:{{callbacks}}:attempts"


def worker_key(hostname: str) -> str:
    """String (JSON, with a TTL): a live worker's queues and tools, refreshed while it
    runs."""
    return f"{PREFIX}:worker:{hostname}"


WORKER_PATTERN = worker_key("*")


def owner_runs_key(owner: str) -> str:
    """Sorted set of one API key's run ids by creation time: what ``GET /v1/runs`` lists
    for that key (the key's name is the tenant)."""
    return f"{PREFIX}:owner:{owner}:runs"


def idempotency_key(owner: str, key_hash: str) -> str:
    """String (JSON, with a TTL): the run an ``Idempotency-Key`` created, and the hash of
    the body it came with; scoped per API key so tenants cannot collide."""
    return f"{PREFIX}:idem:{owner}:{key_hash}"


def api_calls_key(owner: str) -> str:
    """Sorted set of run creations by one API key: its rate limit, shared by every API
    replica."""
    return f"{PREFIX}:api:calls:{owner}"


def call_lease(step_id: str, turn: int, index: int) -> str:
    """The lease of an agent step's tool call in its run's ``:leases`` hash (held by the
    worker running the call, as a step's lease is under the step's id)."""
    return f"~{step_id}|{turn}|{index}"


@dataclass(frozen=True)
class RunKeys:
    """The keys of one run."""

    run_id: str

    def _k(self, suffix: str) -> str:
        return f"{PREFIX}:run:{{{self.run_id}}}{suffix}"

    @property
    def run(self) -> str:
        """Hash: goal, status, version, remaining, answer, error, options, times."""
        return self._k("")

    @property
    def steps(self) -> str:
        """Hash: ``<step>.<field>`` -> value (status, attempts, worker, times, error)."""
        return self._k(":steps")

    @property
    def outputs(self) -> str:
        """Hash: step id -> output JSON."""
        return self._k(":outputs")

    @property
    def deps(self) -> str:
        """Hash: step id -> dependencies not finished yet."""
        return self._k(":deps")

    @property
    def dependents(self) -> str:
        """Hash: step id -> JSON list of the steps that wait for it (current version)."""
        return self._k(":dependents")

    @property
    def versions(self) -> str:
        """Hash: plan version -> JSON record (why it was installed, steps added/kept/
        dropped)."""
        return self._k(":versions")

    @property
    def leases(self) -> str:
        """Hash: step id (or ``@planner``, ``@replanner``…: a run-level task; or
        ``~<step>|<t>|<i>``: an agent step's tool call) -> lease expiry, epoch seconds of
        the Redis clock, renewed while its worker works on it."""
        return self._k(":leases")

    @property
    def unhandled(self) -> str:
        """Set: failed steps that wait for the next replan."""
        return self._k(":unhandled")

    @property
    def plans(self) -> str:
        """Hash: plan version -> plan JSON."""
        return self._k(":plans")

    @property
    def events(self) -> str:
        """Stream: the run's events."""
        return self._k(":events")

    @property
    def claims(self) -> str:
        """Hash: once-only claims (``replan:<version>``, errbacks) -> holder."""
        return self._k(":claims")

    @property
    def usage(self) -> str:
        """Hash: ``role|model|step|metric`` -> model usage counters."""
        return self._k(":usage")

    @property
    def exchanges(self) -> str:
        """List: the run's model calls in order, each JSON (role, turn, prompt, response
        content and usage): what ``chordal record`` turns into a replayable file."""
        return self._k(":exchanges")

    @property
    def agent(self) -> str:
        """Hash: agent steps' conversations (planner/store/agents.py):
        ``<step>|<conv>|<t>`` a turn, ``<step>|<conv>|<t>|<i>`` a tool call (JSON each),
        ``<step>|<conv>|<t>|left`` its calls without a result, ``<step>|<conv>|last`` the
        last turn recorded."""
        return self._k(":agent")

    def all(self) -> list[str]:
        return [self.run, self.steps, self.outputs, self.deps, self.dependents, self.plans,
                self.versions, self.unhandled, self.events, self.claims, self.usage,
                self.leases, self.exchanges, self.agent]
