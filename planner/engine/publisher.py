"""The Celery publisher: the engine's :class:`~planner.engine.dispatch.Message` s as Celery
signatures published by task name (no worker code needed), and the producer app clients
publish with. Kept apart from the messages so that only a process that publishes loads
Celery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, group
from celery.app.amqp import AMQP
from celery.canvas import Signature
from kombu.exceptions import ChannelError

from planner import tracing
from planner.engine.broker import StepKey, held_steps, queued_runs
from planner.engine.dispatch import Message
from planner.settings import Settings
from planner.wire import STEP_ERROR_TASK, STEP_REVOKED_TASK, celery_conf


class CeleryPublisher:
    """Publishes through a Celery app, by task name."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def signature(self, m: Message) -> Signature:
        options: dict[str, Any] = {"queue": m.queue, "shadow": m.shadow or m.task}
        if m.args and isinstance(m.args[0], str):
            # Every message's first argument is its run: its span's context and the time
            # it was sent travel in the headers (kept by Celery's retries).
            options["headers"] = tracing.headers(m.args[0])
        for name in ("task_id", "countdown", "soft_time_limit", "time_limit"):
            if getattr(m, name) is not None:
                options[name] = getattr(m, name)
        if m.ignore_result:
            options["ignore_result"] = True
        if m.errback is not None:
            options["link_error"] = self.signature(m.errback)
        return self.app.signature(m.task, args=m.args, immutable=m.immutable, **options)

    def waiting(self, queue: str) -> int | None:
        try:
            with self.app.connection_for_read() as conn:
                declared = conn.default_channel.queue_declare(queue=queue, passive=True)
                return int(declared.message_count)
        except ChannelError:
            return 0  # never declared: nothing waits in it
        except Exception:
            return None

    def held(self, queue: str) -> set[StepKey] | None:
        try:
            with self.app.connection_for_read() as conn:
                return held_steps(conn.default_channel, queue)
        except Exception:
            return None

    def queued_runs(self, queues: list[str]) -> set[str] | None:
        try:
            with self.app.connection_for_read() as conn:
                return queued_runs(conn.default_channel, queues)
        except Exception:
            return None

    def publish(self, messages: Sequence[Message]) -> None:
        sigs = [self.signature(m) for m in messages]
        if len(sigs) == 1:
            sigs[0].apply_async()
        elif sigs:
            group(sigs).apply_async()


class ShadowNamedAMQP(AMQP):  # type: ignore[misc]  # Celery is untyped
    """Celery's messaging, but a published task's "sent" event names it as its ``shadow``
    does. Celery's names it by the task alone, and a "sent" event that reaches Flower after
    the worker's "received" (a retry, or a publish from another worker) would turn the
    task's name in Flower back from ``chordal.step echo hotels`` to ``chordal.step``.

    A step's errback sends none: it is bookkeeping of the step's attempt, whose own task
    shows what happened (its worker sends no events either, ``send_events=False``), not
    a second row in Flower for every failure."""

    def as_task_v2(self, task_id: str, name: str, *args: Any, **kwargs: Any) -> Any:
        message = super().as_task_v2(task_id, name, *args, **kwargs)
        if name in (STEP_ERROR_TASK, STEP_REVOKED_TASK):
            return message._replace(sent_event=None)
        # Read from the headers: Celery passes the shadow name positionally.
        shadow = message.headers.get("shadow")
        if shadow and message.sent_event is not None:
            message.sent_event["name"] = shadow
        return message


#: How ``Celery(amqp=...)`` names it, for every app that publishes Chordal's tasks.
AMQP_CLASS = f"{__name__}:ShadowNamedAMQP"


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only publishes (clients): the wire settings, no tasks."""
    app = Celery("chordal", broker=settings.broker, backend=settings.store.result_backend,
                 amqp=AMQP_CLASS)
    app.conf.update(celery_conf(settings))
    return app
