"""Prometheus metrics: what Chordal counts, and how a process exports it.

Counters and histograms are recorded where the run store records an outcome, and only
when its script says the transition happened now (``finish_run`` ended the run, ``fail_step``
recorded the failure...): a transition reached from several processes, or repeated by a
redelivered message, counts once. Celery's task states cannot do this: a task that
"succeeded" may have been a duplicate that changed nothing, or a step that failed for good
and was skipped. Labels stay bounded: tools, queues, roles, models and the statuses and
kinds the records define; never run or step ids.

Gauges that describe the fleet (runs not ended, queue depth) are read from Redis and the
broker at scrape time by a :class:`FleetCollector` in one process (a worker's main process,
or the HTTP service), never added up across processes.

Prefork workers record in pool processes: prometheus-client's multiprocess mode keeps each
process's values in a file of ``PROMETHEUS_MULTIPROC_DIR``, and the worker's main process
merges them when scraped. The mode is chosen by that variable when prometheus-client is
imported, so when ``CHORDAL_METRICS_PORT`` is set and the variable is not, it is set here,
before the import (``planner`` imports this module before anything else uses
prometheus-client).
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from wsgiref.simple_server import WSGIServer

METRICS_PORT_VAR = "CHORDAL_METRICS_PORT"
MULTIPROC_VAR = "PROMETHEUS_MULTIPROC_DIR"


def _choose_multiprocess_dir() -> None:
    port = os.environ.get(METRICS_PORT_VAR, "").strip()
    if port and not os.environ.get(MULTIPROC_VAR):
        path = os.path.join(tempfile.gettempdir(), f"chordal-metrics-{port}")
        os.makedirs(path, exist_ok=True)
        os.environ[MULTIPROC_VAR] = path


_choose_multiprocess_dir()

# After the variable is settled: prometheus-client picks its value class at import.
from prometheus_client import (  # noqa: E402
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    make_asgi_app,
    make_wsgi_app,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.exposition import choose_encoder  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

from planner.wire import DEFAULT_QUEUE, LLM_QUEUE  # noqa: E402

log = logging.getLogger("chordal.metrics")

#: The label value of a step whose tool or queue the run store does not know (a run
#: recorded before the store kept them).
UNKNOWN = "unknown"

# Steps last from milliseconds (echo) to many minutes (a model call, a crawl).
_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
                 600, 1800)
_RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200,
                21600)
# 1.0 is a run that took exactly its critical path; the tail is queueing and overhead.
_RATIO_BUCKETS = (1.0, 1.05, 1.1, 1.25, 1.5, 2, 3, 5, 10, 25)
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
                 300, 900)
_MODEL_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)

RUNS = Counter("chordal_runs", "Runs that ended, by final status.", ["status"])
RUN_DURATION = Histogram("chordal_run_duration_seconds",
                         "Runs that ended: seconds from creation to the end.",
                         buckets=_RUN_BUCKETS)
MAKESPAN_RATIO = Histogram("chordal_run_makespan_ratio",
                           "Succeeded runs: makespan (first step start to last step end) "
                           "over the critical path by the steps' recorded durations.",
                           buckets=_RATIO_BUCKETS)
STEPS = Counter("chordal_steps", "Steps that reached an outcome by their own attempts.",
                ["tool", "status"])
STEP_DURATION = Histogram("chordal_step_duration_seconds",
                          "The attempt that ended a step (succeeded, skipped or failed).",
                          ["tool"], buckets=_STEP_BUCKETS)
STEP_QUEUE = Histogram("chordal_step_queue_seconds",
                       "Attempts: seconds from when a step was due (dispatched, or its "
                       "retry's countdown over) to when a worker began it.",
                       ["queue"], buckets=_WAIT_BUCKETS)
STEP_RETRIES = Counter("chordal_step_retries", "Failed attempts that will be retried.",
                       ["tool"])
REPLANS = Counter("chordal_replans", "Plan versions installed by a replan or a checkpoint's "
                                     "revision.", ["reason"])
REPAIRS = Counter("chordal_repairs", "The reconciler's repairs.", ["kind"])
MODEL_CALLS = Counter("chordal_model_calls", "Model calls.", ["role", "model", "outcome"])
MODEL_TOKENS = Counter("chordal_model_tokens", "Model tokens.", ["role", "model", "kind"])
MODEL_COST = Counter("chordal_model_cost_usd", "Estimated model cost (CHORDAL_PRICES).",
                     ["role", "model"])
MODEL_LATENCY = Histogram("chordal_model_latency_seconds", "Model call latency.", ["role"],
                          buckets=_MODEL_BUCKETS)
BUDGET_STOPS = Counter("chordal_budget_stops", "Runs stopped or paused at their budget.")
AGENT_TURNS = Counter("chordal_agent_turns", "Agent steps' model turns recorded, by what the "
                                             "turn decided.", ["kind"])
AGENT_CALLS = Counter("chordal_agent_calls", "Agent steps' tool calls, by outcome.",
                      ["tool", "outcome"])
AGENT_CALL_DURATION = Histogram("chordal_agent_call_duration_seconds",
                                "Agent steps' tool call attempts that ended: seconds run.",
                                ["tool"], buckets=_STEP_BUCKETS)

#: Token counters of a model call (planner.usage's names) -> the ``kind`` label.
TOKEN_KINDS: Mapping[str, str] = {"input_tokens": "input", "output_tokens": "output",
                                  "cache_read_input_tokens": "cache_read",
                                  "cache_creation_input_tokens": "cache_write"}


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


#: Whether this process records (see :func:`unexported`).
_recording = True


def unexported() -> None:
    """Nothing will ever read this process's metrics (a worker without
    CHORDAL_METRICS_PORT nor a multiprocess directory): stop recording them, which every
    step would otherwise pay for."""
    global _recording
    _recording = False


def _guard(record: Callable[[], None]) -> None:
    if not _recording:
        return
    # A metric must never fail the transition it describes: that is already recorded.
    try:
        record()
    except Exception as exc:
        log.warning("metrics: %s", exc)


# -- recording (called by the run store and the engine after a transition happened) -----
def run_finished(status: str, seconds: str | None, makespan_ratio: float | None) -> None:
    def record() -> None:
        RUNS.labels(status).inc()
        took = _seconds(seconds)
        if took is not None:
            RUN_DURATION.observe(took)
        if makespan_ratio is not None:
            MAKESPAN_RATIO.observe(makespan_ratio)
    _guard(record)


def step_started(queue: str | None, waited: str | None) -> None:
    def record() -> None:
        took = _seconds(waited)
        if took is not None:
            STEP_QUEUE.labels(queue or UNKNOWN).observe(took)
    _guard(record)


def step_finished(tool: str | None, status: str, seconds: str | None) -> None:
    def record() -> None:
        STEPS.labels(tool or UNKNOWN, status).inc()
        took = _seconds(seconds)
        if took is not None:
            STEP_DURATION.labels(tool or UNKNOWN).observe(took)
    _guard(record)


def step_retried(tool: str | None) -> None:
    _guard(lambda: STEP_RETRIES.labels(tool or UNKNOWN).inc())


def replanned(reason: str) -> None:
    _guard(lambda: REPLANS.labels(reason).inc())


def repaired(kind: str) -> None:
    _guard(lambda: REPAIRS.labels(kind).inc())


def budget_stopped() -> None:
    _guard(BUDGET_STOPS.inc)


def model_called(role: str, model: str, outcome: str, latency_s: float | None = None,
                 tokens: Mapping[str, int] | None = None, cost_usd: float = 0.0) -> None:
    """One model call: ``outcome`` is ``ok``, ``transient_error`` or ``error``."""
    def record() -> None:
        MODEL_CALLS.labels(role, model, outcome).inc()
        if latency_s is not None:
            MODEL_LATENCY.labels(role).observe(latency_s)
        for name, kind in TOKEN_KINDS.items():
            count = (tokens or {}).get(name, 0)
            if count:
                MODEL_TOKENS.labels(role, model, kind).inc(count)
        if cost_usd:
            MODEL_COST.labels(role, model).inc(cost_usd)
    _guard(record)


def agent_turn(kind: str) -> None:
    """An agent's turn recorded (``record_turn`` said ``ok``): ``kind`` is its
    ``TurnKind`` (``tools``, ``refused``, ``final``, ``repair``, ``invalid``,
    ``max_turns``)."""
    _guard(lambda: AGENT_TURNS.labels(kind).inc())


def agent_call(tool: str, outcome: str, seconds: float | None) -> None:
    """An agent's tool call attempt that ended, as ``finish_call`` recorded it (not a
    duplicate or a superseded attempt): ``outcome`` is ``succeeded``, ``failed`` or
    ``retry``; ``refused`` for a call the engine refused (never run, no ``seconds``)."""
    def record() -> None:
        AGENT_CALLS.labels(tool or UNKNOWN, outcome).inc()
        if seconds is not None:
            AGENT_CALL_DURATION.labels(tool or UNKNOWN).observe(seconds)
    _guard(record)


# -- the fleet, read at scrape time ----------------------------------------------------
@dataclass(frozen=True)
class Fleet:
    """What the run store says of the fleet at one moment."""

    runs_active: int
    #: Steps dispatched and not started, by queue: waiting in the broker, reserved by a
    #: worker's prefetch, or held by a worker until a retry's countdown ends.
    steps_queued: Mapping[str, int] = field(default_factory=dict)
    #: Queues to report even when empty (the live workers' queues).
    queues: frozenset[str] = frozenset()


class FleetCollector(Collector):
    """``chordal_runs_active`` and ``chordal_queue_depth{queue}``, read at scrape time.

    Queue depth: the run store's steps dispatched and not started in a queue (``read``),
    or the broker's count of messages waiting in it (``waiting``), whichever is larger.
    Chosen over Celery's ``inspect().reserved()/scheduled()`` (a broadcast that waits for
    every worker's reply, and misses a worker that is busy or gone) because every
    dispatched step is recorded with its queue until it begins: the store counts exactly
    the step messages a broker count misses, those reserved by a worker or held on a
    retry's countdown. The broker count can only add run-level tasks (plan, join, synthesis,
    replan), which the store does not count; the larger of the two misses those only while
    step messages in the same queue outnumber them."""

    def __init__(self, read: Callable[[], Fleet], waiting: Callable[[str], int | None],
                 queues: Iterable[str] = ()) -> None:
        self.read, self.waiting = read, waiting
        # Reported even when empty and unconsumed: a gauge that goes absent rather than
        # to 0 leaves an autoscaler without a number.
        self.queues = frozenset(queues)

    def collect(self) -> Iterator[Metric]:
        try:
            fleet = self.read()
            queues = sorted({DEFAULT_QUEUE, LLM_QUEUE} | self.queues | fleet.queues
                            | set(fleet.steps_queued))
            depths = {q: max(fleet.steps_queued.get(q, 0), self.waiting(q) or 0)
                      for q in queues}
        except Exception as exc:
            # A scrape while Redis or the broker is away: the fleet's series go missing
            # (an alert on absent() sees it) rather than failing the whole scrape.
            log.warning("metrics: cannot read the fleet: %s", exc)
            return
        active = GaugeMetricFamily("chordal_runs_active", "Runs that have not ended.")
        active.add_metric([], fleet.runs_active)
        yield active
        depth = GaugeMetricFamily(
            "chordal_queue_depth", "Messages waiting for a worker: in the broker, reserved "
                                   "by workers, or held on a retry's countdown.", labels=["queue"])
        for queue, n in depths.items():
            depth.add_metric([queue], n)
        yield depth

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only, never when registered


class FleetSource(Protocol):
    """What :func:`fleet_collector` reads the fleet from (``RunStore``)."""

    def fleet(self) -> Fleet: ...


class Broker(Protocol):
    """What :func:`fleet_collector` asks the broker (a ``Publisher``)."""

    def waiting(self, queue: str) -> int | None: ...


def fleet_collector(store: FleetSource, broker: Broker, queues: Iterable[str] = ()
                    ) -> FleetCollector:
    """The fleet gauges from a run store and a publisher; ``queues`` are reported even
    when empty (the tools' queues), besides the live workers' and Chordal's own."""
    return FleetCollector(store.fleet, broker.waiting, queues)


# -- exporting -----------------------------------------------------------------------------
def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_VAR) or None


class _Default(Collector):
    """The process's own registry, as one collector of another registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def metrics_registry(*extra: Collector) -> CollectorRegistry:
    """A registry of every Chordal metric this process can see (merged across processes
    in multiprocess mode) plus ``extra`` collectors (the fleet's)."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Default())
    for collector in extra:
        registry.register(collector)
    return registry


def metrics_response(accept: str | None = None, *extra: Collector) -> tuple[bytes, str]:
    """The body and content type of a ``/metrics`` answer (``accept``: the request's
    Accept header, for OpenMetrics)."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(metrics_registry(*extra)), content_type


def metrics_asgi_app(*extra: Collector) -> Callable[..., Any]:
    """An ASGI app serving ``/metrics`` (mount it in the HTTP service)."""
    return make_asgi_app(metrics_registry(*extra))


def metrics_wsgi_app(*extra: Collector) -> Callable[..., Any]:
    return make_wsgi_app(metrics_registry(*extra))


def clean_multiprocess_dir() -> int:
    """Delete the values files of other processes (a previous worker's pool): call at a
    worker's start, before its pool starts. This process's own files stay (it may have
    counted already, and its open files would be lost). How many were deleted."""
    path = multiprocess_dir()
    if not path:
        return 0
    mine = f"_{os.getpid()}.db"
    gone = 0
    for name in glob.glob(os.path.join(path, "*.db")):
        if not name.endswith(mine):
            try:
                os.remove(name)
                gone += 1
            except FileNotFoundError:
                pass
    return gone


@dataclass
class MetricsServer:
    """``/metrics`` over HTTP on a thread of this process."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(port: int, *extra: Collector, addr: str = "0.0.0.0"  # noqa: S104
                  ) -> MetricsServer:
    """Serve ``/metrics`` on ``addr:port`` (a scraper must reach it from elsewhere)."""
    server, thread = start_http_server(port, addr, registry=metrics_registry(*extra))
    return MetricsServer(server, thread)
