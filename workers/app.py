"""The Celery app the workers run. The wire settings (JSON only, transport options, the
default queue) come from ``planner.wire``; the settings here are how a worker consumes,
and each says why."""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_init, worker_process_shutdown

from planner import logs, tracing
from planner.engine.publisher import AMQP_CLASS
from planner.errors import ConfigError
from planner.settings import Settings
from planner.tools.registry import load_tools
from planner.wire import celery_conf

log = logging.getLogger("chordal.worker")


def make_app(settings: Settings) -> Celery:
    app = Celery("chordal", broker=settings.broker, backend=settings.store.result_backend,
                 include=["workers.tasks", "workers.housekeeping"],
                 # Sent events named as the tasks' shadow names (see the class).
                 amqp=AMQP_CLASS)
    app.conf.update(celery_conf(settings))
    app.conf.update(
        # Ack after the step finishes, so a worker that dies mid-step loses nothing; steps
        # are idempotent per (run, step) in the run store, so running twice is safe.
        task_acks_late=True,
        # A pool process that dies (OOM, SIGKILL) gives its message back; the run store
        # counts attempts, so a step that keeps killing workers ends, it does not loop.
        task_reject_on_worker_lost=True,
        # Long steps: reserve one message per process, so a busy process does not hold
        # ready steps hostage while an idle one waits.
        worker_prefetch_multiplier=settings.worker.worker_prefetch,
        # Flower and `celery events` need task events; "sent" shows queued steps too.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        result_extended=True,
        # Results outlive the longest run (the run store keeps the outputs; Celery's
        # results are for Flower and the chords of bench/levels.py).
        result_expires=settings.store.retention_s,
        result_chord_expires=settings.store.retention_s,
        # A worker that loses the broker cannot ack; cancel its work so it is redelivered
        # rather than finished twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # A broker restart is an outage to ride out, not a reason for the worker to exit
        # (Celery gives up after 100 tries by default); leases and the reconciler re-drive
        # whatever was cut off meanwhile.
        broker_connection_max_retries=None,
        # On deploy (SIGTERM), give running steps time to finish, then requeue the rest.
        worker_soft_shutdown_timeout=10.0,
        worker_enable_soft_shutdown_on_idle=True,
        worker_hijack_root_logger=False,
    )
    return app


def observe(settings: Settings) -> None:
    """How a worker reports: its log format, and its spans' exporter (if any)."""
    if settings.worker.log_format == "json":
        # A receiver of setup_logging replaces Celery's log setup (and its redirection of
        # stdout, whose lines would otherwise be wrapped in a second format).
        def json_logs(loglevel: Any = None, **_: Any) -> None:
            logs.configure("json", loglevel or "INFO")

        setup_logging.connect(json_logs, weak=False)

    def start_tracing(**_: Any) -> None:
        # In the main process, before the pool forks: the SDK's processor survives a fork.
        tracing.configure(settings.tracing.trace_exporter)

    worker_init.connect(start_tracing, weak=False)
    worker_init.connect(lambda **_: check_tools(settings), weak=False)
    # A pool process about to exit exports what it buffered, or its last spans are lost.
    worker_process_shutdown.connect(lambda **_: tracing.flush(), weak=False)


def check_tools(settings: Settings) -> None:
    """Load the tools once in the worker's main process, however it was started (`chordal
    worker`, `celery -A workers.app worker`): a mistake in CHORDAL_TOOL_MODULES or the MCP
    config stops the worker here, instead of failing every task it takes (with the runs
    left waiting); and the pool processes, forked after, inherit what the MCP servers
    listed. A server that does not answer is no mistake: its steps fail until it does."""
    try:
        load_tools(settings)
    except ConfigError as exc:
        log.critical("worker not started: %s", exc)
        # Not an Exception: Celery logs and ignores those that a signal's receiver raises.
        raise SystemExit(2) from None


_settings = Settings.from_env()
app = make_app(_settings)
observe(_settings)
