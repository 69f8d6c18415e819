"""What both HTTP clients send and read: URLs, headers, request bodies, and answers turned
into typed records or the :mod:`planner.errors` class they name. No I/O."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from planner import errors
from planner.errors import (
    ChordalError,
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
from planner.options import RunOptions

#: What a server restarting (or Redis away) answers, directly or through a proxy.
TRANSIENT_STATUS = frozenset({502, 503, 504})
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


class Incompatible(Unavailable):
    """The server answered with something this client cannot read: retrying cannot help."""


class Retryable(Exception):
    """A failure worth another try: no answer, or a 503. ``sent``: the request may have
    reached the server, so only a request that is safe to repeat is tried again."""

    def __init__(self, error: ChordalError, sent: bool = True) -> None:
        super().__init__(str(error))
        self.error = error
        self.sent = sent


class Idle(Exception):
    """An event stream said nothing, not even its keep-alive, for its read timeout."""


def thrown(exc: Exception, url: str, streaming: bool) -> Exception:
    """What a shell's I/O failure means to the sans-IO core: an event stream gone quiet
    (:class:`Idle`), a server that could not be reached (:class:`Retryable`; not sent if
    the connection was never made), or the error as it is."""
    if streaming and isinstance(exc, httpx.ReadTimeout):
        return Idle()
    if isinstance(exc, httpx.TransportError):
        return Retryable(unreachable(url, exc), sent=not isinstance(exc, httpx.ConnectError))
    return exc


# -- URLs and headers ------------------------------------------------------------------
def base_url(url: str) -> str:
    """``url`` checked and without a trailing slash: http(s), a host, no credentials."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url: is empty; give the server's URL, e.g. http://host:8000")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"url: must be an http:// or https:// URL with a host, e.g. "
                           f"http://host:8000, not {redact(url)!r}")
    if parts.username or parts.password:
        raise InvalidInput("url: must not carry credentials; pass the secret as api_key "
                           "(it goes in the Authorization header)")
    if parts.query or parts.fragment:
        raise InvalidInput("url: must not have a query or a fragment")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def redact(url: str) -> str:
    """A URL as it may be shown: no credentials, no query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<unreadable URL>"


def run_path(run_id: str, suffix: str = "") -> str:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidInput("run_id: is empty")
    return f"/v1/runs/{quote(run_id, safe='')}{suffix}"


def headers(api_key: str | None) -> dict[str, str]:
    sent = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        sent["Authorization"] = f"Bearer {api_key}"
    return sent


def check_key(api_key: str | None) -> str | None:
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip()
                                or any(c in api_key for c in "\r\n")):
        raise InvalidInput("api_key: must be the key's secret, one line, not empty")
    return api_key.strip() if api_key else None


# -- request bodies --------------------------------------------------------------------
def plan_body(plan: Plan | Mapping[str, Any]) -> Any:
    if isinstance(plan, Plan):
        return plan.model_dump(mode="json", exclude_none=True)
    if isinstance(plan, Mapping):
        return with_json_refs(dict(plan))  # a Ref built in Python: its {"$ref": ...}
    raise InvalidInput(f"plan: must be a Plan or a JSON object, not {type(plan).__name__}; "
                       "a CompiledPlan needs the Redis Client")


def create_body(options: RunOptions | None, *, goal: str | None = None,
                plan: Plan | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``POST /v1/runs``'s body: the goal or the plan, and the options that are set (the
    server's defaults hold otherwise)."""
    if not isinstance(options, RunOptions | None):
        raise InvalidInput(f"options: must be a RunOptions, not {type(options).__name__}")
    options = options or RunOptions()
    if options.owner is not None:
        raise InvalidInput("owner: over HTTP a run's owner is the name of the API key "
                           "that creates it")
    body: dict[str, Any] = {}
    if plan is not None:
        body["plan"] = plan_body(plan)
        if options.synthesize is not None:  # the plan's own field says it to the server
            body["plan"]["synthesize"] = options.synthesize
    else:
        body["goal"] = goal
    body.update(options.model_dump(include={"approve", "on_budget", "checkpoint_all"}))
    body.update(options.model_dump(include={"budget_tokens", "budget_usd", "max_replans",
                                            "callback_url"}, exclude_none=True))
    models = _models(options.roles)
    if models:
        body["models"] = models
    return body


def _models(roles: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``roles`` as the API takes them: only a model per role travels over HTTP."""
    models: dict[str, str] = {}
    for role, over in roles.items():
        extra = sorted(set(over) - {"model"})
        if extra or not isinstance(over.get("model"), str):
            raise InvalidInput(f"roles.{role}: over HTTP a role takes only a model "
                               f"({{'model': 'claude-…'}}), not {', '.join(extra) or 'none'}")
        models[role] = over["model"]
    return models


def page_params(status: str | None, want: int, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": min(want, PAGE_MAX)}
    if status is not None:
        params["status"] = status
    if cursor:
        params["cursor"] = cursor
    return params


def without_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


# -- answers ---------------------------------------------------------------------------
def answer(response: httpx.Response, url: str, had_key: bool) -> Any:
    """An answer's JSON (None for an empty one); an error answer raised as the error it
    stands for (:class:`Retryable` when another try may do)."""
    if response.status_code >= 400:
        error = error_from(response, had_key=had_key)
        if response.status_code in TRANSIENT_STATUS or isinstance(error, errors.InFlight):
            raise Retryable(error)
        raise error
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        raise Incompatible(f"the server at {redact(url)} answered {response.status_code} "
                           "with something that is not JSON; is this a Chordal "
                           "server?") from None


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


def not_ready(response: httpx.Response) -> str:
    """What a /readyz that is not 200 says is missing."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} {response.text[:200]}"
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    return json.dumps(body)


def unreachable(url: str, exc: Exception) -> Unavailable:
    return Unavailable(f"cannot reach the Chordal server at {redact(url)} "
                       f"({type(exc).__name__}: {exc or 'no detail'})")


def decode(model: Callable[[Any], T], data: Any, what: str) -> T:
    try:
        return model(data)
    except ValidationError as exc:
        raise Incompatible(f"the server's {what} is not what this client reads: "
                           f"{exc.errors()[0]['msg']}; are client and server the same "
                           "version?") from None
