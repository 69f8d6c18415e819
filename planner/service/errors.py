"""One error shape for every failure: ``{"error": {"type", "message", "problems"?}}``, with
the status the error tree gives (``UserError.http_status``).

FastAPI's own errors (a body that does not fit the schema, an unknown path, a wrong method)
are answered in the same shape, so a client parses one thing. Redis or the broker not
answering is a 503, never a 500; anything unexpected is a 500 that says nothing of the
internals (it is logged here instead).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

import kombu.exceptions
import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match

from planner.errors import (
    ChordalError,
    InFlight,
    PlanInvalid,
    RateLimited,
    Unauthorized,
    Unavailable,
    UserError,
)

log = logging.getLogger("chordal.service")

#: ``scheme://user:password@host``: the userinfo is cut from any message that echoes a URL
#: (a Redis or broker URL may hold a password; a message is shown to API callers).
_USERINFO = re.compile(r"(\w+://)[^/@\s]*@")
_STATUS_TYPES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict",
                 413: "RequestTooLarge", 415: "UnsupportedMediaType", 422: "InvalidInput",
                 429: "RateLimited", 503: "Unavailable"}


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped: an error may quote input (a step id
    with a lone surrogate) that cannot be encoded as UTF-8, and bad input must never
    become a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def redact(text: str) -> str:
    return _USERINFO.sub(r"\1***@", text)


#: What names a machine inside the deployment: a URL, host:port, an IPv4 address.
_ADDRESSES = re.compile(
    r"\b[a-z][a-z0-9+.-]*://[^\s,;)]+"                  # a URL
    r"|\[[0-9a-f:.]+\](?::\d+)?"                         # [IPv6]:port
    r"|\b[\w-]*[a-z.][\w.-]*:\d{2,5}\b"                  # host:port (not a time, 12:30)
    r"|\b\d{1,3}(?:\.\d{1,3}){3}\b"                      # IPv4
    r"|(?<![\w:])(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])",  # IPv6
    re.IGNORECASE)


def without_addresses(text: str) -> str:
    """A server-side failure as told to API clients: what failed, not where (the log has
    the addresses; a client must not learn the deployment's internal hosts)."""
    return _ADDRESSES.sub("<internal>", text)


def error_response(status: int, type_: str, message: str,
                   problems: Sequence[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"type": type_, "message": redact(message)}
    if problems is not None:
        error["problems"] = list(problems)
    return AsciiJSONResponse({"error": error}, status_code=status, headers=headers)


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _field(loc: Sequence[str | int]) -> str:
    # ("body", "plan", "steps", 0) -> "plan.steps[0]"; ("query", "limit") -> "limit";
    # a missing or unreadable body as a whole -> "body".
    parts = list(loc[1:]) if len(loc) > 1 else list(loc)
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)
    return text.lstrip(".") or "body"


async def _chordal_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ChordalError)
    if not isinstance(exc, UserError):
        log.error("unexpected %s on %s %s: %s", type(exc).__name__, request.method,
                  request.url.path, exc)
        return error_response(500, "InternalError", "internal error; see the server log")
    if exc.http_status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path,
                  redact(str(exc)))
    headers: dict[str, str] = {}
    retry_after_s = getattr(exc, "retry_after_s", None)
    if isinstance(exc, RateLimited | InFlight | Unavailable) and retry_after_s is not None:
        headers["Retry-After"] = str(max(1, int(retry_after_s + 0.999)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, PlanInvalid):
        problems = [{"step": p.step, "field": p.field, "message": p.message}
                    for p in exc.problems]
        return error_response(exc.http_status, type(exc).__name__,
                              f"invalid plan: {len(problems)} problem(s)", problems, headers)
    message = without_addresses(str(exc)) if exc.http_status >= 500 else str(exc)
    return error_response(exc.http_status, type(exc).__name__, message, headers=headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "BadRequest", "body: not valid JSON")
    problems = [{"step": None, "field": _field(e.get("loc", ())), "message": str(e["msg"])}
                for e in errors]
    message = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    if len(problems) > 5:
        message += f"; and {len(problems) - 5} more"
    return error_response(422, "InvalidInput", message, problems)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) else "request refused"
    headers = dict(exc.headers or {})
    if status == 404:
        message = f"no such path: {request.url.path}"
    if status == 405:
        # Starlette names only the first route that matched the path; a path served by
        # several routes (GET and POST /v1/runs) allows all their methods.
        methods = [m for m in _METHODS if any(
            isinstance(route, BaseRoute)
            and route.matches({**request.scope, "method": m})[0] is Match.FULL
            for route in request.app.routes)]
        headers["Allow"] = ", ".join(methods)
    return error_response(status, _STATUS_TYPES.get(status, "Error"), message,
                          headers=headers)


async def _backend_down(request: Request, exc: Exception) -> JSONResponse:
    what = "Redis" if isinstance(exc, redis.RedisError) else "the broker"
    log.warning("%s unavailable on %s %s: %s", what, request.method, request.url.path,
                redact(str(exc)))
    return error_response(503, "Unavailable", f"{what} does not answer; try again shortly",
                          headers={"Retry-After": "5"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "InternalError", "internal error; see the server log")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ChordalError, _chordal_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(redis.RedisError, _backend_down)
    app.add_exception_handler(kombu.exceptions.OperationalError, _backend_down)
    app.add_exception_handler(ConnectionError, _backend_down)
    app.add_exception_handler(Exception, _unexpected)
