"""A step's own time limits, armed by the worker around the step (not by Celery per task).

With inline steps on (planner/engine/inline.py), one task may run a chain of steps, but
Celery's time limits count from the task's start and cannot be reset per step: a step's
message then carries no soft limit and a hard one that bounds the whole chain
(``CompiledPlan.time_limits``), and each step, first or inline, gets its own stops here:

- at its ``timeout_s``, ``SoftTimeLimitExceeded`` is raised in it, as Celery's soft limit
  raises it (an ``ITIMER_REAL`` timer; the signal interrupts a blocking call as Celery's
  SIGUSR1 does): the step is recorded timed out and retried per its policy;
- ``hard_limit_grace_s`` later, if the tool swallowed that, :class:`StepKilled` (not an
  ``Exception``: a tool's ``except Exception`` does not swallow it), which ends the step
  as Celery's hard limit would: failed outside the tool, through its errback's logic;
- ``KILL_AFTER_S`` later still, if the process never got control back (a tool stuck in C
  code runs no signal handler), the process ends itself (``faulthandler``'s watchdog is a
  thread of C, needing no GIL; it writes every thread's stack to stderr first): its pool
  gives the message back, and the step's lease lapses, as for any killed process.

Only in a prefork pool's process: that is the only pool where Celery enforces time
limits on its own, so the only one where a step run as its own task had them. A signal
runs its handler in the main thread, where a prefork process runs its task. The thread
pool and the solo pool enforce no Celery limit on a task (Python cannot interrupt
another thread's blocking call, and a solo worker's main thread is also its consumer),
and an async tool enforces its own ``timeout_s`` in every pool (planner/tools/aio.py),
so nothing changes there. Under gevent, Celery's hard limit is a ``gevent.Timeout``
around the task, which now bounds the chain, not the step (see docs/engine.md).
"""

from __future__ import annotations

import faulthandler
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from billiard.pool import SIG_SOFT_TIMEOUT, soft_timeout_sighandler
from celery.exceptions import SoftTimeLimitExceeded

from planner.engine.compiled import KILL_AFTER_S


class StepKilled(BaseException):
    """A step past its hard stop that swallowed its soft one."""


def enforced() -> bool:
    """Whether this is a prefork pool's process running its task in its main thread: the
    only place Celery enforces time limits, and where a timer's signal reaches the step."""
    return (SIG_SOFT_TIMEOUT is not None and hasattr(signal, "setitimer")
            and signal.getsignal(SIG_SOFT_TIMEOUT) is soft_timeout_sighandler
            and threading.current_thread() is threading.main_thread())


class _Stops:
    """One step's armed stops. :meth:`disarm` undoes them once, and only while they are
    this process's current ones (a stop that fires as a block ends may cut the ``with``'s
    exit short: the caller disarms again, and an old arming must not undo a newer one)."""

    def __init__(self, timeout_s: float, grace_s: float) -> None:
        self.timeout_s, self.grace_s = timeout_s, grace_s
        self.stage = "soft"
        self.previous: Any = signal.signal(signal.SIGALRM, self._on_alarm)
        self.watchdog = _watch(timeout_s + grace_s + KILL_AFTER_S)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.stage == "soft":
            self.stage = "hard"
            signal.setitimer(signal.ITIMER_REAL, self.grace_s)
            raise SoftTimeLimitExceeded(f"soft time limit ({self.timeout_s:g} s) exceeded")
        if self.stage == "hard":
            self.stage = "over"
            raise StepKilled(f"hard time limit ({self.timeout_s + self.grace_s:g} s) "
                             "exceeded")

    def disarm(self) -> None:
        global _current
        if _current is not self:
            return
        # From here a stop that fires does nothing (the next one is a grace away at least).
        self.stage = "closing"
        signal.setitimer(signal.ITIMER_REAL, 0)
        if self.watchdog:
            faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, self.previous)
        _current = None


_current: _Stops | None = None


def disarm() -> None:
    """Undo the stops still armed in this process, if any (idempotent)."""
    if _current is not None:
        _current.disarm()


@contextmanager
def step_limits(timeout_s: float, grace_s: float, armed: bool = True) -> Iterator[None]:
    """Run the block under a step's own soft and hard stops (when ``armed``). Callers
    also :func:`disarm` in a ``finally`` of their own (see :class:`_Stops`)."""
    global _current
    if not armed:
        yield
        return
    disarm()  # one arming at a time: faulthandler's watchdog is one per process
    _current = stops = _Stops(timeout_s, grace_s)
    try:
        yield
    finally:
        stops.disarm()


def _watch(seconds: float) -> bool:
    """End this process in ``seconds`` unless cancelled (a watchdog thread of C)."""
    err = sys.__stderr__
    try:
        if err is None:
            return False
        faulthandler.dump_traceback_later(seconds, exit=True, file=err)
        return True
    except (ValueError, OSError, RuntimeError):
        return False  # no usable stderr: the pool's kill at the chain's bound stays
