"""The areas of running steps: the run store, the Celery worker, the engine's timing,
a plan's limits, and what a worker exports (metrics, traces)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from planner.settings import redis_url
from planner.settings.area import DAY, Area, unset_means


class StoreSettings(Area):
    """The run store (Redis): where runs, their events and Celery results live."""

    redis_url: str = Field("redis://127.0.0.1:6379/0",
                           description="Run store and Celery results (and the broker by "
                                       "default); redis+cluster://host:port,host:port,... "
                                       "for a Redis Cluster (then set the broker, and "
                                       "Celery keeps no results).")
    retention_s: int = Field(7 * DAY, ge=60, description="How long a run's record is kept "
                                                         "(seconds; 7 days).")

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return redis_url.check(value)

    @property
    def cluster(self) -> bool:
        """Whether the run store is a Redis Cluster."""
        return redis_url.is_cluster(self.redis_url)

    @property
    def result_backend(self) -> str | None:
        """Celery's result backend: the run store's Redis, or none on a cluster (Celery's
        Redis backend speaks to one node; the run store keeps every output anyway)."""
        return None if self.cluster else self.redis_url


class WorkerSettings(Area):
    """The Celery worker: its broker, how it takes messages, its logs."""

    broker_url: str | None = Field(None, description="Celery broker if not the Redis above, "
                                                     "e.g. amqp://guest:guest@127.0.0.1//",
                                   json_schema_extra=unset_means("the Redis URL"))
    worker_prefetch: int = Field(1, ge=1, description="Messages a worker process reserves.")
    visibility_timeout_s: int = Field(
        4 * 3_600, ge=10,
        description="Seconds before Redis redelivers an unacknowledged step; must exceed the "
                    "longest step plus its retry delays.")
    ack_timeout_s: int = Field(
        1_800, ge=60,
        description="Seconds a non-Redis broker lets a delivery go unacknowledged before it "
                    "closes the channel (RabbitMQ's consumer_timeout: 30 min by default); "
                    "a task's inline chain of steps stays within it.")
    hard_limit_grace_s: float = Field(
        30.0, gt=0, description="Seconds after a step's soft time limit before its process "
                                "is killed (a tool that ignores the soft limit).")
    log_format: Literal["text", "json"] = Field(
        "text", description="Worker log lines: 'text', or 'json' (one object per line; every "
                            "line about a task carries run_id, task_id and, for a step, "
                            "step_id; the lines logged while a step runs carry its attempt; "
                            "a traceback when there is one).")

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        schemes = ("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://")
        if value is not None and not value.startswith(schemes):
            raise ValueError("must be a redis://, rediss:// or amqp:// URL, e.g. "
                             "amqp://guest:guest@127.0.0.1//")
        return value


class EngineSettings(Area):
    """The engine: retries, leases, the reconciler and how long a run may go quiet."""

    retry_backoff_s: float = Field(1.0, ge=0, description="First retry delay of a transient "
                                                          "error; doubles each attempt, with "
                                                          "jitter.")
    retry_backoff_max_s: float = Field(60.0, ge=0, description="Longest retry delay.")
    step_lease_s: float = Field(
        30.0, ge=1, description="Seconds a running step's lease lasts; its worker renews it "
                                "every third of that. A step whose worker died is re-driven "
                                "this long after its last renewal.")
    reconcile_interval_s: float = Field(
        5.0, ge=0, description="Seconds between the reconciler's passes (one worker's "
                               "reconciler is active at a time); 0 turns it off in this "
                               "worker.")
    dispatch_grace_s: float = Field(
        60.0, ge=1, description="Seconds past its due time a ready step may wait (with its "
                                "queue empty) before its message counts as lost, and a run "
                                "may stay quiet before it counts as stalled.")
    lost_grace_s: float = Field(
        10.0, ge=1, description="Seconds past its due time a ready step may go unstarted while "
                                "the broker holds no message for it (in no queue, reserved by "
                                "no worker: Redis broker only) before its message counts as "
                                "lost (a message still queued is never lost); never longer "
                                "than CHORDAL_DISPATCH_GRACE_S.")
    inline_join: bool = Field(
        True, description="A run whose last step finishes ends in that step's task (the "
                          "join's work done there, no chordal.finalize message); off: the "
                          "join is always a task of its own. A run whose answer a model "
                          "writes still publishes its synthesizer's task.")
    inline_steps: bool = Field(
        True, description="A step whose finish makes exactly one step ready runs that step "
                          "in the same task when this worker consumes its queue (no broker "
                          "hop; its own attempt, lease, events, span and time limits, the "
                          "latter armed by the worker around each step: a step's message "
                          "then carries only a hard limit that bounds the chain). See "
                          "planner/engine/inline.py for what it never inlines.")
    inline_max: int = Field(32, ge=1, le=1000, description="Most steps one task runs inline "
                                                            "in a row before the next hops "
                                                            "through the broker (fairness).")
    one_call_submit: bool = Field(
        True, description="A submitted plan's run is recorded, started and its first steps "
                          "noted dispatched in one Redis call before they are published; "
                          "off: one call for each (the path before).")
    max_replans: int = Field(3, ge=0, le=100, description="Most replans of a run (a plan's "
                                                          "max_replans or a run option "
                                                          "overrides it).")


class LimitsSettings(Area):
    """What a plan may hold: steps, bytes, nesting."""

    max_steps: int = Field(200, ge=1, description="Most steps a plan may have.")
    max_args_bytes: int = Field(65_536, ge=64, description="Most bytes of JSON args a step "
                                                           "may have.")
    max_goal_bytes: int = Field(16_384, ge=64, description="Most bytes of a goal.")
    max_description_bytes: int = Field(4_096, ge=64, description="Most bytes of a step's "
                                                                 "description.")
    max_json_depth: int = Field(64, ge=4, le=1_000, description="Deepest nesting of a step's "
                                                                "args or output.")
    max_output_bytes: int = Field(1_048_576, ge=64, description="Most bytes of a step's "
                                                                "output (JSON); a bigger one "
                                                                "fails the step for good.")


class MetricsSettings(Area):
    """Prometheus metrics of a worker (docs/metrics.md)."""

    metrics_port: int | None = Field(
        None, ge=1, le=65_535,
        description="Port of a worker's Prometheus /metrics (its main process merges its "
                    "pool processes' values); unset: no metrics server.")


class TracingSettings(Area):
    """OpenTelemetry traces."""

    trace_exporter: str | None = Field(
        None, description="module:function returning an OpenTelemetry SpanExporter; "
                          "without it, spans go over OTLP/HTTP when "
                          "OTEL_EXPORTER_OTLP_ENDPOINT is set (the standard OTEL_* variables "
                          "apply), and nowhere otherwise.")
