"""AsyncClient: the operations of :mod:`planner.remote._operations` performed with an
asyncio httpx client and ``asyncio.sleep``."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
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


class _Stream:
    """The event stream an operation has open, if any."""

    def __init__(self) -> None:
        self.held: AbstractAsyncContextManager[httpx.Response] | None = None
        self.lines: AsyncIterator[str] | None = None

    async def close(self) -> None:
        held, self.held, self.lines = self.held, None, None
        if held is not None:
            await held.__aexit__(None, None, None)


class AsyncClient(ops.Base):
    """:class:`RemoteClient` for asyncio apps: the same methods, awaited (``events`` is an
    async iterator). ``async with AsyncClient(url, api_key=...) as client: ...``"""

    def __init__(self, url: str, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, api_key, timeout)
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers(self._key),
                                       timeout=timeout, transport=transport,
                                       follow_redirects=False,
                                       event_hooks={"request": [tracing.ainject]})

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> AsyncClient:
        url, key = cls._settings_args(settings)
        return cls(url, key)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    # -- the shell: effects performed -------------------------------------------------
    async def _run(self, op: Op[T], on_event: Callable[[RunEvent], Any] | None = None
                   ) -> T:
        result: list[T] = []
        async for event in self._drive(op, result):
            if on_event is not None:
                handled = on_event(event)
                if inspect.isawaitable(handled):
                    await handled
        return result[0]

    async def _drive(self, op: Op[T], result: list[T]) -> AsyncIterator[RunEvent]:
        """The op's events; its result into ``result`` (an async generator returns none)."""
        stream = _Stream()
        outcome: Any = None
        failure: Exception | None = None
        try:
            while True:
                try:
                    effect = op.send(outcome) if failure is None else op.throw(failure)
                except StopIteration as done:
                    result.append(done.value)
                    return
                outcome, failure = None, None
                if isinstance(effect, Emit):
                    yield effect.event  # the caller's code: its errors are its own
                    continue
                try:
                    outcome = await self._perform(effect, stream)
                except Exception as exc:
                    failure = thrown(exc, self.url, isinstance(effect, Open | ReadLine))
        finally:
            op.close()
            await stream.close()

    async def _perform(self, effect: Effect, stream: _Stream) -> Any:
        if isinstance(effect, Call):
            response = await self._http.request(effect.method, effect.path,
                                                json=effect.body, params=effect.params,
                                                headers=effect.headers)
            return response if effect.raw else answer(response, self.url, bool(self._key))
        if isinstance(effect, ReadLine):
            return None if stream.lines is None else await anext(stream.lines, None)
        if isinstance(effect, Open):
            await stream.close()
            held = self._http.stream(
                "GET", effect.path, headers=effect.headers,
                timeout=httpx.Timeout(self.timeout, read=effect.read_timeout))
            response = await held.__aenter__()  # held only once open
            stream.held = held
            if response.status_code != 200:
                await response.aread()
                answer(response, self.url, bool(self._key))  # the error it stands for
            stream.lines = response.aiter_lines()
        elif isinstance(effect, Close):
            await stream.close()
        elif isinstance(effect, Sleep):
            await asyncio.sleep(effect.seconds)
        return None

    # -- the Client's methods, awaited -------------------------------------------------
    async def ping(self) -> None:
        await self._run(ops.ping())

    async def ready(self) -> str | None:
        return await self._run(ops.ready())

    async def submit(self, plan: Plan | Mapping[str, Any], options: RunOptions | None = None,
                     *, idempotency_key: str | None = None) -> str:
        return await self._run(ops.submit(plan, options, idempotency_key))

    async def submit_goal(self, goal: str, options: RunOptions | None = None, *,
                          idempotency_key: str | None = None) -> str:
        return await self._run(ops.submit_goal(goal, options, idempotency_key))

    async def report(self, run_id: str) -> RunReport:
        return await self._run(ops.report(run_id))

    async def runs(self, status: str | None = None, limit: int = 20) -> list[RunSummary]:
        return await self._run(ops.runs(status, limit))

    async def cancel(self, run_id: str) -> bool:
        return await self._run(ops.cancel(run_id))

    async def approve(self, run_id: str, plan: Plan | Mapping[str, Any] | None = None
                      ) -> None:
        await self._run(ops.approve(run_id, plan))

    async def reject(self, run_id: str, reason: str | None = None) -> None:
        await self._run(ops.reject(run_id, reason))

    async def resume(self, run_id: str, budget_tokens: int | None = None,
                     budget_usd: float | None = None) -> None:
        await self._run(ops.resume(run_id, budget_tokens, budget_usd))

    async def retry(self, run_id: str, step_id: str | None = None) -> list[str]:
        return await self._run(ops.retry(run_id, step_id))

    async def tools(self) -> list[dict[str, Any]]:
        return await self._run(ops.tools())

    def events(self, run_id: str, after: str | None = None) -> AsyncIterator[RunEvent]:
        """The run's events after ``after``, live until the run has ended
        (``async for event in client.events(run_id)``)."""
        return self._drive(ops.events(run_id, after), [])

    async def wait(self, run_id: str, timeout: float | None = None,
                   on_event: Callable[[RunEvent], Any] | None = None) -> RunReport:
        """Until the run ends or waits for a person, or ``timeout`` seconds pass; its
        report. ``on_event`` may be a plain function or a coroutine function."""
        return await self._run(ops.wait(run_id, timeout), on_event)
