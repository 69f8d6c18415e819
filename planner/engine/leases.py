"""Leases: how a worker says "still working on it".

A running step holds a lease in the run store (taken when it begins, ``begin_step.lua``);
a run-level task takes one named for its role (``@planner``, ``@replanner``, ``@review``,
``@synthesizer``, ``@join``) while it works. One daemon thread per worker process renews
every lease the process holds, every third of the lease's length, so a lease lapses only
when its process stops (killed, its host gone, or cut off from Redis longer than a
lease). The reconciler (:mod:`planner.engine.reconcile`) re-drives what it held.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from planner.store.runs import RunStore

log = logging.getLogger("chordal.leases")


class LeaseKeeper:
    """Renews the leases this process holds. Safe across threads and across ``fork``
    (a forked pool process starts its own renewal thread on first use)."""

    def __init__(self, store: RunStore, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s
        self._held: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    @contextmanager
    def keep(self, run_id: str, name: str, *, take: bool = False) -> Iterator[None]:
        """Hold the lease ``name`` of ``run_id`` while the block runs. ``take``: take it
        now (a run-level task) and drop it after; otherwise it was taken already (a step's
        by ``begin_step``) and only renewed."""
        if take:
            self.store.take_leases(run_id, [name], self.lease_s)
        key = (run_id, name)
        with self._lock:
            self._held[key] += 1
            self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                self._held[key] -= 1
                if self._held[key] <= 0:
                    del self._held[key]
            if take:
                try:
                    self.store.drop_lease(run_id, name)
                except Exception:
                    log.warning("could not drop lease %s of run %s", name, run_id)

    def held(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._held)

    def renew(self) -> None:
        """Renew every held lease now (the thread's work; callable from tests)."""
        by_run: dict[str, list[str]] = {}
        for run_id, name in self.held():
            by_run.setdefault(run_id, []).append(name)
        for run_id, names in by_run.items():
            try:
                self.store.renew_leases(run_id, names, self.lease_s)
            except Exception as exc:
                log.warning("could not renew leases of run %s: %s", run_id, exc)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._thread = threading.Thread(target=self._beat, name="chordal-leases",
                                        daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        pid = os.getpid()
        while pid == self._pid:
            self._wake.wait(self.lease_s / 3)
            self.renew()
