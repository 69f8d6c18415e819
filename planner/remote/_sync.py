"""RemoteClient: the operations of :mod:`planner.remote._operations` performed with a
blocking httpx client and ``time.sleep``."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, TypeVar

import httpx

from planner import tracing
from planner.language.plan import Plan
from planner.options import RunOptions
from planner.remote import _operations as ops
from planner.remote._core import Call, Close, Effect, Emit, Op, Open, ReadLine, Sleep
from planner.remote._wire import DEFAULT_TIMEOUT_S, answer, headers, thrown
from planner.settings import Settings
from planner.store.records import RunEvent, RunReport, RunSummary

T = TypeVar("T")
EventHandler = Callable[[RunEvent], Any]


class _Stream:
    """The event stream an operation has open, if any."""

    def __init__(self) -> None:
        self.held: AbstractContextManager[httpx.Response] | None = None
        self.lines: Iterator[str] = iter(())

    def close(self) -> None:
        held, self.held, self.lines = self.held, None, iter(())
        if held is not None:
            held.__exit__(None, None, None)


class RemoteClient(ops.Base):
    """A Chordal deployment reached over HTTP (``chordal serve``): the Client's methods,
    no Redis, no tool modules. Build it with ``Client.from_url(url, api_key=...)``.

    Thread-safe (httpx pools connections); close it (or use it as a context manager) to
    free them."""

    def __init__(self, url: str, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, api_key, timeout)
        self._http = httpx.Client(base_url=self.url, headers=headers(self._key),
                                  timeout=timeout, transport=transport,
                                  follow_redirects=False,
                                  event_hooks={"request": [tracing.inject]})

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> RemoteClient:
        """The server of ``CHORDAL_API_URL``, with the key ``CHORDAL_API_KEY``."""
        url, key = cls._settings_args(settings)
        return cls(url, key)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the shell: effects performed -------------------------------------------------
    def _run(self, op: Op[T], on_event: EventHandler | None = None) -> T:
        driver = self._drive(op)
        while True:
            try:
                event = next(driver)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if on_event is not None:
                on_event(event)

    def _drive(self, op: Op[T]) -> Generator[RunEvent, None, T]:
        stream = _Stream()
        outcome: Any = None
        failure: Exception | None = None
        try:
            while True:
                try:
                    effect = op.send(outcome) if failure is None else op.throw(failure)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                outcome, failure = None, None
                if isinstance(effect, Emit):
                    yield effect.event  # the caller's code: its errors are its own
                    continue
                try:
                    outcome = self._perform(effect, stream)
                except Exception as exc:
                    failure = thrown(exc, self.url, isinstance(effect, Open | ReadLine))
        finally:
            op.close()
            stream.close()

    def _perform(self, effect: Effect, stream: _Stream) -> Any:
        if isinstance(effect, Call):
            response = self._http.request(effect.method, effect.path, json=effect.body,
                                          params=effect.params, headers=effect.headers)
            return response if effect.raw else answer(response, self.url, bool(self._key))
        if isinstance(effect, ReadLine):
            return next(stream.lines, None)
        if isinstance(effect, Open):
            stream.close()
            held = self._http.stream(
                "GET", effect.path, headers=effect.headers,
                timeout=httpx.Timeout(self.timeout, read=effect.read_timeout))
            response = held.__enter__()  # held only once open: closing it sends nothing
            stream.held = held
            if response.status_code != 200:
                response.read()
                answer(response, self.url, bool(self._key))  # the error it stands for
            stream.lines = response.iter_lines()
        elif isinstance(effect, Close):
            stream.close()
        elif isinstance(effect, Sleep):
            time.sleep(effect.seconds)
        return None

    # -- the Client's methods ----------------------------------------------------------
    def ping(self) -> None:
        """Fail with one clear line if the server does not answer."""
        self._run(ops.ping())

    def ready(self) -> str | None:
        """None when the server is ready (Redis answers, a worker consumes every queue);
        else what is missing, as it says."""
        return self._run(ops.ready())

    def submit(self, plan: Plan | Mapping[str, Any], options: RunOptions | None = None, *,
               idempotency_key: str | None = None) -> str:
        """Submit a plan (the server validates it: ``PlanInvalid`` lists every problem);
        return the run id. ``options.callback_url`` is POSTed the final report, signed,
        when the run ends. A retried submit with the same ``idempotency_key`` (one is made
        if none is given) returns the same run instead of starting another."""
        return self._run(ops.submit(plan, options, idempotency_key))

    def submit_goal(self, goal: str, options: RunOptions | None = None, *,
                    idempotency_key: str | None = None) -> str:
        """Start a run from a goal, planned by the server's model. ``options.roles`` picks
        a model per role, e.g. ``{"planner": {"model": "claude-sonnet-5-5"}}``."""
        return self._run(ops.submit_goal(goal, options, idempotency_key))

    def report(self, run_id: str) -> RunReport:
        """The run report, with ``usage``."""
        return self._run(ops.report(run_id))

    def runs(self, status: str | None = None, limit: int = 20) -> list[RunSummary]:
        """This key's runs, newest first, optionally only in ``status``."""
        return self._run(ops.runs(status, limit))

    def cancel(self, run_id: str) -> bool:
        """End a run ``cancelled``; False if it had ended."""
        return self._run(ops.cancel(run_id))

    def approve(self, run_id: str, plan: Plan | Mapping[str, Any] | None = None) -> None:
        """Start a run that waits for approval, optionally with an edited ``plan``."""
        self._run(ops.approve(run_id, plan))

    def reject(self, run_id: str, reason: str | None = None) -> None:
        """End a run that waits for approval, ``cancelled`` with ``reason``."""
        self._run(ops.reject(run_id, reason))

    def resume(self, run_id: str, budget_tokens: int | None = None,
               budget_usd: float | None = None) -> None:
        """Go on with a run paused at its budget, with a new budget."""
        self._run(ops.resume(run_id, budget_tokens, budget_usd))

    def retry(self, run_id: str, step_id: str | None = None) -> list[str]:
        """Re-drive a failed or cancelled run (``step_id``: only that step); the steps
        that run again."""
        return self._run(ops.retry(run_id, step_id))

    def tools(self) -> list[dict[str, Any]]:
        """The server's tools, with their schemas."""
        return self._run(ops.tools())

    def events(self, run_id: str, after: str | None = None) -> Iterator[RunEvent]:
        """The run's events after the stream id ``after`` (all of them by default), live
        until the run has ended (a retried run goes on past its first ``run.finished``);
        reconnects where it stopped if the connection drops."""
        yield from self._drive(ops.events(run_id, after))

    def wait(self, run_id: str, timeout: float | None = None,
             on_event: EventHandler | None = None) -> RunReport:
        """Block until the run ends or waits for a person (approval, a paused budget), or
        ``timeout`` seconds pass; return its report. ``on_event`` sees each event as it
        comes."""
        return self._run(ops.wait(run_id, timeout), on_event)
