"""Chordal over HTTP: clients of ``chordal serve`` for apps that have neither Redis access
nor the tool modules (``Client.from_url``, ``AsyncClient``).

The methods are :class:`~planner.client.Client`'s (``submit``, ``submit_goal``,
``report``, ``wait``, ``events``, ``runs``, ``cancel``, ``approve``, ``reject``,
``resume``, ``retry``) and return the same typed records. The server validates plans
(with its tool modules), so an invalid plan raises ``PlanInvalid`` with every problem, as
the Redis client does; every error of the API's ``{"error": {...}}`` shape comes back as
the :mod:`planner.errors` class it names. ``wait`` and ``events`` follow the run's event
stream (server-sent events) and reconnect where they stopped (``Last-Event-ID``), so a
server restart or a dropped connection loses no event.

The API key goes in the ``Authorization`` header, never in a URL, and is never logged.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from planner import errors, tracing
from planner.errors import (
    ChordalError,
    ConfigError,
    InvalidInput,
    PlanInvalid,
    Problem,
    RateLimited,
    Unauthorized,
    Unavailable,
    UserError,
)
from planner.language.plan import Plan
from planner.language.refs import with_json_refs
from planner.settings import Settings
from planner.store.records import (
    TERMINAL_RUN,
    WAITING_RUN,
    OnBudget,
    RunEvent,
    RunReport,
    RunSummary,
)

EventHandler = Callable[[RunEvent], Any]
#: Seconds without a byte on an event stream before it counts as dead (the server sends a
#: keep-alive comment every 15 s).
STREAM_IDLE_S = 45.0
#: How far past a waiter's deadline a read on its event stream may go.
DEADLINE_SLACK_S = 1.0
#: Backoff while the server does not answer (doubling up to the max), as Client.wait's.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.1, 2.0
#: Pause before following again a stream that ended with nothing in it.
QUIET_END_S = 0.5
#: What a server restarting (or Redis away) answers, directly or through a proxy.
TRANSIENT_STATUS = frozenset({502, 503, 504})
#: Attempts of a request that is safe to repeat (a read, or a submit with its idempotency
#: key) when the server cannot be reached or answers 503.
SAFE_ATTEMPTS = 3
#: Longest wait between tries that a server's Retry-After may ask for.
IN_FLIGHT_WAIT_MAX_S = 5.0
DEFAULT_TIMEOUT_S = 30.0
#: Most runs the API lists in one page.
PAGE_MAX = 200
USER_AGENT = "chordal-client/0.1"

#: Status -> the error class when the body does not name a known one.
_BY_STATUS: dict[int, type[UserError]] = {
    400: errors.BadRequest, 401: Unauthorized, 403: Unauthorized, 404: errors.NotFound,
    409: errors.Conflict, 413: errors.RequestTooLarge, 422: InvalidInput, 429: RateLimited,
    503: Unavailable,
}
#: The user errors an answer may name (``{"error": {"type": ...}}``).
_BY_NAME: dict[str, type[UserError]] = {
    name: cls for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, UserError)
}

T = TypeVar("T")


# -- what both clients share: URLs, bodies, answers, the event stream's parser ----------
def base_url(url: str) -> str:
    """``url`` checked and without a trailing slash: http(s), a host, no credentials."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url: is empty; give the server's URL, e.g. http://host:8000")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"url: must be an http:// or https:// URL with a host, e.g. "
                           f"http://host:8000, not {_redact(url)!r}")
    if parts.username or parts.password:
        raise InvalidInput("url: must not carry credentials; pass the secret as api_key "
                           "(it goes in the Authorization header)")
    if parts.query or parts.fragment:
        raise InvalidInput("url: must not have a query or a fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _redact(url: str) -> str:
    """A URL as it may be shown: no credentials, no query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unreadable URL>"


def _run_path(run_id: str, suffix: str = "") -> str:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput("run_id: is empty")
    return f"/v1/runs/{quote(run_id, safe='')}{suffix}"


def _plan_body(plan: Plan | Mapping[str, Any]) -> Any:
    if isinstance(plan, Plan):
        return plan.model_dump(mode="json", exclude_none=True)
    if isinstance(plan, Mapping):
        return with_json_refs(dict(plan))  # a Ref built in Python: its {"$ref": ...}
    raise InvalidInput(f"plan: must be a Plan or a JSON object, not {type(plan).__name__}; "
                       "a CompiledPlan needs the Redis Client")


def _options(approve: bool, budget_tokens: int | None, budget_usd: float | None,
             on_budget: str, max_replans: int | None, checkpoint_all: bool,
             callback_url: str | None) -> dict[str, Any]:
    """The run options of a submit body, sent only when set (the server's defaults hold
    otherwise)."""
    body: dict[str, Any] = {"approve": approve, "on_budget": on_budget,
                            "checkpoint_all": checkpoint_all}
    for name, value in (("budget_tokens", budget_tokens), ("budget_usd", budget_usd),
                        ("max_replans", max_replans), ("callback_url", callback_url)):
        if value is not None:
            body[name] = value
    return body


def _models(roles: Mapping[str, Mapping[str, Any]] | None) -> dict[str, str]:
    """``roles`` as the API takes them: only a model per role travels over HTTP."""
    models: dict[str, str] = {}
    for role, over in (roles or {}).items():
        extra = sorted(set(over) - {"model"})
        if extra or not isinstance(over.get("model"), str):
            raise InvalidInput(f"roles.{role}: over HTTP a role takes only a model "
                               f"({{'model': 'claude-…'}}), not {', '.join(extra) or 'none'}")
        models[role] = over["model"]
    return models


def error_from(response: httpx.Response, had_key: bool = True) -> ChordalError:
    """The :mod:`planner.errors` exception an error answer stands for."""
    status = response.status_code
    kind, message, problems = None, "", None
    try:
        body = json.loads(response.content)
        error = body["error"]
        kind, message = error.get("type"), str(error.get("message") or "")
        problems = error.get("problems")
    except (ValueError, KeyError, TypeError, AttributeError):
        message = f"the server answered {status} {response.reason_phrase}".strip()
    cls = _BY_NAME.get(kind or "") or _BY_STATUS.get(status)
    if cls is PlanInvalid or (cls is None and problems):
        found = [Problem(p.get("step"), str(p.get("field", "")), str(p.get("message", "")))
                 for p in problems or [] if isinstance(p, dict)]
        if found:
            return PlanInvalid(found)
        cls = InvalidInput
    if status == 401 and not had_key:
        message += " (no API key was given: pass api_key, or set CHORDAL_API_KEY)"
    if cls is RateLimited or status == 429:
        return RateLimited(message or "rate limited", _retry_after(response))
    if cls is errors.InFlight:
        return errors.InFlight(message, _retry_after(response))
    if cls is None or cls is PlanInvalid:
        # Not one of ours (a proxy, a 500): the status and a short excerpt say what. A
        # gateway's 502 or 504 passes (a restart); anything else is the server's failure.
        text = response.text[:200].strip()
        what = f"the Chordal server answered {status}: {message or text}"
        return Unavailable(what) if status in TRANSIENT_STATUS else ChordalError(what)
    try:
        return cls(message)
    except TypeError:  # an error class with other arguments: keep its family's meaning
        base = _BY_STATUS.get(status, UserError)
        return base(message)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


class _Incompatible(Unavailable):
    """The server answered with something this client cannot read: retrying cannot help."""


def _pause(backoff: float, failure: ChordalError) -> float:
    """The wait before another try: the backoff, or what the server asked for (an
    Idempotency-Key in flight says when its answer should be there; a key with all its
    event streams open, when to try again), within reason."""
    asked = failure.retry_after_s if isinstance(failure, errors.InFlight | RateLimited) \
        else 0.0
    return min(max(backoff, asked), IN_FLIGHT_WAIT_MAX_S)


class _Retryable(Exception):
    """A failure worth another try (no answer, or a 503)."""

    def __init__(self, error: ChordalError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Sse:
    """An event stream's parser, fed one line at a time (the text/event-stream format)."""

    data: list[str]
    event_id: str | None = None
    kind: str | None = None

    @classmethod
    def new(cls) -> _Sse:
        return cls(data=[])

    def feed(self, line: str) -> RunEvent | None:
        """The event this line completes, if any."""
        if line == "":
            event = None
            if self.data:
                try:
                    event = RunEvent.model_validate_json("\n".join(self.data))
                except ValidationError as exc:
                    raise _Incompatible(f"the server sent an event that is not a run "
                                        f"event: {exc.errors()[0]['msg']}") from None
                if self.event_id and not event.id:
                    event.id = self.event_id
            self.data, self.kind = [], None
            return event
        if line.startswith(":"):
            return None  # a comment: the keep-alive
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self.data.append(value)
        elif name == "id":
            self.event_id = value
        elif name == "event":
            self.kind = value
        return None


def _is_waiting(event: RunEvent) -> bool:
    """A run event that may mean the run now waits for a person (to be confirmed: the
    stream may replay an old one)."""
    return event.type.startswith("run.") and event.status in WAITING_RUN


def _stream_timeout(deadline: float | None) -> float | None:
    """The read timeout of a stream connection: a dead connection shows within
    STREAM_IDLE_S; a waiter's deadline is kept. None: the deadline has passed."""
    if deadline is None:
        return STREAM_IDLE_S
    left = deadline - time.monotonic()
    return None if left <= 0 else min(STREAM_IDLE_S, left)


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _check_key(api_key: str | None) -> str | None:
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()
                                or any(c in api_key for c in "\r\n")):
        raise InvalidInput("api_key: must be the key's secret, one line, not empty")
    return api_key.strip() if api_key else None


def _unreachable(url: str, exc: Exception) -> Unavailable:
    return Unavailable(f"cannot reach the Chordal server at {_redact(url)} "
                       f"({type(exc).__name__}: {exc or 'no detail'})")


def _decode(model: Callable[[Any], T], data: Any, what: str) -> T:
    try:
        return model(data)
    except ValidationError as exc:
        raise _Incompatible(f"the server's {what} is not what this client reads: "
                          f"{exc.errors()[0]['msg']}; are client and server the same "
                          "version?") from None


class _Base:
    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        self.url = base_url(url)
        self._key = _check_key(api_key)
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}({_redact(self.url)!r})"

    @classmethod
    def _settings_args(cls, settings: Settings | None) -> tuple[str, str | None]:
        s = settings or Settings.from_env()
        if not s.api_url:
            raise ConfigError("CHORDAL_API_URL: is not set; set it to the server's URL, "
                              "e.g. http://host:8000")
        return s.api_url, s.api_key

    def _answer(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            error = error_from(response, had_key=self._key is not None)
            if response.status_code in TRANSIENT_STATUS or isinstance(error, errors.InFlight):
                raise _Retryable(error)
            raise error
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise _Incompatible(f"the server at {_redact(self.url)} answered "
                              f"{response.status_code} with something that is not JSON; "
                              "is this a Chordal server?") from None


class RemoteClient(_Base):
    """A Chordal deployment reached over HTTP (``chordal serve``): the Client's methods,
    no Redis, no tool modules. Build it with ``Client.from_url(url, api_key=...)``.

    Thread-safe (httpx pools connections); close it (or use it as a context manager) to
    free them."""

    def __init__(self, url: str, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(url, api_key, timeout)
        self._http = httpx.Client(base_url=self.url, headers=_headers(self._key),
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

    # -- requests ------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, body: Any = None,
                 params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, safe: bool = False) -> Any:
        """One API call; its answer's JSON. ``safe``: repeating it cannot do harm, so a
        missing answer or a 503 is retried a few times."""
        pause = RECONNECT_FIRST_S
        for attempt in range(1, SAFE_ATTEMPTS + 1):
            try:
                response = self._http.request(method, path, json=body, params=params,
                                              headers=headers)
                return self._answer(response)
            except httpx.ConnectError as exc:  # nothing was sent: always safe to retry
                failure: ChordalError = _unreachable(self.url, exc)
            except httpx.TransportError as exc:
                if not safe:
                    raise _unreachable(self.url, exc) from None
                failure = _unreachable(self.url, exc)
            except _Retryable as exc:
                if not safe:
                    raise exc.error from None
                failure = exc.error
            if attempt == SAFE_ATTEMPTS:
                raise failure
            time.sleep(_pause(pause, failure))
            pause = min(RECONNECT_MAX_S, pause * 2)
        raise AssertionError("unreachable")

    def ping(self) -> None:
        """Fail with one clear line if the server does not answer."""
        self._request("GET", "/healthz", safe=True)

    def ready(self) -> str | None:
        """None when the server is ready (Redis answers, a worker consumes every queue);
        else what is missing, as it says."""
        try:
            response = self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return None if response.status_code == 200 else _not_ready(response)

    def submit(self, plan: Plan | Mapping[str, Any], *, approve: bool = False,
               budget_tokens: int | None = None, budget_usd: float | None = None,
               on_budget: OnBudget = "stop", max_replans: int | None = None,
               checkpoint_all: bool = False, callback_url: str | None = None,
               idempotency_key: str | None = None) -> str:
        """Submit a plan (the server validates it: ``PlanInvalid`` lists every problem);
        return the run id. ``callback_url`` is POSTed the final report, signed, when the
        run ends. A retried submit with the same ``idempotency_key`` (one is made if none
        is given) returns the same run instead of starting another."""
        body = {"plan": _plan_body(plan),
                **_options(approve, budget_tokens, budget_usd, on_budget, max_replans,
                           checkpoint_all, callback_url)}
        return self._create(body, idempotency_key)

    def submit_goal(self, goal: str, *, roles: Mapping[str, Mapping[str, Any]] | None = None,
                    budget_tokens: int | None = None, budget_usd: float | None = None,
                    approve: bool = False, on_budget: OnBudget = "stop",
                    max_replans: int | None = None, checkpoint_all: bool = False,
                    callback_url: str | None = None,
                    idempotency_key: str | None = None) -> str:
        """Start a run from a goal, planned by the server's model. ``roles`` picks a model
        per role, e.g. ``{"planner": {"model": "claude-sonnet-5-5"}}``."""
        if not isinstance(goal, str) or not goal.strip():
            raise InvalidInput("goal: is empty; say what the run is for")
        body: dict[str, Any] = {"goal": goal, **_options(
            approve, budget_tokens, budget_usd, on_budget, max_replans, checkpoint_all,
            callback_url)}
        models = _models(roles)
        if models:
            body["models"] = models
        return self._create(body, idempotency_key)

    def _create(self, body: dict[str, Any], idempotency_key: str | None) -> str:
        key = idempotency_key or uuid.uuid4().hex
        answer = self._request("POST", "/v1/runs", body=body,
                               headers={"Idempotency-Key": key}, safe=True)
        return str(answer["run_id"])

    def report(self, run_id: str) -> RunReport:
        """The run report, with ``usage``."""
        data = self._request("GET", _run_path(run_id), safe=True)
        return _decode(RunReport.model_validate, data, "run report")

    def runs(self, status: str | None = None, limit: int = 20) -> list[RunSummary]:
        """This key's runs, newest first, optionally only in ``status``."""
        found: list[RunSummary] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"limit": min(limit - len(found), PAGE_MAX)}
            if status is not None:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", "/v1/runs", params=params, safe=True)
            found.extend(_decode(RunSummary.model_validate, r, "run list")
                         for r in page.get("runs", []))
            cursor = page.get("next_cursor")
            if not cursor or not page.get("runs"):
                break
        return found[:limit]

    def cancel(self, run_id: str) -> bool:
        """End a run ``cancelled``; False if it had ended."""
        try:
            self._request("POST", _run_path(run_id, "/cancel"))
        except errors.Conflict:
            return False
        return True

    def approve(self, run_id: str, plan: Plan | Mapping[str, Any] | None = None) -> None:
        """Start a run that waits for approval, optionally with an edited ``plan``."""
        body = {"plan": _plan_body(plan)} if plan is not None else {}
        self._request("POST", _run_path(run_id, "/approve"), body=body)

    def reject(self, run_id: str, reason: str | None = None) -> None:
        """End a run that waits for approval, ``cancelled`` with ``reason``."""
        body = {"reason": reason} if reason is not None else {}
        self._request("POST", _run_path(run_id, "/reject"), body=body)

    def resume(self, run_id: str, budget_tokens: int | None = None,
               budget_usd: float | None = None) -> None:
        """Go on with a run paused at its budget, with a new budget."""
        body = {k: v for k, v in (("budget_tokens", budget_tokens),
                                  ("budget_usd", budget_usd)) if v is not None}
        self._request("POST", _run_path(run_id, "/resume"), body=body)

    def retry(self, run_id: str, step_id: str | None = None) -> list[str]:
        """Re-drive a failed or cancelled run (``step_id``: only that step); the steps
        that run again."""
        body = {"step": step_id} if step_id is not None else {}
        answer = self._request("POST", _run_path(run_id, "/retry"), body=body)
        return [str(s) for s in answer.get("steps", [])]

    def tools(self) -> list[dict[str, Any]]:
        """The server's tools, with their schemas."""
        return list(self._request("GET", "/v1/tools", safe=True)["tools"])

    # -- following a run -----------------------------------------------------------------
    def events(self, run_id: str, after: str | None = None) -> Iterator[RunEvent]:
        """The run's events after the stream id ``after`` (all of them by default), live
        until the run has ended (a retried run goes on past its first ``run.finished``);
        reconnects where it stopped if the connection drops."""
        yield from self._follow(run_id, after, None, stop_when_waiting=False)

    def wait(self, run_id: str, timeout: float | None = None,
             on_event: EventHandler | None = None) -> RunReport:
        """Block until the run ends or waits for a person (approval, a paused budget), or
        ``timeout`` seconds pass; return its report. ``on_event`` sees each event as it
        comes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self._follow(run_id, None, deadline, stop_when_waiting=True):
            if on_event is not None:
                on_event(event)
        return self.report(run_id)

    def _status(self, run_id: str) -> str:
        return str(self._request("GET", _run_path(run_id), safe=True)["status"])

    def _follow(self, run_id: str, after: str | None, deadline: float | None, *,
                stop_when_waiting: bool) -> Iterator[RunEvent]:
        cursor, pause = after, RECONNECT_FIRST_S
        path = _run_path(run_id, "/events")
        while True:
            idle = _stream_timeout(deadline)
            if idle is None:
                return
            headers = {"Accept": "text/event-stream"}
            if cursor:
                headers["Last-Event-ID"] = cursor
            try:
                with self._http.stream("GET", path, headers=headers,
                                       timeout=httpx.Timeout(self.timeout, read=idle)
                                       ) as response:
                    if response.status_code != 200:
                        response.read()
                        self._answer(response)  # raises the error it stands for
                    pause, parser, got, redial = RECONNECT_FIRST_S, _Sse.new(), False, False
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            cursor, got = event.id, True
                            yield event
                            if event.type == "run.finished":
                                break  # the end, unless the run was retried since: below
                            if (stop_when_waiting and _is_waiting(event)
                                    and self._status(run_id) in WAITING_RUN):
                                return
                        # Every line (keep-alives too) checks the caller's deadline.
                        left = _stream_timeout(deadline)
                        if left is None:
                            return
                        if idle - left > DEADLINE_SLACK_S:
                            redial = True  # with a read timeout that keeps the deadline
                            break
                # Resume from the cursor: after run.finished (a retried run goes on past
                # it), after the server went away, or to keep the deadline. A stream with
                # nothing more for a run that has ended is the end.
                if not got and not redial:
                    if self._status(run_id) in TERMINAL_RUN:
                        return
                    time.sleep(min(QUIET_END_S, _stream_timeout(deadline) or 0))
            except _Incompatible:
                raise
            except httpx.ReadTimeout:
                if _stream_timeout(deadline) is None:
                    return  # the caller's deadline: not an error
                continue  # no keep-alive for STREAM_IDLE_S: a dead connection
            except (httpx.TransportError, _Retryable, Unavailable, RateLimited) as exc:
                # No answer, a 503, a status read that failed, or this key's streams all
                # in use (429): ride it out.
                failure = _failure(self.url, exc)
                wait = _pause(pause, failure)
                left = _stream_timeout(deadline)
                if deadline is not None and (left is None or left <= wait):
                    raise _gone(run_id, failure) from None
                time.sleep(wait)
                pause = min(RECONNECT_MAX_S, pause * 2)


def _gone(run_id: str, failure: ChordalError) -> ChordalError:
    if isinstance(failure, RateLimited):
        return failure  # the server answers: it says no more streams for this key
    return Unavailable(f"lost the Chordal server while following run {run_id!r} "
                       f"({failure}); it did not come back in time")


def _failure(url: str, exc: Exception) -> ChordalError:
    if isinstance(exc, _Retryable):
        return exc.error
    if isinstance(exc, ChordalError):
        return exc
    return _unreachable(url, exc)


def _not_ready(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return json.dumps(body)


class AsyncClient(_Base):
    """:class:`RemoteClient` for asyncio apps: the same methods, awaited (``events`` is an
    async iterator). ``async with AsyncClient(url, api_key=...) as client: ...``"""

    def __init__(self, url: str, api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(url, api_key, timeout)
        self._http = httpx.AsyncClient(base_url=self.url, headers=_headers(self._key),
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

    async def _request(self, method: str, path: str, *, body: Any = None,
                       params: Mapping[str, Any] | None = None,
                       headers: Mapping[str, str] | None = None, safe: bool = False) -> Any:
        pause = RECONNECT_FIRST_S
        for attempt in range(1, SAFE_ATTEMPTS + 1):
            try:
                response = await self._http.request(method, path, json=body, params=params,
                                                    headers=headers)
                return self._answer(response)
            except httpx.ConnectError as exc:
                failure: ChordalError = _unreachable(self.url, exc)
            except httpx.TransportError as exc:
                if not safe:
                    raise _unreachable(self.url, exc) from None
                failure = _unreachable(self.url, exc)
            except _Retryable as exc:
                if not safe:
                    raise exc.error from None
                failure = exc.error
            if attempt == SAFE_ATTEMPTS:
                raise failure
            await asyncio.sleep(_pause(pause, failure))
            pause = min(RECONNECT_MAX_S, pause * 2)
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        await self._request("GET", "/healthz", safe=True)

    async def ready(self) -> str | None:
        try:
            response = await self._http.get("/readyz")
        except httpx.TransportError as exc:
            raise _unreachable(self.url, exc) from None
        return None if response.status_code == 200 else _not_ready(response)

    async def submit(self, plan: Plan | Mapping[str, Any], *, approve: bool = False,
                     budget_tokens: int | None = None, budget_usd: float | None = None,
                     on_budget: OnBudget = "stop", max_replans: int | None = None,
                     checkpoint_all: bool = False, callback_url: str | None = None,
                     idempotency_key: str | None = None) -> str:
        body = {"plan": _plan_body(plan),
                **_options(approve, budget_tokens, budget_usd, on_budget, max_replans,
                           checkpoint_all, callback_url)}
        return await self._create(body, idempotency_key)

    async def submit_goal(self, goal: str, *,
                          roles: Mapping[str, Mapping[str, Any]] | None = None,
                          budget_tokens: int | None = None, budget_usd: float | None = None,
                          approve: bool = False, on_budget: OnBudget = "stop",
                          max_replans: int | None = None, checkpoint_all: bool = False,
                          callback_url: str | None = None,
                          idempotency_key: str | None = None) -> str:
        if not isinstance(goal, str) or not goal.strip():
            raise InvalidInput("goal: is empty; say what the run is for")
        body: dict[str, Any] = {"goal": goal, **_options(
            approve, budget_tokens, budget_usd, on_budget, max_replans, checkpoint_all,
            callback_url)}
        models = _models(roles)
        if models:
            body["models"] = models
        return await self._create(body, idempotency_key)

    async def _create(self, body: dict[str, Any], idempotency_key: str | None) -> str:
        key = idempotency_key or uuid.uuid4().hex
        answer = await self._request("POST", "/v1/runs", body=body,
                                     headers={"Idempotency-Key": key}, safe=True)
        return str(answer["run_id"])

    async def report(self, run_id: str) -> RunReport:
        data = await self._request("GET", _run_path(run_id), safe=True)
        return _decode(RunReport.model_validate, data, "run report")

    async def runs(self, status: str | None = None, limit: int = 20) -> list[RunSummary]:
        found: list[RunSummary] = []
        cursor: str | None = None
        while len(found) < limit:
            params: dict[str, Any] = {"limit": min(limit - len(found), PAGE_MAX)}
            if status is not None:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = await self._request("GET", "/v1/runs", params=params, safe=True)
            found.extend(_decode(RunSummary.model_validate, r, "run list")
                         for r in page.get("runs", []))
            cursor = page.get("next_cursor")
            if not cursor or not page.get("runs"):
                break
        return found[:limit]

    async def cancel(self, run_id: str) -> bool:
        try:
            await self._request("POST", _run_path(run_id, "/cancel"))
        except errors.Conflict:
            return False
        return True

    async def approve(self, run_id: str, plan: Plan | Mapping[str, Any] | None = None
                      ) -> None:
        body = {"plan": _plan_body(plan)} if plan is not None else {}
        await self._request("POST", _run_path(run_id, "/approve"), body=body)

    async def reject(self, run_id: str, reason: str | None = None) -> None:
        body = {"reason": reason} if reason is not None else {}
        await self._request("POST", _run_path(run_id, "/reject"), body=body)

    async def resume(self, run_id: str, budget_tokens: int | None = None,
                     budget_usd: float | None = None) -> None:
        body = {k: v for k, v in (("budget_tokens", budget_tokens),
                                  ("budget_usd", budget_usd)) if v is not None}
        await self._request("POST", _run_path(run_id, "/resume"), body=body)

    async def retry(self, run_id: str, step_id: str | None = None) -> list[str]:
        body = {"step": step_id} if step_id is not None else {}
        answer = await self._request("POST", _run_path(run_id, "/retry"), body=body)
        return [str(s) for s in answer.get("steps", [])]

    async def tools(self) -> list[dict[str, Any]]:
        return list((await self._request("GET", "/v1/tools", safe=True))["tools"])

    def events(self, run_id: str, after: str | None = None) -> AsyncIterator[RunEvent]:
        """The run's events after ``after``, live until the run has ended
        (``async for event in client.events(run_id)``)."""
        return self._follow(run_id, after, None, stop_when_waiting=False)

    async def wait(self, run_id: str, timeout: float | None = None,
                   on_event: Callable[[RunEvent], Any] | None = None) -> RunReport:
        """Until the run ends or waits for a person, or ``timeout`` seconds pass; its
        report. ``on_event`` may be a plain function or a coroutine function."""
        deadline = None if timeout is None else time.monotonic() + timeout
        async for event in self._follow(run_id, None, deadline, stop_when_waiting=True):
            if on_event is not None:
                result = on_event(event)
                if inspect.isawaitable(result):
                    await result
        return await self.report(run_id)

    async def _status(self, run_id: str) -> str:
        return str((await self._request("GET", _run_path(run_id), safe=True))["status"])

    async def _follow(self, run_id: str, after: str | None, deadline: float | None, *,
                      stop_when_waiting: bool) -> AsyncIterator[RunEvent]:
        cursor, pause = after, RECONNECT_FIRST_S
        path = _run_path(run_id, "/events")
        while True:
            idle = _stream_timeout(deadline)
            if idle is None:
                return
            headers = {"Accept": "text/event-stream"}
            if cursor:
                headers["Last-Event-ID"] = cursor
            try:
                async with self._http.stream("GET", path, headers=headers,
                                             timeout=httpx.Timeout(self.timeout, read=idle)
                                             ) as response:
                    if response.status_code != 200:
                        await response.aread()
                        self._answer(response)
                    pause, parser, got, redial = RECONNECT_FIRST_S, _Sse.new(), False, False
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        if event is not None:
                            cursor, got = event.id, True
                            yield event
                            if event.type == "run.finished":
                                break  # the end, unless the run was retried since: below
                            if (stop_when_waiting and _is_waiting(event)
                                    and await self._status(run_id) in WAITING_RUN):
                                return
                        # Every line (keep-alives too) checks the caller's deadline.
                        left = _stream_timeout(deadline)
                        if left is None:
                            return
                        if idle - left > DEADLINE_SLACK_S:
                            redial = True
                            break
                if not got and not redial:
                    if await self._status(run_id) in TERMINAL_RUN:
                        return
                    await asyncio.sleep(min(QUIET_END_S, _stream_timeout(deadline) or 0))
            except _Incompatible:
                raise
            except httpx.ReadTimeout:
                if _stream_timeout(deadline) is None:
                    return
                continue
            except (httpx.TransportError, _Retryable, Unavailable, RateLimited) as exc:
                failure = _failure(self.url, exc)
                wait = _pause(pause, failure)
                left = _stream_timeout(deadline)
                if deadline is not None and (left is None or left <= wait):
                    raise _gone(run_id, failure) from None
                await asyncio.sleep(wait)
                pause = min(RECONNECT_MAX_S, pause * 2)


__all__ = ["AsyncClient", "RemoteClient", "base_url", "error_from"]
