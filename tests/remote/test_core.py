"""The HTTP clients' decisions (planner.remote._core), driven by hand: no server, no
sockets, no sleeping. Each test scripts what the server does and reads the effects the
core asked for."""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Callable
from typing import Any

import pytest

from planner import errors
from planner.remote import _core, _operations
from planner.remote._core import (
    RECONNECT_MAX_S,
    SAFE_ATTEMPTS,
    STREAM_IDLE_S,
    Call,
    Close,
    Effect,
    Emit,
    Op,
    Open,
    ReadLine,
    Sleep,
    call,
    follow,
)
from planner.remote._wire import Idle, Incompatible, Retryable

DOWN = errors.Unavailable("cannot reach the Chordal server")


class Clock:
    """A monotonic clock that moves only when the core sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drive(op: Op[Any], respond: Callable[[Effect], Any],
          seen: list[Effect] | None = None) -> tuple[list[Effect], Any]:
    """Perform ``op``'s effects with ``respond`` (what it raises is thrown into the op, as
    the shells do); every effect asked for (into ``seen`` too), and the op's result."""
    seen = [] if seen is None else seen
    outcome: Any = None
    failure: Exception | None = None
    while True:
        try:
            effect = op.send(outcome) if failure is None else op.throw(failure)
        except StopIteration as done:
            return seen, done.value
        seen.append(effect)
        outcome, failure = None, None
        try:
            outcome = respond(effect)
        except Exception as exc:
            failure = exc


def answers(*outcomes: Any) -> Callable[[Effect], Any]:
    """Each request answered by the next outcome (an exception is raised)."""
    left = list(outcomes)

    def respond(effect: Effect) -> Any:
        if not isinstance(effect, Call):
            return None
        outcome = left.pop(0) if len(left) > 1 else left[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome
    return respond


def sse(event_id: str, kind: str, status: str = "running") -> list[str]:
    data = {"id": event_id, "type": kind, "step": None, "status": status, "data": None}
    return [f"id: {event_id}", f"event: {kind}", f"data: {json.dumps(data)}", ""]


class Server:
    """A scripted server: each Open takes the next stream (its lines, or an exception to
    raise); a line may be an exception too (the connection breaking mid-stream); status
    reads answer the run's status from ``statuses`` (the last one stays)."""

    def __init__(self, *streams: list[Any] | Exception, statuses: tuple[str, ...] = (
            "succeeded",), clock: Clock | None = None,
                 each_line: Callable[[], None] | None = None) -> None:
        self.streams = list(streams)
        self.statuses = list(statuses)
        self.clock = clock or Clock()
        self.each_line = each_line
        self.lines: list[Any] = []

    def __call__(self, effect: Effect) -> Any:
        if isinstance(effect, Open):
            stream = self.streams.pop(0)
            if isinstance(stream, Exception):
                raise stream
            self.lines = list(stream)
        elif isinstance(effect, ReadLine):
            if self.each_line is not None:
                self.each_line()
            if not self.lines:
                return None
            line = self.lines.pop(0)
            if isinstance(line, Exception):
                raise line
            return line
        elif isinstance(effect, Call):
            status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
            return {"run_id": "r", "status": status, "goal": "g"}
        elif isinstance(effect, Sleep):
            self.clock.now += effect.seconds
        return None


def opened(seen: list[Effect]) -> list[Open]:
    return [e for e in seen if isinstance(e, Open)]


def emitted(seen: list[Effect]) -> list[str]:
    return [e.event.id for e in seen if isinstance(e, Emit)]


def slept(seen: list[Effect]) -> list[float]:
    return [e.seconds for e in seen if isinstance(e, Sleep)]


# -- requests --------------------------------------------------------------------------
def requests(seen: list[Effect]) -> list[Call]:
    return [e for e in seen if isinstance(e, Call)]


def test_a_safe_request_is_tried_again_with_backoff_then_gives_up():
    seen, answer = drive(call(Call("GET", "/healthz"), safe=True),
                         answers(Retryable(DOWN), Retryable(DOWN), {"ok": 1}))
    assert answer == {"ok": 1} and slept(seen) == [0.1, 0.2]
    seen = []
    with pytest.raises(errors.Unavailable):
        drive(call(Call("GET", "/v1/runs/r"), safe=True), answers(Retryable(DOWN)), seen)
    assert len(requests(seen)) == SAFE_ATTEMPTS


def test_a_request_that_may_have_arrived_is_not_repeated_unless_safe():
    seen: list[Effect] = []
    with pytest.raises(errors.Unavailable):
        drive(call(Call("POST", "/v1/runs/r/cancel")), answers(Retryable(DOWN)), seen)
    assert len(requests(seen)) == 1  # a cancel whose answer was lost is not sent again
    # A connection never made sent nothing: always worth another try.
    seen, answer = drive(call(Call("POST", "/v1/runs/r/retry")),
                         answers(Retryable(DOWN, sent=False), {"steps": ["a"]}))
    assert answer == {"steps": ["a"]} and slept(seen) == [0.1]


def test_other_errors_pass_at_once():
    seen: list[Effect] = []
    with pytest.raises(errors.RunNotFound):
        drive(call(Call("GET", "/v1/runs/r"), safe=True),
              answers(errors.RunNotFound("no run 'r'")), seen)
    assert len(requests(seen)) == 1


def test_the_wait_between_tries_is_what_the_server_asks_within_reason():
    assert _core.backoff(0.1, errors.InFlight("in flight", 3)) == 3
    assert _core.backoff(0.1, errors.RateLimited("slow", 60)) == _core.IN_FLIGHT_WAIT_MAX_S
    assert _core.backoff(0.4, DOWN) == 0.4


# -- following a run -------------------------------------------------------------------
def test_follow_emits_events_and_resumes_from_the_last_id():
    server = Server([*sse("1-0", "step.started"), Retryable(DOWN)],  # dropped mid-stream
                    sse("2-0", "run.finished", "succeeded"),
                    [])  # after run.finished: nothing more, and the run has ended
    seen, _ = drive(follow("r", after="0-5"), server)
    assert emitted(seen) == ["1-0", "2-0"]
    cursors = [o.headers.get("Last-Event-ID") for o in opened(seen)]
    assert cursors == ["0-5", "1-0", "2-0"]
    assert all(o.path == "/v1/runs/r/events" for o in opened(seen))
    assert slept(seen) == [0.1]  # the one backoff, after the drop


def test_a_retried_run_goes_on_past_its_run_finished():
    server = Server(sse("1-0", "run.finished", "failed"),
                    sse("2-0", "run.retried") + sse("3-0", "run.finished", "succeeded"), [])
    seen, _ = drive(follow("r"), server)
    assert emitted(seen) == ["1-0", "2-0", "3-0"]
    assert len(requests(seen)) == 1  # the status, once a stream had nothing more


def test_a_quiet_stream_of_a_live_run_is_followed_again_after_a_pause():
    server = Server([], sse("1-0", "run.finished", "succeeded"), [],
                    statuses=("running", "succeeded"))
    seen, _ = drive(follow("r"), server)
    assert emitted(seen) == ["1-0"]
    assert slept(seen) == [_core.QUIET_END_S]
    assert len(opened(seen)) == 3


def test_wait_stops_when_the_run_waits_for_a_person_and_only_then():
    # An old waiting event replayed (the run runs again since): not the end.
    server = Server(sse("1-0", "run.awaiting_approval", "awaiting_approval")
                    + sse("2-0", "run.running") + sse("3-0", "run.paused", "paused")
                    + sse("4-0", "step.started"),
                    statuses=("running", "paused"))
    seen, _ = drive(follow("r", stop_when_waiting=True), server)
    assert emitted(seen) == ["1-0", "2-0", "3-0"]
    # Without stop_when_waiting the same events are just events.
    seen, _ = drive(follow("r"), Server(sse("1-0", "run.paused", "paused"), []))
    assert emitted(seen) == ["1-0"] and len(opened(seen)) == 2


def test_a_dead_connection_is_redialled_and_a_deadline_ends_it_quietly():
    clock = Clock()
    # No keep-alive for STREAM_IDLE_S: a dead connection, opened again.
    server = Server([Idle()], sse("1-0", "run.finished", "succeeded"), [], clock=clock)
    seen, _ = drive(follow("r", clock=clock), server)
    assert emitted(seen) == ["1-0"] and len(opened(seen)) == 3
    assert opened(seen)[0].read_timeout == STREAM_IDLE_S
    # With a deadline, the read timeout keeps it; a silence past it is the end, not an
    # error.
    clock = Clock()
    server = Server([Idle()], clock=clock)

    def later(effect: Effect) -> Any:
        if isinstance(effect, ReadLine):
            clock.now += 5
        return server(effect)

    seen, _ = drive(follow("r", deadline=clock.now + 4, clock=clock), later)
    assert [o.read_timeout for o in opened(seen)] == [4]


def test_a_stream_longer_than_the_deadline_is_redialled_with_what_is_left():
    """Keep-alives every 2 s would keep a 10 s read timeout from ever firing: the core
    redials with the time left, and ends quietly at the deadline."""
    clock = Clock()

    def tick() -> None:
        clock.now += 2

    server = Server(*[[": keep-alive"] * 3] * 10, clock=clock, each_line=tick,
                    statuses=("running",))
    seen, _ = drive(follow("r", deadline=clock.now + 10, clock=clock), server)
    assert [o.read_timeout for o in opened(seen)] == [10, 8, 6, 4, 2]
    assert sum(isinstance(e, Close) for e in seen) == 4
    assert emitted(seen) == [] and not requests(seen)


def test_a_server_away_is_ridden_out_with_doubling_backoff_until_the_deadline():
    clock = Clock()
    server = Server(*[Retryable(DOWN)] * 10, sse("1-0", "run.finished", "succeeded"), [],
                    clock=clock)
    seen, _ = drive(follow("r", clock=clock), server)  # no deadline: it comes back
    assert slept(seen) == [0.1, 0.2, 0.4, 0.8, 1.6] + [RECONNECT_MAX_S] * 5
    clock = Clock()
    server = Server(*[Retryable(DOWN)] * 10, clock=clock)
    with pytest.raises(errors.Unavailable, match="did not come back in time"):
        drive(follow("r", deadline=clock.now + 1, clock=clock), server)
    assert clock.now - 1000 < 1


def test_all_streams_of_a_key_in_use_is_waited_out_or_said():
    clock = Clock()
    busy = errors.RateLimited("event streams: 20 already open", 1)
    seen, _ = drive(follow("r", clock=clock),
                    Server(busy, sse("1-0", "run.finished", "succeeded"), [], clock=clock))
    assert slept(seen) == [1]
    with pytest.raises(errors.RateLimited):
        drive(follow("r", deadline=clock.now + 0.5, clock=clock),
              Server(busy, clock=clock))


def test_an_unreadable_event_or_a_refusal_is_raised_at_once():
    with pytest.raises(Incompatible, match="not a run event"):
        drive(follow("r"), Server(['data: {"what": 1}', ""]))
    with pytest.raises(errors.RunNotFound):
        drive(follow("r"), Server(errors.RunNotFound("no run 'r'")))


def test_wait_follows_then_reads_the_report():
    server = Server(sse("1-0", "run.finished", "succeeded"), [])
    seen, report = drive(_operations.wait("r", None), server)
    assert report.status == "succeeded" and emitted(seen) == ["1-0"]
    assert isinstance(seen[-1], Call) and seen[-1].path == "/v1/runs/r"


def test_the_core_does_no_io():
    """Sans I/O: the decisions import neither httpx nor asyncio, and never sleep."""
    for module in (_core, _operations):
        tree = ast.parse(inspect.getsource(module))
        imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                    if isinstance(node, ast.Import | ast.ImportFrom)
                    for alias in (node.names if isinstance(node, ast.Import)
                                  else [ast.alias(node.module or "")])}
        assert not imported & {"httpx", "asyncio", "socket"}, module.__name__
        assert "sleep(" not in inspect.getsource(module)
