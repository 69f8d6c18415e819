"""The Celery app. Every setting that matters for at-least-once execution says why."""

from __future__ import annotations

from celery import Celery

from planner.settings import Settings
from workers.tools.registry import DEFAULT_QUEUE


def make_app(settings: Settings) -> Celery:
    app = Celery("chordal", broker=settings.broker, backend=settings.redis_url,
                 include=["workers.tasks"])
    vt = settings.visibility_timeout_s
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
    app.conf.update(
        # JSON only: a pickle from the broker is code execution.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Ack after the step finishes, so a worker that dies mid-step loses nothing; steps
        # are idempotent per (run, step) in the run store, so running twice is safe.
        task_acks_late=True,
        # A pool process that dies (OOM, SIGKILL) gives its message back; the run store
        # counts attempts, so a step that keeps killing workers ends, it does not loop.
        task_reject_on_worker_lost=True,
        # Long steps: reserve one message per process, so a busy process does not hold
        # ready steps hostage while an idle one waits.
        worker_prefetch_multiplier=settings.worker_prefetch,
        broker_transport_options=redis_transport if settings.broker.startswith("redis") else {},
        result_backend_transport_options={"visibility_timeout": vt},
        # Flower and `celery events` need task events; "sent" shows queued steps too.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        result_extended=True,
        # Chord bookkeeping (levels baseline) and results outlive the longest run.
        result_expires=settings.retention_s,
        result_chord_expires=settings.retention_s,
        # A worker that loses the broker cannot ack; cancel its work so it is redelivered
        # rather than finished twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # On deploy (SIGTERM), give running steps time to finish, then requeue the rest.
        worker_soft_shutdown_timeout=10.0,
        worker_enable_soft_shutdown_on_idle=True,
        broker_connection_retry_on_startup=True,
        task_default_queue=DEFAULT_QUEUE,
        worker_hijack_root_logger=False,
    )
    return app


app = make_app(Settings.from_env())
