"""Async tools: what a tool's call returns to be awaited is awaited here.

A tool may be ``async def`` (MCP and httpx users write them). :meth:`Tool.invoke` hands the
coroutine to :func:`run`, which awaits it on this process's one event loop and returns its
result to the calling thread, so the engine sees an async tool as it sees any other.

The loop runs on a thread of its own, made on the first call (after a pool's fork: a
child makes its own) and reused by every later call of every thread of the process, so
what one call opens on it (an ``httpx.AsyncClient``, a session kept in a module) serves
the next one. The calling thread only waits, for two reasons:

- Celery's soft time limit is a signal that raises in the calling thread wherever it is;
  raised inside a running loop's own machinery it could leave the loop broken. Raised in
  a wait, it is caught here: the coroutine is cancelled (``task.cancel()``), given
  :data:`CANCEL_GRACE_S` to unwind, and the exception goes on to the engine, which records
  a timeout as for a sync tool. Anything else that interrupts the wait does the same.
- The attempt's own time limit (:attr:`ToolContext.timeout_s`, the step's ``timeout_s``)
  is enforced here too, by cancelling the coroutine and raising :class:`AttemptTimeout`:
  an async tool times out in every pool, also the threads pool, which cannot cut a sync
  tool short. The loop itself cancels the coroutine at that limit (a timer armed when it
  starts): the waiting thread asks too, but the soft time limit, often due at the same
  moment, can raise in that thread before its request reaches the loop, and a coroutine
  left running would finish the tool's work after its attempt was recorded timed out.

A coroutine runs in a copy of the caller's context (contextvars), so its log lines name
the run, step and attempt, and its spans are the step's children. A coroutine that blocks
the loop (sync I/O inside ``async def``) and outlives its cancellation leaves the loop
stuck: the process then starts a new loop for the calls that follow, and the other calls
that were waiting on the old one fail with a :class:`TransientError` (retried). A tool's
``invoke`` called from inside the loop's thread (an async tool calling another tool) is an
error at once: waiting there would block the very loop it waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, Generic, TypeVar

from planner.errors import PermanentError, TransientError

log = logging.getLogger("chordal.tools")

T = TypeVar("T")

#: How long a cancelled coroutine may take to unwind (its ``finally`` blocks, closing
#: connections) before the caller stops waiting for it; well under the 30 s between
#: Celery's soft and hard time limits (CHORDAL_HARD_LIMIT_GRACE_S).
CANCEL_GRACE_S = 5.0

#: How long a loop has to run a no-op before it counts as blocked.
PING_S = 1.0


class AttemptTimeout(TransientError):
    """An attempt of an async tool reached its time limit; its coroutine was cancelled.
    The engine records it as it records Celery's soft time limit: a timeout."""


def run(awaitable: Awaitable[T], timeout_s: float, what: str) -> T:
    """Await ``awaitable`` on this process's loop for at most ``timeout_s`` seconds and
    return its result, or raise its error (``what`` names the tool, in messages)."""
    return _loop().run(awaitable, timeout_s, what)


class _Loop:
    """An event loop on a daemon thread of its own."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.left = False
        #: The callers not answered yet: answered (transient) if the loop is left. Only
        #: ``set.add``/``discard``/``copy`` touch it (atomic): a lock a caller held when
        #: the soft time limit raised would block the loop's thread for good.
        self.waiting: set[_Call[Any]] = set()
        self.thread = threading.Thread(target=self._serve, name="chordal-aio", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # Stopped because it was left behind (blocked): end what still runs on it.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=CANCEL_GRACE_S))
            self.loop.close()
            # Calls whose coroutine never started, or did not unwind in time: theirs is
            # not their fault, so they are retried (on the new loop).
            for call in self.waiting.copy():
                call.answer(exc=_abandoned("its call"))

    def run(self, awaitable: Awaitable[T], timeout_s: float, what: str) -> T:
        if threading.current_thread() is self.thread:
            _coroutine(awaitable).close()  # never awaited: no "was never awaited" warning
            raise PermanentError(
                f"{what} was called from inside the event loop's own thread (by an async "
                "tool, say), where waiting for it would block the loop it needs; await "
                "the tool's function instead of calling invoke()")
        call = _Call(_coroutine(awaitable), timeout_s, what)
        self.waiting.add(call)
        try:
            try:
                self.loop.call_soon_threadsafe(call.start, self)
            except RuntimeError:  # closed: left behind between _loop() and here
                call.coroutine.close()
                raise _abandoned(what) from None
            if not call.gate.acquire(timeout=timeout_s):
                raise _timeout(what, timeout_s)
        except BaseException:
            # Its limit, or Celery's soft time limit (or a shutdown) raising anywhere in
            # here: the coroutine must not go on running on the loop after the attempt
            # ended. (If this thread is interrupted before the request is queued, the
            # loop's own timer still cancels it at its limit.)
            self._cancel(call)
            raise
        finally:
            self.waiting.discard(call)
        return call.outcome()

    def _cancel(self, call: _Call[Any]) -> None:
        # ``call.start``, if queued at all, was queued first: it has run when this does.
        try:
            self.loop.call_soon_threadsafe(call.cancel)
        except RuntimeError:  # closed: left behind, its tasks cancelled when it stopped
            return
        if call.answered or call.gate.acquire(timeout=CANCEL_GRACE_S):
            return
        if self._answers():
            log.warning("%s: its coroutine ignored its cancellation and still runs on the "
                        "event loop", call.what)
            return
        log.warning("%s: its coroutine blocks the event loop and ignored its cancellation; "
                    "this process leaves that loop and starts a new one", call.what)
        self.leave()

    def _answers(self) -> bool:
        ping = _gate()
        try:
            self.loop.call_soon_threadsafe(ping.release)
        except RuntimeError:  # closed: it was left behind already
            return False
        return ping.acquire(timeout=PING_S)

    def leave(self) -> None:
        """Stop using this loop: it stops once what blocks it returns."""
        global _current
        with _lock:
            if _current is self:
                _current = None
        self.left = True
        with contextlib.suppress(RuntimeError):  # closed already
            self.loop.call_soon_threadsafe(self.loop.stop)


def _coroutine(awaitable: Awaitable[T]) -> Coroutine[Any, Any, T]:
    if asyncio.iscoroutine(awaitable):
        return awaitable

    async def wrapped() -> T:
        return await awaitable

    return wrapped()


def _abandoned(what: str) -> TransientError:
    return TransientError(f"{what}: the process's event loop was blocked by another "
                          "coroutine and left behind; try again (on a new loop)")


def _timeout(what: str, timeout_s: float) -> AttemptTimeout:
    return AttemptTimeout(f"{what} timed out after {timeout_s:g} s; its coroutine was "
                          "cancelled")


def _gate() -> threading.Lock:
    """A lock held from the start, released once by the loop's thread when it answers.
    The caller waits by acquiring it: a plain lock, because the soft time limit raising
    inside a ``Condition`` (``concurrent.futures.wait``, ``Event.wait``) can leave that
    condition's lock held, and the loop's thread, answering through it, blocked for good."""
    gate = threading.Lock()
    gate.acquire()
    return gate


class _Call(Generic[T]):
    """One awaited call: its coroutine, its task on the loop once started, and its answer
    to the caller. Its methods but ``__init__`` and ``outcome`` run on the loop's thread,
    which alone answers (once)."""

    def __init__(self, coroutine: Coroutine[Any, Any, T], timeout_s: float,
                 what: str) -> None:
        self.coroutine, self.timeout_s, self.what = coroutine, timeout_s, what
        self.context = contextvars.copy_context()
        self.gate = _gate()
        self.answered = False
        self.result: T | None = None
        self.error: BaseException | None = None
        self.started: asyncio.Task[T] | None = None
        self.expired = False

    def outcome(self) -> T:
        """The answer, once the gate was acquired."""
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set with the gate released

    def answer(self, result: T | None = None, exc: BaseException | None = None) -> None:
        if self.answered:
            return
        self.result, self.error, self.answered = result, exc, True
        self.gate.release()

    def start(self, owner: _Loop) -> None:
        if self.answered:  # the caller gave up before it started
            self.coroutine.close()
            return
        task = owner.loop.create_task(self.coroutine, context=self.context)
        self.started = task
        deadline = owner.loop.call_later(self.timeout_s, self._expire)

        def ended(t: asyncio.Task[T]) -> None:
            deadline.cancel()
            self._settle(t, owner)

        task.add_done_callback(ended)

    def _expire(self) -> None:
        # Its end may be settling already (done callbacks are queued): that one stands.
        if self.started is not None and self.started.cancel():
            self.expired = True

    def cancel(self) -> None:
        if self.started is not None:
            self.started.cancel()
        else:  # never queued (interrupted): it never will start
            self.coroutine.close()
            self.answer(exc=PermanentError(f"{self.what}: cancelled before it started"))

    def _settle(self, task: asyncio.Task[T], owner: _Loop) -> None:
        what = self.what
        if self.expired:
            # Past its limit, whatever it did once cancelled (even returning a value).
            self.answer(exc=_timeout(what, self.timeout_s))
        elif task.cancelled():
            if owner.left:
                # Cancelled because another call blocked the loop: not this call's fault.
                self.answer(exc=_abandoned(what))
            else:
                # Cancelled by the caller (who has stopped reading), or by the coroutine.
                self.answer(exc=PermanentError(f"{what}: its coroutine was cancelled"))
        elif (exc := task.exception()) is not None:
            self.answer(exc=exc)
        else:
            self.answer(result=task.result())


_current: _Loop | None = None
_lock = threading.Lock()


def _loop() -> _Loop:
    global _current
    with _lock:
        if _current is None or _current.pid != os.getpid() or not _current.thread.is_alive():
            _current = _Loop()
        return _current


def _forget() -> None:
    # A forked child (a prefork pool process) has the parent's loop object but not its
    # thread: it makes its own on its first call.
    global _current, _lock
    _current = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_forget)
