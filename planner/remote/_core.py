"""The HTTP clients' decisions, written once and free of I/O: when to try a request again,
how to follow a run's event stream (reconnect where it stopped, back off while the server
is away, keep a waiter's deadline, tell a run that ended from a quiet stream).

An operation is a generator that yields *effects* (:class:`Call`, :class:`Open`,
:class:`ReadLine`, :class:`Close`, :class:`Sleep`, :class:`Emit`) and is sent what each
came to; a failure is thrown in at the ``yield`` (:class:`Retryable`, :class:`Idle`, or the
error an answer stands for). :mod:`planner.remote._sync` and :mod:`planner.remote._async`
perform the effects, with httpx and time or with asyncio; tests drive the generators by
hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from planner import errors
from planner.errors import ChordalError, RateLimited, Unavailable
from planner.remote._sse import Sse
from planner.remote._wire import Idle, Incompatible, Retryable, run_path
from planner.store.records import TERMINAL_RUN, WAITING_RUN, RunEvent
from planner.vocabulary import EventType

#: Seconds without a byte on an event stream before it counts as dead (the server sends a
#: keep-alive comment every 15 s).
STREAM_IDLE_S = 45.0
#: How far past a waiter's deadline a read on its event stream may go.
DEADLINE_SLACK_S = 1.0
#: Backoff while the server does not answer (doubling up to the max), as Client.wait's.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.1, 2.0
#: Pause before following again a stream that ended with nothing in it.
QUIET_END_S = 0.5
#: Attempts of a request that is safe to repeat (a read, or a submit with its idempotency
#: key) when the server cannot be reached or answers 503.
SAFE_ATTEMPTS = 3
#: Longest wait between tries that a server's Retry-After may ask for.
IN_FLIGHT_WAIT_MAX_S = 5.0

Clock = Callable[[], float]


# -- effects ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """Send one API request; comes to its answer's JSON (``raw``: the response itself)."""

    method: str
    path: str
    body: Any = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    raw: bool = False


@dataclass(frozen=True)
class Open:
    """Open an event stream (closing any open one), reading with ``read_timeout``."""

    path: str
    headers: Mapping[str, str]
    read_timeout: float


@dataclass(frozen=True)
class ReadLine:
    """The open stream's next line; None where it ends."""


@dataclass(frozen=True)
class Close:
    """Close the open stream."""


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Emit:
    """Hand an event to the caller (``events`` yields it, ``wait`` its ``on_event``)."""

    event: RunEvent


Effect: TypeAlias = Call | Open | ReadLine | Close | Sleep | Emit
T = TypeVar("T")
#: An operation: effects out, their outcomes in, its result at the end.
Op: TypeAlias = Generator[Effect, Any, T]
READ, CLOSE = ReadLine(), Close()


# -- requests --------------------------------------------------------------------------
def call(request: Call, *, safe: bool = False) -> Op[Any]:
    """``request``'s answer. ``safe``: repeating it cannot do harm, so a missing answer or a
    503 is tried again a few times; a connection never made is always tried again."""
    pause = RECONNECT_FIRST_S
    for attempt in range(1, SAFE_ATTEMPTS + 1):
        try:
            return (yield request)
        except Retryable as exc:
            if exc.sent and not safe:
                raise exc.error from None
            failure = exc.error
        if attempt == SAFE_ATTEMPTS:
            raise failure
        yield Sleep(backoff(pause, failure))
        pause = min(RECONNECT_MAX_S, pause * 2)
    raise AssertionError("unreachable")


def status(run_id: str) -> Op[str]:
    return str((yield from call(Call("GET", run_path(run_id)), safe=True))["status"])


def backoff(pause: float, failure: ChordalError) -> float:
    """The wait before another try: the backoff, or what the server asked for (an
    Idempotency-Key in flight says when its answer should be there; a key with all its
    event streams open, when to try again), within reason."""
    asked = failure.retry_after_s if isinstance(failure, errors.InFlight | RateLimited) \
        else 0.0
    return min(max(pause, asked), IN_FLIGHT_WAIT_MAX_S)


# -- following a run -------------------------------------------------------------------
def stream_timeout(deadline: float | None, clock: Clock = time.monotonic) -> float | None:
    """The read timeout of a stream connection: a dead connection shows within
    STREAM_IDLE_S; a waiter's deadline is kept. None: the deadline has passed."""
    if deadline is None:
        return STREAM_IDLE_S
    left = deadline - clock()
    return None if left <= 0 else min(STREAM_IDLE_S, left)


def is_waiting(event: RunEvent) -> bool:
    """A run event that may mean the run now waits for a person (to be confirmed: the
    stream may replay an old one)."""
    return event.type.startswith("run.") and event.status in WAITING_RUN


def follow(run_id: str, after: str | None = None, deadline: float | None = None, *,
           stop_when_waiting: bool = False, clock: Clock = time.monotonic) -> Op[None]:
    """Emit the run's events after ``after`` until it has ended (a retried run goes on past
    its first ``run.finished``), ``deadline`` (a ``clock`` time) passes, or, with
    ``stop_when_waiting``, it waits for a person. Reconnects from the last event's id, so
    a server restart or a dropped connection loses none."""
    cursor, pause = after, RECONNECT_FIRST_S
    path = run_path(run_id, "/events")
    while True:
        idle = stream_timeout(deadline, clock)
        if idle is None:
            return
        headers = {"Accept": "text/event-stream"}
        if cursor:
            headers["Last-Event-ID"] = cursor
        try:
            yield Open(path, headers, idle)
            pause, parser, got, redial = RECONNECT_FIRST_S, Sse(), False, False
            while (line := (yield READ)) is not None:
                event = parser.feed(line)
                if event is not None:
                    cursor, got = event.id, True
                    yield Emit(event)
                    if event.type == EventType.RUN_FINISHED:
                        break  # the end, unless the run was retried since: below
                    if (stop_when_waiting and is_waiting(event)
                            and (yield from status(run_id)) in WAITING_RUN):
                        return
                # Every line (keep-alives too) checks the caller's deadline.
                left = stream_timeout(deadline, clock)
                if left is None:
                    return
                if idle - left > DEADLINE_SLACK_S:
                    redial = True  # with a read timeout that keeps the deadline
                    break
            yield CLOSE
            # Resume from the cursor: after run.finished (a retried run goes on past it),
            # after the server went away, or to keep the deadline. A stream with nothing
            # more for a run that has ended is the end.
            if not got and not redial:
                if (yield from status(run_id)) in TERMINAL_RUN:
                    return
                yield Sleep(min(QUIET_END_S, stream_timeout(deadline, clock) or 0))
        except Incompatible:
            raise
        except Idle:
            if stream_timeout(deadline, clock) is None:
                return  # the caller's deadline: not an error
            continue  # no keep-alive for STREAM_IDLE_S: a dead connection
        except (Retryable, Unavailable, RateLimited) as exc:
            # No answer, a 503, a status read that failed, or this key's streams all in
            # use (429): ride it out.
            failure = exc.error if isinstance(exc, Retryable) else exc
            wait = backoff(pause, failure)
            left = stream_timeout(deadline, clock)
            if deadline is not None and (left is None or left <= wait):
                raise gone(run_id, failure) from None
            yield Sleep(wait)
            pause = min(RECONNECT_MAX_S, pause * 2)


def gone(run_id: str, failure: ChordalError) -> ChordalError:
    if isinstance(failure, RateLimited):
        return failure  # the server answers: it says no more streams for this key
    return Unavailable(f"lost the Chordal server while following run {run_id!r} "
                       f"({failure}); it did not come back in time")
