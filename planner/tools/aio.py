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
  tool short.

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
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

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
        #: The callers' futures not settled yet: settled (transient) if the loop is left.
        self.waiting: set[concurrent.futures.Future[Any]] = set()
        self.waiting_lock = threading.Lock()
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
            with self.waiting_lock:
                unsettled = list(self.waiting)
            for done in unsettled:
                _fail(done, _abandoned("its call"))

    def run(self, awaitable: Awaitable[T], timeout_s: float, what: str) -> T:
        if threading.current_thread() is self.thread:
            _coroutine(awaitable).close()  # never awaited: no "was never awaited" warning
            raise PermanentError(
                f"{what} was called from inside the event loop's own thread (by an async "
                "tool, say), where waiting for it would block the loop it needs; await "
                "the tool's function instead of calling invoke()")
        context = contextvars.copy_context()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()
        started: list[asyncio.Task[T]] = []

        def start() -> None:
            task = self.loop.create_task(_coroutine(awaitable), context=context)
            started.append(task)
            task.add_done_callback(lambda t: _settle(done, t, what, self))

        with self.waiting_lock:
            self.waiting.add(done)
        try:
            self.loop.call_soon_threadsafe(start)
        except RuntimeError:  # closed: left behind between _loop() and here
            with self.waiting_lock:
                self.waiting.discard(done)
            _coroutine(awaitable).close()
            raise _abandoned(what) from None
        try:
            finished, _ = concurrent.futures.wait([done], timeout_s)
        except BaseException:
            # Celery's soft time limit (or a shutdown) interrupted the wait: the coroutine
            # must not go on running on the loop after the attempt ended.
            self._cancel(started, done, what)
            raise
        finally:
            with self.waiting_lock:
                self.waiting.discard(done)
        if not finished:
            self._cancel(started, done, what)
            raise AttemptTimeout(f"{what} timed out after {timeout_s:g} s; its coroutine "
                                 "was cancelled")
        return done.result()

    def _cancel(self, started: list[asyncio.Task[T]],
                done: concurrent.futures.Future[T], what: str) -> None:
        # ``start`` was queued first, so the task exists when this runs.
        try:
            self.loop.call_soon_threadsafe(lambda: [t.cancel() for t in started])
        except RuntimeError:  # closed: left behind, its tasks cancelled when it stopped
            return
        finished, _ = concurrent.futures.wait([done], CANCEL_GRACE_S)
        if finished:
            return
        if self._answers():
            log.warning("%s: its coroutine ignored its cancellation and still runs on the "
                        "event loop", what)
            return
        log.warning("%s: its coroutine blocks the event loop and ignored its cancellation; "
                    "this process leaves that loop and starts a new one", what)
        self.leave()

    def _answers(self) -> bool:
        ping: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            self.loop.call_soon_threadsafe(ping.set_result, None)
        except RuntimeError:  # closed: it was left behind already
            return False
        finished, _ = concurrent.futures.wait([ping], PING_S)
        return bool(finished)

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


def _fail(done: concurrent.futures.Future[Any], exc: BaseException) -> None:
    if not done.done():
        done.set_exception(exc)


def _settle(done: concurrent.futures.Future[T], task: asyncio.Task[T], what: str,
            owner: _Loop) -> None:
    if done.done():
        return
    if task.cancelled():
        if owner.left:
            # Cancelled because another call blocked the loop: not this call's fault.
            done.set_exception(_abandoned(what))
        else:
            # Cancelled by the caller (who has stopped reading), or by the coroutine itself.
            done.set_exception(PermanentError(f"{what}: its coroutine was cancelled"))
    elif (exc := task.exception()) is not None:
        done.set_exception(exc)
    else:
        done.set_result(task.result())


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
