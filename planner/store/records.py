"""What the run store holds and hands out, typed: statuses, error records, step states,
run events and the run report. The client, the CLI and the HTTP API pass these along
unchanged; ``RunReport.model_dump(mode="json")`` is the JSON report."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, model_serializer

from planner.language.plan import Plan
from planner.options import OnBudget as OnBudget  # below the store, for the HTTP clients
from planner.options import RunOptions as RunOptions
from planner.store.agent_records import AgentReport as AgentReport
from planner.store.failure import Compact
from planner.store.failure import ErrorRecord as ErrorRecord
from planner.usage import UsageSummary

# The vocabulary (planner/vocabulary.py), named here too: records are typed with it.
from planner.vocabulary import EARNED_STEP as EARNED_STEP
from planner.vocabulary import FINAL_STEP as FINAL_STEP
from planner.vocabulary import RUN_STATUSES as RUN_STATUSES
from planner.vocabulary import TERMINAL_RUN as TERMINAL_RUN
from planner.vocabulary import WAITING_RUN as WAITING_RUN
from planner.vocabulary import AttemptStatus as AttemptStatus
from planner.vocabulary import EventType as EventType
from planner.vocabulary import RunStatus as RunStatus
from planner.vocabulary import StepStatus as StepStatus

#: The error type of a step whose Celery task was revoked (Flower's Terminate).
REVOKED = "Revoked"


def is_none(value: Any) -> bool:
    return value is None


def is_final(status: str | None) -> bool:
    return status in FINAL_STEP


def moment(stamp: str | None) -> datetime | None:
    """A Redis ``TIME`` as stored ("secs.micros") as an aware UTC datetime."""
    if not stamp:
        return None
    secs, _, micros = stamp.partition(".")
    return datetime.fromtimestamp(int(secs), UTC).replace(microsecond=int(micros or 0))


#: The reasons of the plan versions that count as replans (against ``max_replans``).
REPLAN_REASONS: frozenset[str] = frozenset({"replan", "checkpoint"})



#: A step's ``dispatched`` field when its message is out: "1", published (noted after the
#: publish), "p", to be published (noted by the finish that made it ready, just before
#: its worker publishes it; a recovery of that finish publishes it again), or "s", to be
#: published by the client that submitted its run (noted by the one-call submit before
#: the client publishes the roots; no message comes back if that client dies, so the
#: reconciler publishes them again while nothing of the run has started).
PUBLISHED, NOTED, SUBMITTED = "1", "p", "s"
DISPATCHED = (PUBLISHED, NOTED, SUBMITTED)

class PlanVersion(BaseModel):
    """One installed plan version: why, and how it differs from the one before."""

    version: int
    reason: str
    failed: list[str] = Field(default_factory=list)
    added: list[str] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)
    #: Steps started while the plan streamed in that this version contradicts: cancelled.
    #: Written only when there are some (a record keeps its field names otherwise).
    cancelled: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _drop_none_cancelled(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not data.get("cancelled"):
            data.pop("cancelled", None)
        return data


class Attempt(Compact):
    """One attempt of a step (times from the Redis clock). ``outcome``: what a superseded
    attempt reported (``succeeded``, ``failed``…), which changed nothing."""

    attempt: int
    status: AttemptStatus = AttemptStatus.RUNNING
    worker: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorRecord | None = None
    outcome: str | None = None
    #: The Celery task that ran it (its id in Flower).
    task: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> list[Attempt]:
        """The ``history`` field as stored (a JSON list; cjson writes an empty one as
        ``{}``)."""
        rows = json.loads(text) if text else []
        return [cls(**{**row, "started_at": moment(row.get("started_at")),
                       "finished_at": moment(row.get("finished_at")),
                       "error": ErrorRecord.parse(row.get("error")),
                       "task": row.get("task") or None})
                for row in (rows if isinstance(rows, list) else [])]


class StepState(BaseModel):
    """A step as the run store holds it (times from the Redis clock)."""

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    worker: str | None = None
    started_at: datetime | None = None
    attempt_started_at: datetime | None = None
    finished_at: datetime | None = None
    error: ErrorRecord | None = None
    dispatched: bool = False
    #: Noted dispatched by its run's one-call submit ("s"): the client that submitted the
    #: run was to publish it (see :data:`DISPATCHED`).
    submitted: bool = False
    #: A checkpoint whose dependents wait for its review: the version that holds them.
    held: int | None = None
    #: When it is expected to start (epoch seconds, Redis clock): ready, or published
    #: with a countdown. The reconciler looks for pending steps well past it.
    due: float | None = None
    #: Attempts made before the run's last ``retry`` (``max_retries`` counts from there).
    base: int = 0
    #: The task id it lives under: its last message's, or its last attempt's.
    task: str | None = None
    #: Every attempt, oldest first.
    history: list[Attempt] = Field(default_factory=list)
    #: An agent step's tool calls published and not begun: ``"<turn>.<index>"`` ->
    #: (queue, when due, epoch seconds of the Redis clock).
    calls_due: dict[str, tuple[str, float]] = Field(default_factory=dict)

    @property
    def final(self) -> bool:
        return is_final(self.status)

    @property
    def tries(self) -> int:
        """Attempts made since the run's last retry (what ``max_retries`` bounds)."""
        return self.attempts - self.base

    def superseded(self, attempt: int) -> bool:
        """Whether ``attempt`` reported an outcome after it stopped being the current one."""
        return any(a.attempt == attempt and a.status == AttemptStatus.SUPERSEDED
                   for a in self.history)

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> StepState:
        return cls(status=StepStatus(fields.get("status", StepStatus.PENDING)),
                   attempts=int(fields.get("attempts") or 0), worker=fields.get("worker"),
                   started_at=moment(fields.get("started_at")),
                   finished_at=moment(fields.get("finished_at")),
                   attempt_started_at=moment(fields.get("attempt_started_at")),
                   error=ErrorRecord.parse(fields.get("error")),
                   dispatched=fields.get("dispatched") in DISPATCHED,
                   submitted=fields.get("dispatched") == SUBMITTED,
                   held=int(fields["held"]) if fields.get("held") else None,
                   due=float(fields["due"]) if fields.get("due") else None,
                   base=int(fields.get("base") or 0), task=fields.get("task") or None,
                   history=Attempt.parse(fields.get("history")),
                   calls_due=_calls_due(fields.get("calls_due")))


def _calls_due(text: str | None) -> dict[str, tuple[str, float]]:
    # cjson writes an empty table as {} (an object here too), and the scripts drop the
    # field once nothing is due.
    rows = json.loads(text) if text else {}
    return {key: (str(row[0]), float(row[1])) for key, row in rows.items()} \
        if isinstance(rows, dict) else {}


class RunState(BaseModel):
    """A run's own fields as the run store holds them."""

    status: RunStatus = RunStatus.PENDING
    goal: str = ""
    version: int = 0
    remaining: int = 0
    answer: Any = None
    error: ErrorRecord | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    #: Why it waits (awaiting approval, paused for its budget), when it does.
    reason: str | None = None
    partial: bool = False
    #: Set while a failed run's partial answer is being written: no new step starts.
    ending: ErrorRecord | None = None
    #: Its plan is still streaming in (planner/engine/streaming.py): no join ends it.
    streaming: bool = False

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_RUN

    @property
    def active(self) -> bool:
        """Steps may start: running, and not ending."""
        return self.status == RunStatus.RUNNING and self.ending is None

    @classmethod
    def from_fields(cls, f: dict[str, str]) -> RunState:
        return cls(status=RunStatus(f.get("status", RunStatus.PENDING)),
                   goal=f.get("goal", ""), version=int(f.get("version") or 0),
                   remaining=int(f.get("remaining") or 0),
                   answer=json.loads(f["answer"]) if f.get("answer") else None,
                   error=ErrorRecord.parse(f.get("error")),
                   created_at=moment(f.get("created_at")),
                   finished_at=moment(f.get("finished_at")),
                   reason=f.get("reason") or None, partial=f.get("partial") == "1",
                   ending=ErrorRecord.parse(f.get("ending")),
                   streaming=f.get("streaming") == "1")


RepairKind = Literal["lease_expired", "message_lost", "never_dispatched", "stalled_run",
                     "unrecoverable"]


class Repair(BaseModel):
    """What the reconciler found wrong with a run and re-drives (a ``run.repaired``
    event)."""

    kind: RepairKind
    step: str | None = None
    why: str


class RunSnapshot(BaseModel):
    """Everything the reconciler reads of one run, at one moment of the Redis clock."""

    run_id: str
    now: float
    run: RunState
    steps: dict[str, StepState]
    #: Steps of the current plan version -> dependencies not finished.
    waiting: dict[str, int]
    #: Lease name (step id, ``@replan``…) -> expiry, epoch seconds.
    leases: dict[str, float]
    claims: dict[str, str]
    unhandled: list[str]
    #: The newest event: stream id and time (epoch seconds).
    last_event: str | None = None
    last_event_at: float | None = None
    #: Stalled-run repairs in a row with no event since but their own.
    nudges: int = 0
    nudged_at: str | None = None


class WorkerInfo(BaseModel):
    """What a live worker says of itself (refreshed every few seconds, with a TTL)."""

    hostname: str
    pid: int | None = None
    queues: list[str] = Field(default_factory=list)
    #: Tool name -> its queue.
    tools: dict[str, str] = Field(default_factory=dict)
    modules: list[str] = Field(default_factory=list)


class StepReport(BaseModel):
    """One step in a run report."""

    status: StepStatus
    output: Any = None
    error: ErrorRecord | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    #: Every attempt, oldest first, across retries of the run (``attempts`` counts them).
    history: list[Attempt] = Field(default_factory=list)
    #: An agent step's conversation: its turns and tool calls (absent for other steps).
    #: Left out by ``exclude_if``, not a model serializer: the OpenAPI schema keeps the
    #: report's shape (a wrap serializer's ``Any`` would make it ``{}``).
    agent: AgentReport | None = Field(None, exclude_if=is_none)


class RunReport(BaseModel):
    """A run: its status, answer or error, every step, the plan and the model usage."""

    run_id: str
    status: RunStatus
    goal: str
    answer: Any = None
    error: ErrorRecord | None = None
    plan_version: int = 0
    created_at: datetime | None = None
    finished_at: datetime | None = None
    steps: dict[str, StepReport] = Field(default_factory=dict)
    plan: Plan | None = None
    usage: UsageSummary | None = None
    #: The answer was written from what a failed run earned.
    partial: bool = False
    #: Why the run waits for a person, while it does.
    reason: str | None = None
    #: Every installed plan version, oldest first; ``replans`` counts those after the first.
    versions: list[PlanVersion] = Field(default_factory=list)
    replans: int = 0

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_RUN

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=indent, ensure_ascii=False)


class RunSummary(BaseModel):
    """One line of ``chordal runs``."""

    run_id: str
    status: RunStatus
    goal: str
    created_at: datetime | None = None
    finished_at: datetime | None = None
    plan_version: int = 0
    #: For ``--stuck``: seconds since its last event, and what it waits for.
    quiet_s: float | None = None
    waiting_for: str | None = None

    @classmethod
    def of(cls, run_id: str, run: RunState, **extra: Any) -> RunSummary:
        return cls(run_id=run_id, status=run.status, goal=run.goal,
                   created_at=run.created_at, finished_at=run.finished_at,
                   plan_version=run.version, **extra)


class RunEvent(BaseModel):
    """One entry of a run's event stream. ``id`` is the stream id (a resumable cursor)."""

    id: str
    #: A word of the vocabulary; a word it does not know (written by a newer release, in
    #: a rolling upgrade or by a newer server to an older client) is kept as a string
    #: rather than failing the whole stream.
    type: EventType | str = Field(union_mode="left_to_right")
    step: str | None = None
    #: The run's status after a ``run.*`` or ``plan.*`` event, the step's after a
    #: ``step.*`` one (a status it does not know stays a string, as a type does).
    status: RunStatus | StepStatus | str = Field(union_mode="left_to_right")
    at: datetime | None = None
    data: Any = None

    @classmethod
    def from_stream(cls, event_id: str, fields: dict[str, str]) -> RunEvent:
        raw = fields.get("data") or ""
        try:
            data = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            data = raw
        return cls(id=event_id, type=fields["type"], step=fields.get("step") or None,
                   status=fields["status"], at=moment(fields.get("ts")), data=data)
