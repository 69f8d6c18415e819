"""Each method of the HTTP clients as one sans-IO operation (:mod:`planner.remote._core`):
what it sends, whether it may be repeated, what it makes of the answer. The sync and async
clients run the same operations."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

from planner.errors import ConfigError, Conflict, InvalidInput
from planner.language.plan import Plan
from planner.options import RunOptions
from planner.remote._core import Call, Clock, Op, call, follow
from planner.remote._wire import (
    Retryable,
    base_url,
    check_key,
    create_body,
    decode,
    not_ready,
    page_params,
    plan_body,
    redact,
    run_path,
    without_none,
)
from planner.settings import Settings
from planner.store.records import RunReport, RunSummary


class Base:
    """What both clients hold: the server's URL, the key (never shown), the timeout."""

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        self.url = base_url(url)
        self._key = check_key(api_key)
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({redact(self.url)!r})"

    @classmethod
    def _settings_args(cls, settings: Settings | None) -> tuple[str, str | None]:
        s = settings or Settings.from_env()
        if not s.remote.api_url:
            raise ConfigError("CHORDAL_API_URL: is not set; set it to the server's URL, "
                              "e.g. http://host:8000")
        return s.remote.api_url, s.remote.api_key


def ping() -> Op[None]:
    yield from call(Call("GET", "/healthz"), safe=True)


def ready() -> Op[str | None]:
    try:
        response = yield Call("GET", "/readyz", raw=True)
    except Retryable as exc:  # asked once: it is a probe
        raise exc.error from None
    return None if response.status_code == 200 else not_ready(response)


def submit(plan: Plan | Mapping[str, Any], options: RunOptions | None,
           idempotency_key: str | None) -> Op[str]:
    return (yield from create(create_body(options, plan=plan), idempotency_key))


def submit_goal(goal: str, options: RunOptions | None, idempotency_key: str | None
                ) -> Op[str]:
    if not isinstance(goal, str) or not goal.strip():
        raise InvalidInput("goal: is empty; say what the run is for")
    return (yield from create(create_body(options, goal=goal), idempotency_key))


def create(body: dict[str, Any], idempotency_key: str | None) -> Op[str]:
    """With an Idempotency-Key (one is made if none is given), a create is safe to repeat:
    the server answers a repeat with the run the first one made."""
    key = idempotency_key or uuid.uuid4().hex
    answer = yield from call(Call("POST", "/v1/runs", body=body,
                                  headers={"Idempotency-Key": key}), safe=True)
    return str(answer["run_id"])


def report(run_id: str) -> Op[RunReport]:
    data = yield from call(Call("GET", run_path(run_id)), safe=True)
    return decode(RunReport.model_validate, data, "run report")


def runs(status: str | None, limit: int) -> Op[list[RunSummary]]:
    found: list[RunSummary] = []
    cursor: str | None = None
    while len(found) < limit:
        params = page_params(status, limit - len(found), cursor)
        page = yield from call(Call("GET", "/v1/runs", params=params), safe=True)
        found.extend(decode(RunSummary.model_validate, r, "run list")
                     for r in page.get("runs", []))
        cursor = page.get("next_cursor")
        if not cursor or not page.get("runs"):
            break
    return found[:limit]


def cancel(run_id: str) -> Op[bool]:
    try:
        yield from call(Call("POST", run_path(run_id, "/cancel")))
    except Conflict:
        return False
    return True


def approve(run_id: str, plan: Plan | Mapping[str, Any] | None) -> Op[None]:
    body = {"plan": plan_body(plan)} if plan is not None else {}
    yield from call(Call("POST", run_path(run_id, "/approve"), body=body))


def reject(run_id: str, reason: str | None) -> Op[None]:
    yield from call(Call("POST", run_path(run_id, "/reject"), body=without_none(
        reason=reason)))


def resume(run_id: str, budget_tokens: int | None, budget_usd: float | None) -> Op[None]:
    yield from call(Call("POST", run_path(run_id, "/resume"), body=without_none(
        budget_tokens=budget_tokens, budget_usd=budget_usd)))


def retry(run_id: str, step_id: str | None) -> Op[list[str]]:
    answer = yield from call(Call("POST", run_path(run_id, "/retry"), body=without_none(
        step=step_id)))
    return [str(s) for s in answer.get("steps", [])]


def tools() -> Op[list[dict[str, Any]]]:
    return list((yield from call(Call("GET", "/v1/tools"), safe=True))["tools"])


def events(run_id: str, after: str | None) -> Op[None]:
    return (yield from follow(run_id, after))


def wait(run_id: str, timeout: float | None, clock: Clock = time.monotonic
         ) -> Op[RunReport]:
    """Follow until the run ends or waits for a person, or ``timeout`` seconds pass; then
    its report."""
    deadline = None if timeout is None else clock() + timeout
    yield from follow(run_id, None, deadline, stop_when_waiting=True, clock=clock)
    return (yield from report(run_id))
