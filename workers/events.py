"""Task events of inline steps (workers/inline.py), sent by a thread of their own.

Celery sends a task's events from the worker's main process, buffered by its event loop;
an inline step has no message there, so the process that runs it sends them. Sent one by
one on the step's path, each is a broker round trip (a PUBLISH on Redis): four per step,
more than the step's own two scripts. Events are for watching (Flower), never an outcome,
so they go to a queue that one thread per process drains in order, off the step's path.
Those still queued when the process ends are flushed (pool process shutdown) for up to
``FLUSH_S``; one that cannot be sent is logged and dropped, as Celery's own are.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown

log = logging.getLogger("chordal.worker")

#: (event type, task id, fields)
Event = tuple[str, str, dict[str, Any]]
FLUSH_S = 2.0


class Sender:
    """One process's sender: a queue of batches, sent in order by one thread."""

    def __init__(self, app: Celery, hostname: str | None) -> None:
        self.app, self.hostname, self.pid = app, hostname, os.getpid()
        self.pending: queue.SimpleQueue[list[Event] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="chordal-events",
                                       daemon=True)
        self.thread.start()

    def send(self, events: list[Event]) -> None:
        self.pending.put(events)

    def close(self, timeout: float = FLUSH_S) -> None:
        self.pending.put(None)
        self.thread.join(timeout)

    def _serve(self) -> None:
        connection: Any = None
        dispatcher: Any = None
        while (batch := self.pending.get()) is not None:
            try:
                if dispatcher is None:
                    connection = self.app.connection_for_write()
                    dispatcher = self.app.events.Dispatcher(
                        connection, hostname=self.hostname, buffer_while_offline=False)
                for type_, uuid, fields in batch:
                    dispatcher.send(type_, uuid=uuid, **fields)
            except Exception as exc:  # events are for watching: never fail for them
                log.warning("could not send %s events for inline task %s: %s",
                            "/".join(t for t, _, _ in batch), batch[0][1], exc)
                _closed(dispatcher, connection)
                dispatcher = connection = None
        _closed(dispatcher, connection)


def _closed(dispatcher: Any, connection: Any) -> None:
    for close in (getattr(dispatcher, "close", None), getattr(connection, "release", None)):
        try:
            if close is not None:
                close()
        except Exception as exc:
            log.debug("closing the inline events' connection: %s", exc)


_sender: Sender | None = None
_lock = threading.Lock()


def send(app: Celery, hostname: str | None, events: list[Event]) -> None:
    """Queue ``events`` to be sent, in order, by this process's sender."""
    global _sender
    with _lock:
        if _sender is None or _sender.pid != os.getpid() or not _sender.thread.is_alive():
            _sender = Sender(app, hostname)  # a pool's child makes its own after the fork
        sender = _sender
    sender.send(events)


def _flush(**_: Any) -> None:
    with _lock:
        sender = _sender
    if sender is not None and sender.pid == os.getpid():
        sender.close()


worker_process_shutdown.connect(_flush, weak=False)
