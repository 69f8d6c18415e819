"""What every worker does besides running tasks, on a thread of its main process.

- It says it is alive, and what it can run: its queues and tools go to Redis under a short
  TTL (``chordal:worker:<hostname>``), so ``chordal run`` can warn before submitting a plan
  that no live worker can run.
- It runs the reconciler (:mod:`planner.engine.reconcile`) under a Redis lock: every worker
  has one, one of them is active, and when that worker dies another takes the lock over
  within a few seconds. Nothing extra to deploy.
- With ``CHORDAL_METRICS_PORT`` set, it serves Prometheus's ``/metrics`` on that port: the
  values every pool process recorded (multiprocess mode, merged here) and the fleet's
  gauges (runs not ended, queue depth), read at scrape time in this process only.
- It delivers the callbacks of runs that ended (:mod:`planner.callbacks`), on a
  thread of its own so that a slow receiver never delays the liveness record: every worker
  claims due callbacks one at a time (an atomic claim with a lease), so each goes out once
  per attempt however many workers there are.

Started when the worker is ready (Celery's ``worker_ready`` signal), stopped at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from typing import Any

from celery.signals import worker_init, worker_ready, worker_shutdown

from planner import metrics
from planner.callbacks import CallbackSender
from planner.engine.publisher import CeleryPublisher
from planner.engine.reconcile import Reconciler
from planner.engine.runtime import Runtime
from planner.settings import Settings
from planner.store.keys import worker_key
from workers.app import app

log = logging.getLogger("chordal.worker")

#: Seconds between the liveness records when the reconciler is off.
BEAT_S = 5.0
#: Seconds between looks for due callbacks (a due one waits at most this long).
CALLBACK_POLL_S = 1.0


class Housekeeper:
    def __init__(self, hostname: str, queues: list[str]) -> None:
        settings = Settings.from_env()
        self.rt = Runtime(settings, CeleryPublisher(app))
        self.hostname, self.queues = hostname, sorted(queues)
        self.interval = settings.engine.reconcile_interval_s or BEAT_S
        self.reconciler = (Reconciler(self.rt, lock_s=max(3 * self.interval, 5.0))
                           if settings.engine.reconcile_interval_s else None)
        self.callbacks = CallbackSender(self.rt.store, settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chordal-housekeeping",
                                        daemon=True)
        self.metrics: metrics.MetricsServer | None = None
        self._sender = threading.Thread(target=self._send_loop, name="chordal-callbacks",
                                        daemon=True)

    def start(self) -> None:
        port = self.rt.settings.metrics.metrics_port
        if port:
            try:
                self.metrics = metrics.serve_metrics(
                    port, metrics.fleet_collector(self.rt.store, self.rt.publisher,
                                                  {t.queue for t in self.rt.tools.values()}))
                log.info("metrics: /metrics on port %d", port)
            except OSError as exc:  # the port is taken: the worker still runs its steps
                log.error("metrics: cannot serve on port %d: %s", port, exc)
        self._thread.start()
        self._sender.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.metrics is not None:
            self.metrics.stop()
        # A delivery in flight ends within its POST timeout; one cut short is claimed
        # again by another worker once its lease lapses.
        self._sender.join(timeout=15)
        self.callbacks.close()
        if self.reconciler is not None:
            self.reconciler.release()
        with contextlib.suppress(Exception):
            self.rt.store.r.delete(worker_key(self.hostname))

    def record(self) -> dict[str, Any]:
        tools = self.rt.tools
        return {"hostname": self.hostname, "pid": os.getpid(), "queues": self.queues,
                "tools": {name: tool.queue for name, tool in tools.items()},
                "modules": list(self.rt.settings.tools.tool_modules)}

    def beat(self) -> None:
        """One beat: say this worker is alive, then reconcile if this one is active."""
        ttl = max(int(3 * self.interval) + 1, 15)
        self.rt.store.r.set(worker_key(self.hostname), json.dumps(self.record()), ex=ttl)
        if self.reconciler is not None:
            made = self.reconciler.tick()
            if made:
                log.info("reconciler: %d repair(s): %s", len(made),
                         ", ".join(f"{run}:{r.kind}" for run, r in made))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except Exception as exc:
                log.warning("housekeeping: %s", exc)
            self._stop.wait(self.interval)

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.callbacks.deliver_due()
            except Exception as exc:
                log.warning("callbacks: %s", exc)
            self._stop.wait(CALLBACK_POLL_S)


_keeper: Housekeeper | None = None


@worker_init.connect
def _clean_metrics(**_: Any) -> None:
    # Before the pool starts: a previous worker's pool processes left their values files,
    # which would otherwise be merged into this worker's counters for ever.
    if metrics.multiprocess_dir():
        log.info("metrics: %d stale values file(s) removed",
                 metrics.clean_multiprocess_dir())


@worker_ready.connect
def _start(sender: Any = None, **_: Any) -> None:
    global _keeper
    queues = [q.name for q in getattr(sender.task_consumer, "queues", [])] if sender else []
    _keeper = Housekeeper(getattr(sender, "hostname", None) or "unknown", queues)
    _keeper.start()


@worker_shutdown.connect
def _stop(**_: Any) -> None:
    if _keeper is not None:
        _keeper.stop()
